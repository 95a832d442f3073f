"""The actor's ROS-free logic (robot_rl.actor): outbox, episodes, behaviour policy, policy swap."""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.actor import ActorCore, Outbox, PendingStep, episode_id_for, new_session
from robot_rl.config import config_from_dict

pytestmark = pytest.mark.unit


def test_outbox_ack_drops_prefix_and_resends_only_old_entries():
    box = Outbox(capacity=5, resend_after=2.0)
    for seq in range(4):
        box.add(seq, f"t{seq}", now=10.0 + seq)  # sent at 10, 11, 12, 13
    assert len(box) == 4 and not box.full
    assert box.due(now=12.5) == ["t0"]  # 2.5 s old; t1 is 1.5 s old
    assert box.due(now=12.6) == []  # t0 was just re-sent: young again
    assert box.due(now=14.6) == ["t1", "t2"]  # t0 backs off: 4 s after its first re-send
    assert box.due(now=16.5) == ["t0", "t3"]
    assert box.ack(1) == 2 and len(box) == 2
    assert box.ack(0) == 0  # an older ack changes nothing
    box.add(1, "late duplicate", now=20.0)  # already durable: not kept
    assert len(box) == 2
    box.add(4, "t4", 20.0)
    box.add(5, "t5", 20.0)
    box.add(6, "t6", 20.0)
    assert box.full and len(box) == 5
    assert box.ack(6) == 5 and len(box) == 0 and box.acked == 6
    assert box.resent == 5


def test_outbox_backs_off_while_unacknowledged_and_rewinds():
    box = Outbox(capacity=10, resend_after=1.0, max_backoff=4)
    box.add(0, "t0", now=0.0)
    times = [t / 10 for t in range(0, 400) if box.due(now=t / 10)]
    assert times == [1.0, 3.0, 7.0, 11.0, 15.0, 19.0, 23.0, 27.0, 31.0, 35.0, 39.0]  # 1,2,4,4..
    box.rewind()  # the replay is back
    assert box.due(now=39.05) == ["t0"]


def test_outbox_rejects_bad_capacity():
    with pytest.raises(ValueError, match="outbox_capacity"):
        Outbox(0)


def test_episode_ids_unique_across_sessions_and_counters():
    s1, s2 = new_session(), new_session()
    assert s1 != s2 and s1 > 0 and s1 < 2**63
    ids = {episode_id_for(s, c) for s in (s1, s2) for c in range(100)}
    assert len(ids) == 200
    assert all(0 <= i < 2**64 for i in ids)


@pytest.fixture(scope="module")
def core():
    cfg = config_from_dict({"task": {"action_mode": "ee_velocity", "max_steps": 3}})
    return ActorCore(cfg, robot_id=1, session=12345, seed=0)


def test_outcome_follows_the_env_rules(core):
    th = core.cfg.task.success_threshold
    # dense reward -d; success terminates; the time limit truncates (not when terminated)
    assert core.outcome(0.2, step_index=0) == (pytest.approx(-0.2), False, False, False)
    assert core.outcome(th / 2, step_index=0) == (pytest.approx(-th / 2), True, False, True)
    assert core.outcome(0.2, step_index=2) == (pytest.approx(-0.2), False, True, False)
    assert core.outcome(th / 2, step_index=2) == (pytest.approx(-th / 2), True, False, True)


def test_observation_matches_the_task_and_kinematics(core):
    q = np.asarray(core.cfg.robot.home, float)
    s = core.snapshot(q, np.zeros(7), np.array([0.5, 0.0, 0.3]), None)
    obs, d = core.observe(s)
    assert obs.shape == (20,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[14:17], core.kin.ee_position(q), rtol=1e-6)
    assert d == pytest.approx(float(np.linalg.norm(core.kin.ee_position(q) - [0.5, 0.0, 0.3])))
    with pytest.raises(ValueError):
        core.observe(core.snapshot(q, np.full(7, 100.0), np.zeros(3), None))  # dq out of spec


def test_warmup_actions_uniform_then_policy_plus_noise(core):
    a = np.array([core.act(np.zeros(20, np.float32)) for _ in range(2000)])
    assert a.shape == (2000, 3) and np.all(a >= -1) and np.all(a <= 1)
    assert abs(a.mean()) < 0.05 and a.std() > 0.5  # uniform on [-1, 1]: std 0.577


def test_applied_action_maps_back_through_the_jacobian(core):
    q = np.asarray(core.cfg.robot.home, float)
    a = np.array([0.3, -0.2, 0.1], np.float32)
    dq = core.mapper.to_joint_velocities(a, q)
    step = PendingStep(0, np.zeros(20, np.float32), a, q, 7, 0, 0, 0)
    with pytest.raises(ValueError):
        core.applied_action(step)
    step.applied.append(dq)
    np.testing.assert_allclose(core.applied_action(step), a, atol=0.02)  # DLS damping: ~3 %
    step.applied.append(np.zeros(7))  # a 1 kHz safety node: the mean of the step's commands
    np.testing.assert_allclose(core.applied_action(step), core.applied_action(PendingStep(0, None, a, q, 0, 0, 0, 0, applied=[dq])) / 2, rtol=1e-6)


