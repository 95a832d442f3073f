"""robot_rl.safety_audit: the command-log checks of the safety fuzz, on written-out logs."""
import numpy as np
import pytest

from robot_rl.safety_audit import audit_outputs, audit_sampled, sample_commands

pytestmark = pytest.mark.unit

DT = 0.05
LIM = dict(dt=DT, v_max=[1.0], a_max=[2.0], j_max=[1000.0])  # A dt = 0.1 rad/s per period


def test_a_ramp_at_the_acceleration_limit_passes_both_views():
    t = np.arange(6) * DT
    v = np.array([[0.0], [0.1], [0.2], [0.3], [0.3], [0.2]])
    assert audit_outputs(t, v, **LIM).total == 0
    assert audit_sampled(t, v, **LIM).total == 0


def test_a_burst_passes_per_output_but_not_as_the_driver_samples_it():
    # Three commands within 2 ms, each 0.1 from the one before: per output fine, but the
    # driver reading once per 50 ms sees 0.0 -> 0.3 (three times A dt) and the spacing is short.
    t = np.array([0.0, 0.050, 0.051, 0.052, 0.102])
    v = np.array([[0.0], [0.1], [0.2], [0.3], [0.3]])
    per_output = audit_outputs(t, v, **LIM)
    assert per_output.violations == {"velocity": 0, "acceleration": 0, "jerk": 0, "spacing": 2}
    sampled = audit_sampled(t, v, **LIM, phases=(0.5,))
    # reads at 25, 75, 125 ms: 0.0, 0.3 -> one acceleration violation of (0.3 - 0.1) / 0.1
    assert sample_commands(t, v, dt=DT, phase=0.5).ravel().tolist() == [0.0, 0.3, 0.3]
    assert sampled.violations["acceleration"] == 1
    assert sampled.worst["acceleration"] == pytest.approx(2.0)


def test_velocity_and_jerk_violations_are_counted_with_their_excess():
    t = np.arange(4) * DT
    v = np.array([[0.0], [0.1], [0.0], [1.5]])  # 1.5 > V; the last step 1.5 > A dt too
    a = audit_outputs(t, v, dt=DT, v_max=[1.0], a_max=[2.0], j_max=[20.0])  # J dt^2 = 0.05
    assert a.violations["velocity"] == 1 and a.worst["velocity"] == pytest.approx(0.5)
    assert a.violations["acceleration"] == 1
    # second differences: -0.2, 1.6 (both beyond 0.05)
    assert a.violations["jerk"] == 2 and a.worst["jerk"] == pytest.approx(1.6 / 0.05 - 1)
