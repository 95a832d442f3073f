"""The scripted operator (robot_rl.sim.operator): a seeded, noisy, human-like device stream.

Its device commands go through the default teleop mapping (robot_rl.teleop, as the teleop node
does) into a kinematic point (``unit``) or the PyBullet env (``sim``), and must reach the goal in
most episodes -- slower and less smoothly than sim/scripted.py's ScriptedReacher, as a person
would -- with the deadman held while driving and honest episode marks.
"""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.actions import ActionMapper
from robot_rl.config import load_config
from robot_rl.kinematics import Kinematics
from robot_rl.sim.operator import OperatorParams, ScriptedOperator
from robot_rl.sim.scripted import ScriptedReacher
from robot_rl.tasks import TaskSnapshot, make_task
from robot_rl.teleop import (MARK_DISCARD, MARK_FAILURE, MARK_NONE, MARK_SUCCESS, SPACENAV_RANGE,
                             TeleopMapper)

pytestmark = pytest.mark.unit

EPISODES = 20
NO_DISCARD = OperatorParams(discard_prob=0.0)


def _cfg(*overrides):
    return load_config(None, ["task.action_mode=ee_velocity", *overrides])


def _home_ee(cfg) -> np.ndarray:
    return Kinematics.from_profile(cfg.robot).ee_position(np.asarray(cfg.robot.home))


def _point_episodes(cfg, n, seed=0, params=NO_DISCARD, extra_steps=15, frozen=False):
    """Operator -> device -> TeleopMapper -> a point that moves at action * ee_speed.

    Returns one dict per episode: marks [(step, mark, true distance)], first success step,
    actions, deadman flags, phases.
    """
    task = make_task(cfg.task, cfg.robot)
    ee0 = _home_ee(cfg)
    op = ScriptedOperator(cfg, seed=seed, params=params)
    rng = np.random.default_rng(seed + 1)
    dt = cfg.sim.control_dt
    out = []
    for _ in range(n):
        goal = task.sample_goal(rng)
        p = ee0 + rng.uniform(-0.02, 0.02, 3)
        op.reset(goal)
        mapper = TeleopMapper.from_config(cfg)
        ep = {"goal": goal, "marks": [], "first": None, "actions": [], "deadman": [],
              "phases": [], "device": []}
        for t in range(op.time_limit + extra_steps):
            now = t * dt
            d = op.step(p)
            mapper.on_axes(d.axes, now)
            mapper.on_buttons(d.buttons, now)
            c = mapper.command(now)
            ep["device"].append(d)
            ep["phases"].append(d.phase)
            ep["actions"].append(c.action)
            ep["deadman"].append(c.deadman)
            if c.mark != MARK_NONE:
                ep["marks"].append((t, c.mark, float(np.linalg.norm(goal - p))))
            if not frozen:
                p = p + c.action * cfg.task.ee_speed * dt
            if ep["first"] is None and np.linalg.norm(goal - p) < cfg.task.success_threshold:
                ep["first"] = t
            if op.done:
                break
        out.append(ep)
    return out


def _reacher_episodes(cfg, n, seed=0):
    task = make_task(cfg.task, cfg.robot)
    ee0 = _home_ee(cfg)
    reacher = ScriptedReacher(ActionMapper(cfg.task, cfg.robot))
    rng = np.random.default_rng(seed + 1)
    dt = cfg.sim.control_dt
    q = np.asarray(cfg.robot.home)
    out = []
    for _ in range(n):
        goal = task.sample_goal(rng)
        p = ee0 + rng.uniform(-0.02, 0.02, 3)
        ep = {"first": None, "actions": []}
        for t in range(cfg.task.max_steps):
            a = reacher(TaskSnapshot(q=q, dq=np.zeros(7), ee_pos=p, goal=goal))
            ep["actions"].append(a)
            p = p + a * cfg.task.ee_speed * dt
            if np.linalg.norm(goal - p) < cfg.task.success_threshold:
                ep["first"] = t
                break
        out.append(ep)
    return out