def test_stored_action_is_the_applied_command_or_the_policys_proposal():
    """replay.policy_action: applied (default) -- every row carries what the robot did;
    proposed -- policy rows carry the proposal, demo and intervention rows still the command."""
    q = None
    a = np.array([0.9, -0.8, 0.1], np.float32)
    for pa in ("applied", "proposed"):
        cfg = config_from_dict({"task": {"action_mode": "ee_velocity"},
                                "replay": {"policy_action": pa}})
        core = ActorCore(cfg, 0, 99, seed=0)
        q = np.asarray(cfg.robot.home, float)
        slowed = 0.5 * core.mapper.to_joint_velocities(a, q)  # the safety node halved it
        for source in (0, 1, 2):
            step = PendingStep(0, np.zeros(20, np.float32), a, q, 7, 0, 0, 0, source=source,
                               applied=[slowed])
            got = core.stored_action(step)
            if pa == "proposed" and source == 0:
                np.testing.assert_array_equal(got, a)
            else:
                np.testing.assert_array_equal(got, core.applied_action(step))
                np.testing.assert_allclose(got, a / 2, atol=0.02)


def test_policy_swap_refuses_wrong_architecture_garbage_and_old_versions():
    import torch

    from robot_rl.agents.checkpoint import export_policy
    from robot_rl.agents.config import learner_config
    from robot_rl.agents.learning import Learner

    cfg = config_from_dict({"task": {"action_mode": "ee_velocity"},
                            "agent": {"hidden": [16, 16]}})
    core = ActorCore(cfg, 0, 99, seed=0)
    lc = learner_config(cfg.agent, cfg.replay)
    learner = Learner(lc, 20, 3, action_low=-np.ones(3, np.float32),
                      action_high=np.ones(3, np.float32), device=torch.device("cpu"), seed=0,
                      observation=core.task.obs_spec)
    blob = export_policy(learner, version=3)
    from robot_rl.agents.checkpoint import _safetensors_metadata

    h = _safetensors_metadata(blob)["config_hash"]
    assert h == core.config_hash
    assert core.load_policy(blob, 3, h) == 3
    a = core.act(np.zeros(20, np.float32))
    assert a.shape == (3,) and np.all(np.abs(a) <= 1)
    with pytest.raises(ValueError, match="not newer"):
        core.load_policy(blob, 3, h)
    with pytest.raises(ValueError, match="config_hash"):
        core.load_policy(blob, 4, "0123456789abcdef")
    with pytest.raises(ValueError, match="safetensors"):
        core.load_policy(b"\x00" * 40, 5, h)
    other = Learner(learner_config(cfg.agent.model_copy(update={"hidden": (8,)}), cfg.replay),
                    20, 3, action_low=-np.ones(3, np.float32), action_high=np.ones(3, np.float32),
                    device=torch.device("cpu"), seed=0)
    with pytest.raises(ValueError):
        core.load_policy(export_policy(other, 6), 6, h)  # claims our hash, holds another net
    assert core.policy_version == 3


def test_action_limit_mismatch_names_the_fields():
    from robot_rl.actor import action_limit_mismatch

    ee = config_from_dict({"task": {"action_mode": "ee_velocity", "ee_speed": 0.3},
                           "safety": {"ee_speed_max": 0.2}})
    msg = action_limit_mismatch(ee)
    assert "task.ee_speed" in msg and "safety.ee_speed_max" in msg and "0.52" in msg
    ok = config_from_dict({"task": {"action_mode": "ee_velocity", "ee_speed": 0.3},
                           "safety": {"ee_speed_max": 0.55}})
    assert action_limit_mismatch(ok) is None
    joint = config_from_dict({"task": {"joint_velocity_scale": 0.95}})
    assert "joint_velocity_scale" in action_limit_mismatch(joint)
    assert action_limit_mismatch(config_from_dict({})) is None


@pytest.mark.parametrize("algo,norm", [("td3", True), ("svg0", True), ("td3", False)])
def test_numpy_policy_matches_the_torch_actor(algo, norm):
    import torch

    from robot_rl.actor import NumpyPolicy
    from robot_rl.agents.checkpoint import export_policy, load_policy
    from robot_rl.agents.config import learner_config
    from robot_rl.agents.learning import Learner

    cfg = config_from_dict({"agent": {"algo": algo, "hidden": [64, 48],
                                      "obs_normalization": norm}})
    lc = learner_config(cfg.agent, cfg.replay)
    low, high = np.full(7, -0.5, np.float32), np.ones(7, np.float32)  # not the unit box
    learner = Learner(lc, 20, 7, action_low=low, action_high=high,
                      device=torch.device("cpu"), seed=1)
    rng = np.random.default_rng(0)
    obs = rng.normal(0.3, 2.0, (500, 20)).astype(np.float32)
    learner.actor.normalizer.update(torch.as_tensor(obs))  # non-trivial statistics
    loaded = load_policy(export_policy(learner, 2))
    fast = NumpyPolicy(loaded)
    want = loaded(obs)
    got = np.stack([fast(o) for o in obs])
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert np.all(got >= low - 1e-6) and np.all(got <= high + 1e-6)
    with pytest.raises(ValueError, match="observation"):
        fast(np.zeros(19))
