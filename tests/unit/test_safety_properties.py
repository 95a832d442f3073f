"""Property tests of robot_rl.safety (hypothesis): a few thousand targeted examples.

Inputs aim at the edges: NaN, +-inf, huge and tiny values, wrong lengths, shuffled and foreign
joint names; previous outputs at the velocity/acceleration limits (any state the filter itself
can reach: ``|a| <= A``, ``v + P(a) <= V``, ``-v + P(-a) <= V``); joint positions inside, on and
beyond the position margins (the arm pushed by hand); 20 Hz, 100 Hz and 1 kHz output rates; both
profiles. Checked on every output:

* the hard limits: ``|v| <= V`` exactly, ``|a| <= A`` and ``|a - a_prev| <= J dt`` (to float
  round-off of ``(v - v_prev) / dt``), and the new state is again one the filter can continue
  from (so the limits can be kept for ever);
* the command lies in the reported admissible interval; a fresh, valid proposal that only the
  joint rules touched is clamped exactly onto the bound that stopped it;
* ``rules == 0`` <=> the proposal came back bit for bit;
* determinism, and that bad inputs mean "brake to zero".

Rollouts check the position promise: with the arm tracking the commands, no joint ever passes
its margin, whatever the proposals.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.config import RobotProfile, SafetyConfig as _SafetyConfig

from robot_rl.safety import Rule, SafetyCore, ramp_gain

pytestmark = pytest.mark.unit


def SafetyConfig(**kw) -> _SafetyConfig:  # noqa: N802 - stands in for the config class
    """These tests exercise the full jerk-ramp maths, so the cap A <= J dt of
    ``missed_period_safe`` (which removes the ramp above ~500 Hz) is off unless a test asks."""
    kw.setdefault("missed_period_safe", False)
    return _SafetyConfig(**kw)

HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854])
RATES = (20.0, 100.0, 1000.0)
TARGET_ZERO = (Rule.NONFINITE | Rule.BAD_LENGTH | Rule.STALE_STATE | Rule.WATCHDOG | Rule.ESTOP
               | Rule.JOINT_ORDER)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=None)
def core(name: str, hz: float, cartesian: bool) -> SafetyCore:
    cfg = SafetyConfig() if cartesian else SafetyConfig(ee_speed_max=None,
                                                        workspace_enabled=False)
    return SafetyCore.from_config(RobotProfile(name=name), cfg, control_hz=20, output_hz=hz)


unit = st.floats(0.0, 1.0)
edge_unit = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 1e-12, 1.0 - 1e-12]), unit)


@st.composite
def setups(draw, cartesian=st.booleans()):
    """(core, v_prev, a_prev, q): a reachable previous output and a measured position."""
    c = core(draw(st.sampled_from(["panda", "fr3"])), draw(st.sampled_from(RATES)),
             draw(cartesian))
    p = c.params
    n = p.n_joints
    a_frac = np.array(draw(st.lists(st.one_of(st.sampled_from([-1.0, 0.0, 1.0]),
                                              st.floats(-1.0, 1.0)), min_size=n, max_size=n)))
    a = a_frac * p.a_max
    lo_v = -p.v_max + ramp_gain(-a, p.tau, p.dt)
    hi_v = p.v_max - ramp_gain(a, p.tau, p.dt)
    u = np.array(draw(st.lists(edge_unit, min_size=n, max_size=n)))
    v = np.minimum(np.maximum(lo_v + u * (hi_v - lo_v), lo_v), hi_v)
    kind = draw(st.sampled_from(["home", "inside", "edge", "beyond"]))
    if kind == "home":
        q = HOME + np.array(draw(st.lists(st.floats(-0.3, 0.3), min_size=n, max_size=n)))
    else:
        w = np.array(draw(st.lists(edge_unit, min_size=n, max_size=n)))
        q = p.q_lower + w * (p.q_upper - p.q_lower)
        if kind == "edge":
            q = np.where(w > 0.5, p.q_upper, p.q_lower)
        elif kind == "beyond":
            out = np.array(draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n)))
            q = np.where(w > 0.5, p.q_upper + out, p.q_lower - out)
    return c, v, a, q


values = st.one_of(
    st.floats(-3.0, 3.0),
    st.floats(-0.01, 0.01),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 5e-324, -0.0, 0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def check_hard_limits(c: SafetyCore, v, a, cmd) -> None:
    p = c.params
    assert (np.abs(cmd) <= p.v_max).all(), "velocity limit"
    acc = (cmd - v) / p.dt
    # (v' - v)/dt carries a round-off of a few ulp(v)/dt
    tol = 1e-9 * p.a_max + 8 * np.finfo(float).eps * (np.abs(v) + np.abs(cmd) + 1.0) / p.dt
    assert (np.abs(acc) <= p.a_max + tol).all(), "acceleration limit"
    assert (np.abs(acc - a) <= p.tau + tol).all(), "jerk limit"
    # the new state is one the filter can continue from: it can still stop accelerating before V
    acc = np.clip(acc, -p.a_max, p.a_max)
    assert (cmd + ramp_gain(acc, p.tau, p.dt) <= p.v_max * (1 + 1e-9) + 1e-9).all()
    assert (-cmd + ramp_gain(-acc, p.tau, p.dt) <= p.v_max * (1 + 1e-9) + 1e-9).all()


@settings(max_examples=1200, **SETTINGS)
@given(setup=setups(), prop=st.lists(values, min_size=7, max_size=7), held=st.booleans(),
       estop=st.booleans())
def test_every_output_keeps_the_hard_limits_and_rules_match_changes(setup, prop, held, estop):
    c, v, a, q = setup
    prop = np.array(prop)
    cmd, rep = c.step(prop, v_prev=v, a_prev=a, q=q, held=held, estop=estop)
    check_hard_limits(c, v, a, cmd)
    assert (rep.lower <= cmd).all() and (cmd <= rep.upper).all()
    if rep.rules == Rule(0):
        assert cmd.tobytes() == prop.tobytes()
    else:
        assert set(rep.amounts) == {r for r in Rule if r in rep.rules}
        assert all(x > 0 for x in rep.amounts.values())
    if rep.rules & TARGET_ZERO:
        assert rep.target.tolist() == [0.0] * 7
    else:
        assert rep.target.tobytes() == prop.tobytes()
        if not held and not rep.rules & (Rule.WORKSPACE | Rule.EE_SPEED):
            # clamped exactly onto the active bound (== : numpy may flip the sign of a zero)
            assert (cmd == np.minimum(np.maximum(prop, rep.lower), rep.upper)).all()
            moved = cmd != prop
            assert ((cmd[moved] == rep.lower[moved]) | (cmd[moved] == rep.upper[moved])).all()
    cmd2, rep2 = c.step(prop, v_prev=v, a_prev=a, q=q, held=held, estop=estop)
    assert cmd2.tobytes() == cmd.tobytes() and rep2.rules == rep.rules
    assert dict(rep2.amounts) == dict(rep.amounts)


@settings(max_examples=600, **SETTINGS)
@given(setup=setups(cartesian=st.just(False)),
       prop=st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7))
def test_a_proposal_inside_the_bounds_passes_bit_for_bit(setup, prop):
    c, v, a, q = setup
    _, rep = c.step(np.zeros(7), v_prev=v, a_prev=a, q=q)
    # any point of the admissible interval is a feasible proposal
    inside = rep.lower + (rep.upper - rep.lower) * (np.array(prop) + 1.0) / 2.0
    inside = np.minimum(np.maximum(inside, rep.lower), rep.upper)
    cmd, rep2 = c.step(inside, v_prev=v, a_prev=a, q=q)
    assert cmd.tobytes() == inside.tobytes()
    if rep2.rules != Rule(0):
        # only when the arm cannot brake in time any more (measured far past its braking
        # curve): the one admissible output is the hard-limit stop, and that is reported
        assert rep2.rules == Rule.POSITION and (rep2.lower == rep2.upper).any()
    check_hard_limits(c, v, a, cmd)


@settings(max_examples=600, **SETTINGS)
@given(setup=setups(), prop=st.lists(values, min_size=0, max_size=10),
       names=st.sampled_from(["none", "shuffled", "foreign", "missing", "duplicated"]),
       perm_seed=st.integers(0, 2**32 - 1), state_age=st.sampled_from([0.0, 0.05, 0.5, math.nan]),
       state_names=st.sampled_from(["none", "shuffled+fingers", "missing"]))
def test_bad_inputs_mean_brake_to_zero_and_names_are_matched(setup, prop, names, perm_seed,
                                                           state_age, state_names):
    c, v, a, q = setup
    n = 7
    joint = list(c.params.joint_names)
    perm = np.random.default_rng(perm_seed).permutation(n)
    prop = np.array(prop, dtype=float)
    pn = None
    if names != "none" and prop.size == n:
        pn = [joint[i] for i in perm]
        if names == "foreign":
            pn[0] = "ur5_shoulder"
        elif names == "missing":
            pn[-1] = "panda_finger_joint1"
        elif names == "duplicated":
            pn[1] = pn[0]
    qs, sn = q, None
    if state_names == "shuffled+fingers":
        qs = np.concatenate([q[perm], [0.04]])
        sn = [joint[i] for i in perm] + ["finger"]
    elif state_names == "missing":
        qs, sn = q[1:], joint[1:]
    cmd, rep = c.step(prop, proposal_names=pn, v_prev=v, a_prev=a, q=qs, state_names=sn,
                      state_age=state_age)
    check_hard_limits(c, v, a, cmd)
    valid = (prop.size == n and np.isfinite(prop).all()
             and names in ("none", "shuffled") and state_names != "missing" and state_age <= 0.1)
    if valid:
        # reordered by name: the same as sending it in profile order
        ordered = np.empty(n)
        ordered[perm if pn is not None else np.arange(n)] = prop
        ref, ref_rep = c.step(ordered, v_prev=v, a_prev=a, q=q)
        assert cmd.tobytes() == ref.tobytes() and rep.rules == ref_rep.rules
        assert rep.reordered == (pn is not None)
    else:
        assert rep.rules & TARGET_ZERO
        # "target zero" is braking toward zero within the limits, never a jump
        state_ok = state_names != "missing"
        ref, _ = c.step(np.zeros(n), v_prev=v, a_prev=a, q=q if state_ok else None, held=True)
        assert cmd.tobytes() == ref.tobytes()


@settings(max_examples=40, **SETTINGS)
@given(name=st.sampled_from(["panda", "fr3"]), hz=st.sampled_from(RATES),
       seed=st.integers(0, 2**32 - 1), start=st.sampled_from(["inside", "edge"]))
def test_rollouts_never_pass_a_joint_margin(name, hz, seed, start):
    c = core(name, hz, False)
    p = c.params
    rng = np.random.default_rng(seed)
    B, steps = 64, 150
    if start == "inside":
        q = rng.uniform(p.q_lower, p.q_upper, (B, 7))
    else:
        q = np.where(rng.random((B, 7)) < 0.5, p.q_lower, p.q_upper)
    v = np.zeros((B, 7))
    a = np.zeros((B, 7))
    hold = max(1, int(hz / 20))
    for k in range(steps):
        if k % hold == 0:
            t = rng.uniform(-1.5, 1.5, (B, 7)) * p.v_max * rng.choice([0.1, 1.0, 3.0], (B, 1))
        cmd, _ = c.step_batch(t, v, a, q, held=k % hold != 0)
        for b in range(0, B, 16):
            check_hard_limits(c, v[b], a[b], cmd[b])
        a = (cmd - v) / p.dt
        v = cmd
        q = q + v * p.dt
        assert (q <= p.q_upper + 1e-9).all() and (q >= p.q_lower - 1e-9).all()