def _jitter(actions) -> float:
    a = np.asarray(actions, dtype=float)
    return float(np.mean(np.linalg.norm(np.diff(a, axis=0), axis=1))) if len(a) > 1 else 0.0


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_device_stream_other_seed_another():
    cfg = _cfg()

    def stream(seed):
        eps = _point_episodes(cfg, 3, seed=seed, params=OperatorParams())
        return [(d.axes.tolist(), d.buttons) for ep in eps for d in ep["device"]]

    a, b, c = stream(7), stream(7), stream(8)
    assert a == b
    assert a != c


def test_the_device_looks_like_a_spacemouse():
    cfg = _cfg()
    ep = _point_episodes(cfg, 1, seed=3)[0]
    devs = ep["device"]
    assert all(d.axes.shape == (6,) and len(d.buttons) == 4 for d in devs)
    driving = [d for d in devs if d.phase == "drive"]
    lin = np.array([d.axes[:3] for d in driving])
    # saturates like a SpaceMouse (|value| about 0.68 at full deflection; noise on top)
    assert np.abs(lin).max() <= SPACENAV_RANGE + 0.15
    assert np.abs(lin).max() > 0.5
    # rotation cross-talk that the (translation-only) mapping ignores
    assert np.abs(np.array([d.axes[3:] for d in driving])).max() > 0.02
    # grab (deadman up) -> drive (deadman held) -> mark (held, button pressed) -> release
    phases = ep["phases"]
    first_drive = phases.index("drive")
    assert set(phases[:first_drive]) == {"grab"} and all(not d.buttons[0] for d in devs[:first_drive])
    assert all(d.buttons[0] == 1 for d in devs if d.phase in ("drive", "mark"))
    assert devs[-1].phase == "release" and devs[-1].buttons == (0, 0, 0, 0)
    pressed = [d.buttons[1] for d in devs]
    assert sum(pressed) >= 1 and ep["marks"] == [(ep["marks"][0][0], MARK_SUCCESS,
                                                  ep["marks"][0][2])]
    # the teleop command: deadman true exactly while the operator holds the deadman
    assert ep["deadman"] == [bool(d.buttons[0]) for d in devs]


def test_operator_needs_an_end_effector_action_space():
    with pytest.raises(ValueError, match="drives the end-effector"):
        ScriptedOperator(load_config(None, ["teleop.mapping=direct"]))  # joint, direct
    ScriptedOperator(load_config(None, []))  # joint mode, cartesian mapping: fine


# --------------------------------------------------------------------------- it reaches


def test_reaches_the_goal_in_most_episodes_on_a_kinematic_point():
    cfg = _cfg()
    eps = _point_episodes(cfg, EPISODES, seed=0)
    success = [ep for ep in eps if ep["marks"] and ep["marks"][0][1] == MARK_SUCCESS]
    # measured: 20 / 20 (seed 0; 100 episodes: 98)
    assert len(success) >= 0.8 * EPISODES, [ep["marks"] for ep in eps]
    for ep in success:
        t, mark, dist = ep["marks"][0]
        assert dist < cfg.task.success_threshold  # an honest mark: it really is there
        assert t < cfg.task.max_steps + 5
        assert len(ep["marks"]) == 1
    for ep in eps:  # driving only with the deadman held; zero otherwise
        for a, dm in zip(ep["actions"], ep["deadman"]):
            assert np.all(np.abs(a) <= 1.0)
            if not dm:
                assert not a.any()


