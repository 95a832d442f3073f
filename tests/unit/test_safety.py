"""Unit tests of robot_rl.safety with written-out expected values, for both profiles.

Numbers used below (limit_scale 0.9 on the published tables, robot_rl/profiles.py):

=======  =====  ==========  ======  ======  =====  ====================================
profile  joint  V (rad/s)   A       J       q_max  notes
=======  =====  ==========  ======  ======  =====  ====================================
panda    1      1.9575      13.5    6750    2.8973 q_upper = q_max - 0.05 = 2.8473
panda    2      1.9575      6.75    3375
panda    6      2.349       18.0    9000    q_min -0.0175 -> q_lower = 0.0325
fr3      1      2.358       9.0     4500    2.7437 q_upper = 2.6937
fr3      6      3.762       9.0     4500    q_min 0.5445 -> q_lower = 0.5945
=======  =====  ==========  ======  ======  =====  ====================================

At 20 Hz (dt = 0.05) the jerk step ``tau = J dt`` (>= 225) exceeds ``2A``: no jerk ramp, and the
stopping distance is ``D(c) = c dt + c^2 / 2A``; its inverse is
``c(d) = 2d / (dt + sqrt(dt^2 + 2d/A))``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from robot_rl.config import Box3, RobotProfile, SafetyConfig as _SafetyConfig
from robot_rl.safety import (
    RULES,
    Rule,
    SafetyCore,
    SafetyFilter,
    SafetyParams,
    braking_speed,
    inverse_ramp,
    ramp_gain,
    stopping_distance,
)

pytestmark = pytest.mark.unit


def SafetyConfig(**kw) -> _SafetyConfig:  # noqa: N802 - stands in for the config class
    """These tests exercise the full jerk-ramp maths, so the cap A <= J dt of
    ``missed_period_safe`` (which removes the ramp above ~500 Hz) is off unless a test asks."""
    kw.setdefault("missed_period_safe", False)
    return _SafetyConfig(**kw)

REPO = Path(__file__).resolve().parents[2]
HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854])
Z = np.zeros(7)
JOINT_ONLY = SafetyConfig(ee_speed_max=None, workspace_enabled=False)


def core(name: str, hz: float, cfg: SafetyConfig = JOINT_ONLY) -> SafetyCore:
    return SafetyCore.from_config(RobotProfile(name=name), cfg, control_hz=20, output_hz=hz)


def vec(j: int, x: float, base: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(7) if base is None else base.copy()
    out[j] = x
    return out


# --------------------------------------------------------------------------- rule bits


def test_rule_bits_equal_the_applied_command_msg_constants():
    text = (REPO / "interfaces/robot_rl_interfaces/msg/AppliedCommand.msg").read_text()
    consts = dict(re.findall(r"^uint32\s+RULE_([A-Z_]+)\s*=\s*(\d+)\s*$", text, re.M))
    assert {k: int(v) for k, v in consts.items()} == {r.name: int(r) for r in Rule}
    assert len(consts) == 12 and tuple(RULES) == tuple(Rule)


# --------------------------------------------------------------------------- maths helpers


def test_ramp_gain_inverse_ramp_and_braking_written_out():
    # tau = 6.75 (Panda joint 1 at 1 kHz), dt = 1e-3
    # P(13.5) = dt (13.5 - 6.75) = 0.00675; P(6.75) = 0 (the single term is 0); P(-1) = 0
    assert ramp_gain([13.5, 6.75, -1.0, 20.25], 6.75, 1e-3) == pytest.approx(
        [0.00675, 0.0, 0.0, 1e-3 * (13.5 + 6.75)], abs=1e-15)
    # F(a) = a + sum (a - i tau)+; F(12.125) = 12.125 + 5.375 = 17.5 -> F^-1(17.5) = 12.125
    assert inverse_ramp([17.5, 3.0, -2.0, 57.5], 6.75).tolist() == pytest.approx(
        [12.125, 3.0, -2.0, 24.5], abs=1e-12)
    # 20 Hz Panda joint 1: c(0.1) = 0.2 / (0.05 + sqrt(0.0025 + 0.2/13.5))
    assert braking_speed(0.1, 13.5, 337.5, 0.05) == pytest.approx(1.1014078923490518, rel=1e-13)
    assert stopping_distance(1.1014078923490518, 13.5, 337.5, 0.05) == pytest.approx(0.1, rel=1e-13)
    # 1 kHz Panda joint 1 at V: n_r = 2, U = 0.00675, U' = 0.0135 + 0.00675 = 0.02025
    # D = 2 V dt + (V + U')^2 / 27 + 2 dt U
    assert stopping_distance(1.9575, 13.5, 6.75, 1e-3) == pytest.approx(0.1487986875, rel=1e-12)
    assert braking_speed(-0.3, 13.5, 6.75, 1e-3) == 0.0  # beyond the margin: may not move out


def test_params_from_config_resolve_the_tables():
    p = SafetyParams.from_config(RobotProfile(name="fr3"), SafetyConfig(), control_hz=20)
    assert p.dt == 0.05 and p.watchdog_timeout == 0.1
    assert p.v_max.tolist() == pytest.approx([2.358, 2.358, 2.358, 2.358, 4.734, 3.762, 4.734])
    assert p.a_max.tolist() == pytest.approx([9.0] * 7)
    assert p.q_lower[5] == pytest.approx(0.5945) and p.q_upper[0] == pytest.approx(2.6937)
    p1k = SafetyParams.from_config(RobotProfile(name="panda"), SafetyConfig(output_hz=1000),
                                   control_hz=20)
    assert p1k.dt == 0.001 and p1k.tau[0] == pytest.approx(6.75)
    assert p1k.ramp[0] == pytest.approx(0.00675) and p1k.brake_ramp[0] == pytest.approx(0.02025)


# --------------------------------------------------------------------------- pass-through


@pytest.mark.parametrize("name", ["panda", "fr3"])
@pytest.mark.parametrize("hz", [20.0, 1000.0])
def test_feasible_proposal_passes_bit_for_bit(name, hz):
    c = core(name, hz, SafetyConfig())
    prop = np.array([0.0031, -0.0042, 0.00123456789, 0.002, -0.0, 0.001, -0.0029])
    if hz == 1000.0:  # from rest one period may reach J dt^2 (>= 0.003375 rad/s) at most
        prop = prop * 0.5
    cmd, rep = c.step(prop, v_prev=Z, a_prev=Z, q=HOME)
    assert rep.rules == Rule(0) and not rep.modified and dict(rep.amounts) == {}
    assert cmd.tobytes() == prop.tobytes()  # same float64 bits, -0.0 included
    assert cmd is not prop


@pytest.mark.parametrize(
    "name, v_prev, expected_out, vel_excess, acc_excess",
    [
        # 20 Hz, joint 1 at 1.9 (fr3: 2.3), proposal 10: out = V exactly, accel (V - v)/dt <= A.
        ("panda", 1.9, 1.9575, 10 - 1.9575, 10 - (1.9 + 0.675)),
        ("fr3", 2.3, 2.358, 10 - 2.358, 10 - (2.3 + 0.45)),
    ],
)
def test_velocity_clamp_lands_exactly_on_v_max(name, v_prev, expected_out, vel_excess,
                                               acc_excess):
    c = core(name, 20.0)
    cmd, rep = c.step(vec(0, 10.0), v_prev=vec(0, v_prev), a_prev=Z, q=HOME)
    assert cmd[0] == c.params.v_max[0] and cmd[0] == pytest.approx(expected_out, abs=1e-15)
    assert cmd[1:].tolist() == [0.0] * 6
    assert rep.rules == Rule.VELOCITY | Rule.ACCELERATION
    assert rep.amounts[Rule.VELOCITY] == pytest.approx(vel_excess, abs=1e-12)
    assert rep.amounts[Rule.ACCELERATION] == pytest.approx(acc_excess, abs=1e-12)
    # and the negative side, from -v_prev
    cmd, _ = c.step(vec(0, -10.0), v_prev=vec(0, -v_prev), a_prev=Z, q=HOME)
    assert cmd[0] == -c.params.v_max[0]


@pytest.mark.parametrize("name, expected", [("panda", 0.675), ("fr3", 0.45)])
def test_acceleration_clamp_is_a_dt(name, expected):
    cmd, rep = core(name, 20.0).step(vec(0, 1.0), v_prev=Z, a_prev=Z, q=HOME)
    assert cmd[0] == pytest.approx(expected, abs=1e-15)
    assert rep.rules == Rule.ACCELERATION
    assert rep.amounts[Rule.ACCELERATION] == pytest.approx(1.0 - expected, abs=1e-15)


@pytest.mark.parametrize("name, expected", [("panda", 6750e-6), ("fr3", 4500e-6)])
def test_jerk_clamp_at_1khz_is_j_dt_squared(name, expected):
    cmd, rep = core(name, 1000.0).step(vec(0, 1.0), v_prev=Z, a_prev=Z, q=HOME)
    assert cmd[0] == pytest.approx(expected, rel=1e-12)
    assert rep.rules == Rule.JERK | Rule.ACCELERATION  # 1.0 is no velocity problem
    assert rep.amounts[Rule.JERK] == pytest.approx(1.0 - expected, rel=1e-12)


@pytest.mark.parametrize(
    "name, v, a, expected",
    [
        # 1 kHz. Panda j1: R = (1.9575 - 1.94)/dt = 17.5, F^-1(17.5) = (17.5 + 6.75)/2 = 12.125
        # < min(a + tau, A) = 13.5 -> out = 1.94 + 0.012125; then P(12.125) = 0.005375 and
        # out + P = 1.9575 = V: it can still stop accelerating exactly at V.
        ("panda", 1.94, 6.75, 1.952125),
        # FR3 j1: R = (2.358 - 2.345)/dt = 13, F^-1(13) = (13 + 4.5)/2 = 8.75 < 9 -> 2.35375.
        ("fr3", 2.345, 4.5, 2.35375),
    ],
)
def test_velocity_jerk_look_ahead_written_out(name, v, a, expected):
    c = core(name, 1000.0)
    cmd, rep = c.step(vec(0, 10.0), v_prev=vec(0, v), a_prev=vec(0, a), q=HOME)
    assert cmd[0] == pytest.approx(expected, abs=1e-12)
    assert Rule.VELOCITY in rep.rules
    a_new = (cmd[0] - v) / 1e-3
    assert cmd[0] + ramp_gain(a_new, c.params.tau[0], 1e-3) == pytest.approx(
        c.params.v_max[0], abs=1e-12)


@pytest.mark.parametrize(
    "name, j, q, v_prev, prop, expected",
    [
        # upper limit, joint 1, 0.1 rad before q_max - margin: c(0.1) (see module docstring)
        ("panda", 0, 2.8473 - 0.1, 1.0, 1.4, 1.1014078923490518),
        ("fr3", 0, 2.6937 - 0.1, 1.0, 1.4, 0.9650971698084905),
        # lower limit, joint 6, 0.05 rad above q_min + margin: -c(0.05)
        ("panda", 5, 0.0325 + 0.05, -0.7, -1.0, -0.7155494421403511),
        ("fr3", 5, 0.5945 + 0.05, -0.6, -1.0, -0.6),  # c = 0.6: 0.6*0.05 + 0.36/18 = 0.05
    ],
)
def test_position_braking_written_out(name, j, q, v_prev, prop, expected):
    c = core(name, 20.0)
    cmd, rep = c.step(vec(j, prop), v_prev=vec(j, v_prev), a_prev=Z, q=vec(j, q, HOME))
    assert cmd[j] == pytest.approx(expected, rel=1e-12)
    assert rep.rules == Rule.POSITION
    assert rep.amounts[Rule.POSITION] == pytest.approx(abs(prop - expected), rel=1e-12)
    # what it promises: this period's travel plus the braking distance fits exactly
    d = abs(q - (c.params.q_upper[j] if prop > 0 else c.params.q_lower[j]))
    assert abs(cmd[j]) * 0.05 + cmd[j] ** 2 / (2 * c.params.a_max[j]) == pytest.approx(d, rel=1e-12)


@pytest.mark.parametrize("name", ["panda", "fr3"])
def test_joint_beyond_its_margin_may_only_move_back(name):
    c = core(name, 20.0)
    q = vec(0, c.params.q_upper[0] + 0.01, HOME)  # pushed past the margin by hand
    cmd, rep = c.step(vec(0, 0.4), v_prev=Z, a_prev=Z, q=q)
    assert cmd[0] == 0.0 and rep.rules == Rule.POSITION
    assert any("beyond its margin" in r for r in rep.reasons)
    back = vec(0, -0.4)
    cmd, rep = c.step(back, v_prev=Z, a_prev=Z, q=q)
    assert rep.rules == Rule(0) and cmd.tobytes() == back.tobytes()


def test_workspace_face_braking_written_out():
    # Panda at home: EE x = 0.3068903521084; joint 2 moves it by J_p[0, 1] = 0.1522803385506 m
    # per rad. Box face x = 0.31 -> d = 0.0031096478916. Proposal: joint 2 at 0.3 rad/s from rest
    # (20 Hz: b = 0, U = 0): g (dt s x + (s x)^2 / 2A) = d with x = 0.3, A = 6.75
    # -> s = 0.9555545246010391, out = s x = 0.2866663573803117.
    cfg = SafetyConfig(ee_speed_max=None,
                       workspace=Box3(low=(0.1, -0.6, 0.02), high=(0.31, 0.6, 0.9)))
    c = core("panda", 20.0, cfg)
    p, jac = c.kinematics.ee_position_and_jacobian(HOME)
    assert p[0] == pytest.approx(0.3068903521084, abs=1e-12)
    assert jac[0, 1] == pytest.approx(0.1522803385506, abs=1e-12)
    cmd, rep = c.step(vec(1, 0.3), v_prev=Z, a_prev=Z, q=HOME)
    assert cmd[1] == pytest.approx(0.2866663573803117, abs=1e-10)
    assert cmd[[0, 2, 3, 4, 5, 6]].tolist() == [0.0] * 6
    assert rep.rules == Rule.WORKSPACE
    assert rep.amounts[Rule.WORKSPACE] == pytest.approx(0.3 - 0.2866663573803117, abs=1e-10)
    # moving away from that face is not touched
    away = vec(1, -0.3)
    cmd, rep = c.step(away, v_prev=Z, a_prev=Z, q=HOME)
    assert rep.rules == Rule(0) and cmd.tobytes() == away.tobytes()


@pytest.mark.parametrize("name", ["panda", "fr3"])
def test_ee_speed_scales_the_target_written_out(name):
    # Joint 1 turns the EE on a circle of radius 0.3068903521084 m at home: proposal 1 rad/s
    # (0.307 m/s) is scaled to 0.2 / 0.3068903521084 = 0.65169855821... rad/s.
    c = core(name, 20.0, SafetyConfig())
    cmd, rep = c.step(vec(0, 1.0), v_prev=vec(0, 0.6), a_prev=Z, q=HOME)
    assert cmd[0] == pytest.approx(0.2 / 0.3068903521084, rel=1e-11)
    assert rep.rules == Rule.EE_SPEED
    assert rep.amounts[Rule.EE_SPEED] == pytest.approx(1.0 - 0.2 / 0.3068903521084, rel=1e-10)
    jac = c.kinematics.position_jacobian(HOME)
    assert np.linalg.norm(jac @ cmd) == pytest.approx(0.2, rel=1e-12)


# --------------------------------------------------------------------------- target zero


@pytest.mark.parametrize(
    "name, expected",
    [("panda", [0.325, 0.0, 0.0]), ("fr3", [0.55, 0.1, 0.0])],  # 1.0 - k A dt, then exactly 0
)
@pytest.mark.parametrize("cause", ["estop", "nan", "inf", "length", "stale", "missing", "names"])
def test_target_zero_rules_brake_at_the_limits(name, expected, cause):
    c = core(name, 20.0)
    v, a = vec(0, 1.0), Z
    kw = dict(q=HOME)
    prop = vec(0, 1.0)
    bit = {"estop": Rule.ESTOP, "nan": Rule.NONFINITE, "inf": Rule.NONFINITE,
           "length": Rule.BAD_LENGTH, "stale": Rule.STALE_STATE, "missing": Rule.STALE_STATE,
           "names": Rule.JOINT_ORDER}[cause]
    if cause == "estop":
        kw["estop"] = True
    elif cause == "nan":
        prop[3] = math.nan
    elif cause == "inf":
        prop[6] = -math.inf
    elif cause == "length":
        prop = prop[:6]
    elif cause == "stale":
        kw["state_age"] = 0.5
    elif cause == "missing":
        kw["q"] = None
    elif cause == "names":
        kw["proposal_names"] = [f"{name}_joint{i}" for i in (1, 2, 3, 4, 5, 6, 99)]
    seq = []
    for _ in range(3):
        cmd, rep = c.step(prop, v_prev=v, a_prev=a, **kw)
        assert bit in rep.rules
        assert rep.target.tolist() == [0.0] * 7
        seq.append(cmd[0])
        a = (cmd - v) / 0.05
        v = cmd
    assert seq == pytest.approx(expected, abs=1e-12)
    assert seq[-1] == 0.0


def test_amounts_of_the_target_zero_rules():
    c = core("panda", 20.0)
    _, rep = c.step([math.nan, 0, math.inf, 0, 0, 0, 0], v_prev=Z, a_prev=Z, q=HOME)
    assert rep.amounts[Rule.NONFINITE] == 2.0
    _, rep = c.step([0.0] * 9, v_prev=Z, a_prev=Z, q=HOME)
    assert rep.amounts[Rule.BAD_LENGTH] == 2.0
    _, rep = c.step(Z, v_prev=Z, a_prev=Z, q=HOME, state_age=0.25)
    assert rep.amounts[Rule.STALE_STATE] == 0.25
    _, rep = c.step(Z, v_prev=Z, a_prev=Z, q=None)
    assert rep.amounts[Rule.STALE_STATE] == math.inf
    _, rep = c.step(Z, v_prev=Z, a_prev=Z, q=HOME, proposal_age=0.3)
    assert rep.rules == Rule.WATCHDOG and rep.amounts[Rule.WATCHDOG] == 0.3
    _, rep = c.step(None, v_prev=Z, a_prev=Z, q=HOME)
    assert rep.rules == Rule.WATCHDOG and rep.amounts[Rule.WATCHDOG] == math.inf


def test_1khz_braking_is_jerk_limited_and_lands_on_zero():
    c = core("panda", 1000.0)
    v, a = vec(0, 1.0), Z
    seq = []
    for _ in range(200):
        cmd, rep = c.step(vec(0, 1.0), v_prev=v, a_prev=a, q=HOME, estop=True)
        a_new = (cmd - v) / 1e-3
        assert abs(a_new[0]) <= 13.5 * (1 + 1e-12) and abs(a_new[0] - a[0]) <= 6.75 * (1 + 1e-9)
        v, a = cmd, a_new
        seq.append(cmd[0])
    # a: -6.75, -13.5, -13.5 ... (jerk ramp, then A)
    assert seq[:3] == pytest.approx([0.99325, 0.97975, 0.96625], abs=1e-12)
    assert min(seq) == 0.0 and seq[-1] == 0.0
    n = next(i for i, x in enumerate(seq) if x == 0.0) + 1
    # continuous S-curve: 1/A + A/J = 0.0761 s; discrete within two periods of it
    assert 74 <= n <= 78


# --------------------------------------------------------------------------- joint names


def test_shuffled_proposal_names_are_reordered_bit_for_bit():
    c = core("fr3", 20.0)
    names = list(c.params.joint_names)
    perm = [3, 0, 6, 1, 5, 2, 4]
    prop = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07])
    cmd, rep = c.step(prop[perm], proposal_names=[names[i] for i in perm], v_prev=Z, a_prev=Z,
                      q=HOME)
    assert rep.rules == Rule(0) and rep.reordered
    assert cmd.tobytes() == prop.tobytes()


def test_state_names_may_be_shuffled_and_carry_extra_joints():
    c = core("panda", 20.0)
    names = list(c.params.joint_names)
    q_msg = list(HOME[::-1]) + [0.04, 0.04]
    names_msg = names[::-1] + ["panda_finger_joint1", "panda_finger_joint2"]
    cmd, rep = c.step(vec(0, 0.01), v_prev=Z, a_prev=Z, q=q_msg, state_names=names_msg)
    assert rep.rules == Rule(0)
    # a missing or duplicated joint is refused
    _, rep = c.step(vec(0, 0.01), v_prev=Z, a_prev=Z, q=q_msg[1:], state_names=names_msg[1:])
    assert Rule.JOINT_ORDER in rep.rules and Rule.STALE_STATE in rep.rules
    _, rep = c.step(vec(0, 0.01), v_prev=Z, a_prev=Z, proposal_names=[names[0]] * 7, q=HOME)
    assert rep.rules == Rule.JOINT_ORDER and rep.amounts[Rule.JOINT_ORDER] == 12.0


def test_other_robots_names_are_refused():
    c = core("panda", 20.0)
    fr3_names = [f"fr3_joint{i}" for i in range(1, 8)]
    _, rep = c.step(vec(0, 0.01), proposal_names=fr3_names, v_prev=Z, a_prev=Z, q=HOME)
    assert rep.rules == Rule.JOINT_ORDER and "unknown" in rep.reasons[0]


# --------------------------------------------------------------------------- programmer errors


def test_programmer_errors_raise_value_errors_naming_the_field():
    c = core("panda", 20.0)
    with pytest.raises(ValueError, match="proposal: expected a 1-D"):
        c.step(np.zeros((2, 7)), v_prev=Z, a_prev=Z, q=HOME)
    with pytest.raises(ValueError, match="proposal: expected a 1-D"):
        c.step({"a": 1}, v_prev=Z, a_prev=Z, q=HOME)
    with pytest.raises(ValueError, match="v_prev"):
        c.step(Z, v_prev=np.zeros(6), a_prev=Z, q=HOME)
    with pytest.raises(ValueError, match="a_prev"):
        c.step(Z, v_prev=Z, a_prev=vec(0, 100.0), q=HOME)
    # at V while still accelerating: no output of this filter can be in that state
    with pytest.raises(ValueError, match="v_prev/a_prev"):
        core("panda", 1000.0).step(Z, v_prev=vec(0, 1.9575), a_prev=vec(0, 13.5), q=HOME)
    with pytest.raises(ValueError, match="proposal_names"):
        c.step(Z, proposal_names="panda_joint1", v_prev=Z, a_prev=Z, q=HOME)
    with pytest.raises(ValueError, match="position_margin"):
        SafetyParams.from_config(RobotProfile(name="panda"),
                                 SafetyConfig(position_margin=1.6), control_hz=20)
    with pytest.raises(ValueError, match="control_hz"):
        SafetyParams.from_config(RobotProfile(name="panda"), SafetyConfig(), control_hz=0)
    with pytest.raises(ValueError, match="proposals"):
        c.step_batch(np.zeros((3, 6)), np.zeros((3, 6)), np.zeros((3, 6)))


def test_inputs_are_not_mutated_and_results_are_deterministic():
    c = core("panda", 1000.0, SafetyConfig())
    prop = np.array([5.0, -5.0, 0.3, 0.0, 1.0, -1.0, 2.0])
    v = np.array([0.5, -0.5, 0.0, 0.1, 0.0, 0.2, 0.0])
    a = np.array([1.0, 0.0, -2.0, 0.0, 3.0, 0.0, 0.0])
    copies = [x.copy() for x in (prop, v, a, HOME)]
    r1 = c.step(prop, v_prev=v, a_prev=a, q=HOME)
    r2 = c.step(prop, v_prev=v, a_prev=a, q=HOME)
    for x, y in zip((prop, v, a, HOME), copies):
        assert x.tobytes() == y.tobytes()
    assert r1[0].tobytes() == r2[0].tobytes()
    assert r1[1].rules == r2[1].rules and dict(r1[1].amounts) == dict(r2[1].amounts)
    assert not r1[1].lower.flags.writeable and not r1[1].target.flags.writeable


# --------------------------------------------------------------------------- batch == scalar


@pytest.mark.parametrize("name", ["panda", "fr3"])
@pytest.mark.parametrize("hz", [20.0, 1000.0])
def test_batch_gives_the_same_numbers_as_the_scalar_path(name, hz):
    c = core(name, hz, SafetyConfig())
    p = c.params
    rng = np.random.default_rng(7)
    B = 400
    a = rng.uniform(-1, 1, (B, 7)) * p.a_max
    v = rng.uniform(-p.v_max + ramp_gain(-a, p.tau, p.dt), p.v_max - ramp_gain(a, p.tau, p.dt))
    q = HOME + rng.uniform(-1.5, 1.5, (B, 7))
    t = rng.uniform(-2, 2, (B, 7)) * p.v_max * rng.choice([0.02, 0.3, 1.0, 3.0], size=(B, 1))
    v[::11] *= 0.01  # hold a slow velocity: feasible
    a[::11] = 0.0
    t[::11] = v[::11]
    t[::37, 2] = np.nan
    q[::53, 4] = np.inf
    held = rng.random(B) < 0.5
    est = rng.random(B) < 0.05
    out, rep = c.step_batch(t, v, a, q, held=held, estop=est)
    assert rep.rules.any() and (rep.rules == 0).any()
    for b in range(B):
        qb = q[b] if np.isfinite(q[b]).all() else None
        cmd, r = c.step(t[b], v_prev=v[b], a_prev=a[b], q=qb, held=bool(held[b]),
                        estop=bool(est[b]))
        assert np.array_equal(cmd, out[b]), b
        assert int(r.rules) == int(rep.rules[b]), b
        assert [r.amounts.get(x, 0.0) for x in RULES] == rep.amounts[b].tolist(), b
        assert np.array_equal(r.lower, rep.lower[b]) and np.array_equal(r.upper, rep.upper[b])


# --------------------------------------------------------------------------- the filter


def test_filter_watchdog_brakes_after_the_timeout():
    f = SafetyFilter(RobotProfile(name="panda"), JOINT_ONLY, control_hz=20)  # 20 Hz, 0.1 s
    prop = vec(0, 0.6)
    cmd, rep = f.step(0.0, prop, q=HOME, state_stamp=0.0)
    assert rep.rules == Rule(0) and cmd[0] == 0.6
    cmd, rep = f.step(0.05, None, q=HOME, state_stamp=0.05)  # held, still within the timeout
    assert rep.rules == Rule(0) and cmd[0] == 0.6
    cmd, rep = f.step(0.10, None, q=HOME, state_stamp=0.10)  # age 0.1 = timeout: not yet
    assert rep.rules == Rule(0)
    cmd, rep = f.step(0.15, None, q=HOME, state_stamp=0.15)
    assert rep.rules == Rule.WATCHDOG and rep.amounts[Rule.WATCHDOG] == pytest.approx(0.15)
    assert cmd[0] == 0.0  # 0.6 <= A dt = 0.675: one period
    cmd, rep = f.step(0.20, vec(0, 0.3), q=HOME, state_stamp=0.20)  # a fresh proposal: resumes
    assert rep.rules == Rule(0) and cmd[0] == 0.3


def test_filter_estop_and_no_proposal_yet():
    f = SafetyFilter(RobotProfile(name="fr3"), JOINT_ONLY, control_hz=20)
    cmd, rep = f.step(0.0, None, q=HOME, state_stamp=0.0)
    assert rep.rules == Rule.WATCHDOG and cmd.tolist() == [0.0] * 7
    cmd, rep = f.step(0.05, vec(0, 0.4), q=HOME, state_stamp=0.05)
    assert cmd[0] == 0.4
    cmd, rep = f.step(0.10, vec(0, 0.4), q=HOME, state_stamp=0.10, estop=True)
    assert rep.rules == Rule.ESTOP and cmd[0] == 0.0  # 0.4 <= A dt = 0.45


def test_filter_interpolates_at_1khz_without_overshoot_and_lands_exactly():
    cfg = SafetyConfig(ee_speed_max=None, workspace_enabled=False, output_hz=1000)
    f = SafetyFilter(RobotProfile(name="panda"), cfg, control_hz=20)
    target = np.array([0.5, -0.3, 0.2, 0.0, 1.0, -1.0, 0.05])
    q = HOME.copy()
    outs = []
    for k in range(100):  # 0.1 s at 1 kHz (the 1 rad/s joints need ~76 ms)
        cmd, rep = f.step(k * 1e-3, target if k == 0 else None, q=q, state_stamp=k * 1e-3)
        outs.append(cmd)
        q = q + cmd * 1e-3
    outs = np.array(outs)
    # monotone approach, never past the target, lands on it bit for bit and stays
    for j in range(7):
        if target[j] >= 0:
            assert (outs[:, j] <= target[j]).all() and (np.diff(outs[:, j]) >= 0).all()
        else:
            assert (outs[:, j] >= target[j]).all() and (np.diff(outs[:, j]) <= 0).all()
    assert outs[-1].tobytes() == target.tobytes()
    assert rep.rules == Rule(0)
    acc = np.diff(np.vstack([np.zeros(7), outs]), axis=0) / 1e-3
    assert (np.abs(acc) <= f.params.a_max * (1 + 1e-9)).all()
    assert (np.abs(np.diff(np.vstack([np.zeros(7), acc]), axis=0))
            <= f.params.tau * (1 + 1e-9)).all()


def test_filter_start_from_a_held_velocity_and_reject_an_impossible_one():
    prof = RobotProfile(name="panda")
    f = SafetyFilter(prof, JOINT_ONLY, control_hz=20, v_init=vec(0, 1.0))
    cmd, rep = f.step(0.0, None, q=HOME)
    assert cmd[0] == pytest.approx(0.325) and rep.rules & Rule.WATCHDOG  # braking, no jump
    with pytest.raises(ValueError, match="v_prev"):
        SafetyFilter(prof, JOINT_ONLY, control_hz=20, v_init=vec(0, 3.0))
    with pytest.raises(ValueError, match="now"):
        f.step(math.nan)


def test_watchdog_counts_from_the_proposals_arrival():
    """A proposal that arrived between ticks ages from its arrival, not from the tick."""
    from robot_rl.config import RobotProfile, SafetyConfig
    from robot_rl.safety import Rule, SafetyFilter

    cfg = SafetyConfig(workspace_enabled=False, ee_speed_max=None, watchdog_timeout=0.1)
    f = SafetyFilter(RobotProfile(name="panda"), cfg, control_hz=100.0)
    q = list(RobotProfile(name="panda").home)
    _, rep = f.step(1.000, [0.0] * 7, q=q, proposal_time=0.995)
    assert not rep.rules & Rule.WATCHDOG
    _, rep = f.step(1.090, None, q=q)  # 95 ms after arrival: fresh
    assert not rep.rules & Rule.WATCHDOG
    _, rep = f.step(1.100, None, q=q)  # 105 ms after arrival (only 100 ms after the tick)
    assert rep.rules & Rule.WATCHDOG
    with pytest.raises(ValueError, match="proposal_time"):
        f.step(2.0, [0.0] * 7, q=q, proposal_time=2.5)


def test_missed_period_safe_caps_acceleration_at_jerk_times_dt():
    """Default config: A <= J dt, so a missed period (zero acceleration as the driver samples
    it) cannot break the jerk limit. Panda at 0.9 scale, 1 kHz: J dt = A / 2 for every joint;
    at 20 Hz J dt >> A and nothing changes."""
    prof = RobotProfile(name="panda")
    p1k = SafetyParams.from_config(prof, _SafetyConfig(output_hz=1000), control_hz=20)
    assert p1k.a_max.tolist() == pytest.approx([6.75, 3.375, 4.5, 5.625, 6.75, 9.0, 9.0])
    assert (p1k.a_max <= p1k.tau).all() and (p1k.ramp == 0.0).all()
    p20 = SafetyParams.from_config(prof, _SafetyConfig(), control_hz=20)
    assert p20.a_max.tolist() == pytest.approx([13.5, 6.75, 9.0, 11.25, 13.5, 18.0, 18.0])
    off = SafetyParams.from_config(prof, _SafetyConfig(output_hz=1000, missed_period_safe=False),
                                   control_hz=20)
    assert off.a_max.tolist() == pytest.approx(p20.a_max.tolist())
    # Driver view with a missed period: outputs v_1..v_k, then v_k again, then on. Every
    # sampled acceleration change stays within J dt.
    f = SafetyFilter(prof, _SafetyConfig(output_hz=1000, ee_speed_max=None,
                                         workspace_enabled=False), control_hz=20)
    dt = 1e-3
    target = np.full(7, 1.0)
    samples = []
    for k in range(60):
        cmd, _ = f.step(k * dt, target if k == 0 else None, proposal_time=0.0)
        samples.append(cmd)
        if k in (5, 17, 30):  # the node missed the next period: the driver holds the value
            samples.append(cmd)
    v = np.array(samples)
    acc = np.diff(v, axis=0) / dt
    jerk = np.diff(acc, axis=0) / dt
    assert (np.abs(acc) <= p1k.a_max * (1 + 1e-9)).all()
    assert (np.abs(jerk) <= p1k.j_max * (1 + 1e-9)).all()