def test_noisier_and_slower_than_the_scripted_reacher():
    cfg = _cfg()
    ops = _point_episodes(cfg, EPISODES, seed=0)
    bots = _reacher_episodes(cfg, EPISODES, seed=0)
    op_first = np.mean([ep["first"] for ep in ops if ep["first"] is not None])
    bot_first = np.mean([ep["first"] for ep in bots if ep["first"] is not None])
    assert all(ep["first"] is not None for ep in bots)
    # measured: 21.4 vs 16.8 steps to the first success
    assert op_first > 1.1 * bot_first, (op_first, bot_first)
    op_jitter = np.mean([_jitter([a for a, dm in zip(ep["actions"], ep["deadman"]) if dm])
                         for ep in ops])
    bot_jitter = np.mean([_jitter(ep["actions"]) for ep in bots])
    assert op_jitter > 1.5 * bot_jitter, (op_jitter, bot_jitter)  # measured: 0.125 vs 0.017


def test_time_limit_gives_failure_and_discards_happen():
    cfg = _cfg()
    # an arm that does not move: the operator gives up at its time limit
    ep = _point_episodes(cfg, 1, seed=1, frozen=True)[0]
    assert [m for _, m, _ in ep["marks"]] == [MARK_FAILURE]
    assert ep["marks"][0][0] == cfg.task.max_steps - 1  # in the last step of the time limit
    assert not ep["deadman"][-1]
    # discard: with probability 1 every episode not yet done is discarded part-way, one mark
    eps = _point_episodes(cfg, 5, seed=2, params=OperatorParams(discard_prob=1.0), frozen=True)
    for ep in eps:
        assert [m for _, m, _ in ep["marks"]] == [MARK_DISCARD]
        assert 0.2 * cfg.task.max_steps <= ep["marks"][0][0] <= 0.5 * cfg.task.max_steps + 2


def test_gamepad_operator_through_the_joy_mapping():
    cfg = _cfg("teleop.input=joy")
    eps = _point_episodes(cfg, 10, seed=4)
    assert all(ep["device"][0].axes.shape == (6,) for ep in eps)
    assert all(len(ep["device"][0].buttons) == 10 for ep in eps)  # LB = 9
    ok = sum(bool(ep["marks"]) and ep["marks"][0][1] == MARK_SUCCESS for ep in eps)
    assert ok >= 8


# --------------------------------------------------------------------------- PyBullet


@pytest.mark.sim
@pytest.mark.parametrize("mode", ["ee_velocity", "joint"])
def test_reaches_the_goal_in_pybullet(mode):
    """The PyBullet arm, driven through the default spacenav mapping (joint mode: cartesian)."""
    from robot_rl.sim.env import PandaEnv

    limit = 50
    cfg = load_config(None, [f"task.action_mode={mode}", "task.terminate_on_success=false",
                             f"task.max_steps={limit + 20}"])
    env = PandaEnv(cfg)
    op = ScriptedOperator(cfg, seed=0, params=OperatorParams(discard_prob=0.0, time_limit=limit))
    dt = cfg.sim.control_dt
    marks = []
    try:
        for e in range(EPISODES):
            env.reset(seed=100 + e)
            goal = env.goal
            op.reset(goal)
            mapper = TeleopMapper.from_config(cfg)
            mark = None
            for t in range(limit + 20):
                s = env.snapshot()
                now = t * dt
                d = op.step(s.ee_pos)
                mapper.on_axes(d.axes, now)
                mapper.on_buttons(d.buttons, now)
                mapper.on_joint_state(s.q, now)
                c = mapper.command(now)
                if c.mark != MARK_NONE and mark is None:
                    mark = (c.mark, float(np.linalg.norm(goal - s.ee_pos)))
                env.step(c.action)
                if op.done:
                    break
            marks.append(mark)
    finally:
        env.close()
    success = [m for m in marks if m is not None and m[0] == MARK_SUCCESS]
    # measured: 19 / 20 in both modes (the same trajectories: DLS either way); 95 / 100 in
    # ee_velocity mode over seeds 100..199
    assert len(success) >= 0.8 * EPISODES, marks
    assert all(dist < cfg.task.success_threshold for _, dist in success)
