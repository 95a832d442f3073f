"""Hindsight relabelling at sample time (robot_rl/replay/her.py, issue 18 item 1): a real store
of reach-shaped rows (two robots' episodes interleaved, one still running), the real mirror and
sampler, the reach task's goal slices and compute_reward. Each row's achieved goal encodes its
(robot, episode, step), so every relabelled goal can be traced to the row it came from."""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.config import ReplayConfig, config_from_dict
from robot_rl.replay.her import HindsightRelabeler, relabeler_for_task
from robot_rl.replay.mirror import ReplayMirror
from robot_rl.replay.sampler import ReplaySampler
from robot_rl.replay.schema import empty_columns
from robot_rl.replay.store import ReplayWriter
from robot_rl.tasks import make_task

pytestmark = pytest.mark.unit

EP_LEN = 10


def _task(reward="sparse", terminate=False):
    cfg = config_from_dict({"task": {"name": "reach", "action_mode": "ee_velocity",
                                     "reward": reward, "max_steps": EP_LEN,
                                     "terminate_on_success": terminate}})
    return make_task(cfg.task, cfg.robot)


def _ee(robot, ep, step):
    """An end-effector position that names (robot, episode, step)."""
    return np.array([0.1 * ep + 0.01 * robot, 0.01 * step, 0.3])


def _decode(ag):
    ep = np.floor(ag[..., 0] / 0.1 + 1e-3).astype(int)
    robot = np.rint((ag[..., 0] - 0.1 * ep) / 0.01).astype(int)
    return robot, ep, np.rint(ag[..., 1] / 0.01).astype(int)


@pytest.fixture
def store(tmp_path):
    """Robot 0: episodes 0-2 complete; robot 1: episodes 0-1 complete, episode 2 running (its
    first 4 rows committed). Rows interleave by step across robots."""
    task = _task()
    path = tmp_path / "replay.zarr"
    rows = []
    for ep in range(3):
        for step in range(EP_LEN):
            for robot in (0, 1):
                if robot == 1 and ep == 2 and step >= 4:
                    continue
                rows.append((robot, ep, step))
    n = len(rows)
    cols = empty_columns(n, 20, 3)
    goal = np.array([0.5, 0.5, 0.5])
    for i, (robot, ep, step) in enumerate(rows):
        cols["observation"][i, 14:17] = _ee(robot, ep, step)
        cols["observation"][i, 17:20] = goal
        cols["next_observation"][i, 14:17] = _ee(robot, ep, step + 1)
        cols["next_observation"][i, 17:20] = goal
        cols["reward"][i] = -1.0
        cols["truncated"][i] = step == EP_LEN - 1
        cols["robot_id"][i] = robot
        cols["actor_session"][i] = 7 + robot
        cols["seq"][i] = ep * EP_LEN + step
        cols["episode_id"][i] = ep
        cols["step_index"][i] = step
        cols["source"][i] = 1 if ep == 0 else 0  # episode 0 of both robots: demos
    with ReplayWriter(path, task.obs_spec, _action_spec(), ReplayConfig(
            fsync=False, check_bounds=False, chunk_rows=32)) as w:
        w.append_batch(cols)
    return path, cols


def _action_spec():
    from robot_rl.replay.synthetic import make_specs

    return make_specs(20, 3)[1]


def _sampler(path, her, seed=0, **kw):
    s = ReplaySampler(ReplayMirror(path, 1000), gamma=0.9, seed=seed, her=her, **kw)
    s.refresh()
    return s


def _traced(batch, her):
    """(robot, episode, step) of each row's own transition, and of its goal's source."""
    obs, nobs = batch.observation.numpy(), batch.next_observation.numpy()
    own = _decode(obs[:, her.achieved])
    goal = nobs[:, her.desired]
    relabelled = ~np.all(np.isclose(goal, 0.5), axis=1)
    # the goal is the achieved goal after the source row's step: step + 1 of that row
    src = _decode(goal)
    return own, src, relabelled


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_goals_come_from_the_right_rows_of_the_same_episode(store, strategy):
    path, _cols = store
    task = _task()
    her = relabeler_for_task(task, strategy, k=4)
    s = _sampler(path, her)
    seen_before = seen_after = seen_same = 0
    n_rel = n = 0
    for _ in range(60):
        b = s.sample(64)
        (r, e, t), (gr, ge, gt), rel = _traced(b, her)
        n += len(rel)
        n_rel += rel.sum()
        # the same episode of the same robot, always
        assert np.array_equal(gr[rel], r[rel]) and np.array_equal(ge[rel], e[rel])
        src_step = gt[rel] - 1  # the source row's step
        last = np.where((r[rel] == 1) & (e[rel] == 2), 3, EP_LEN - 1)  # robot 1 ep 2: running
        if strategy == "final":
            assert np.array_equal(src_step, last)
        elif strategy == "future":
            assert np.all(src_step >= t[rel]) and np.all(src_step <= last)
        else:
            assert np.all((src_step >= 0) & (src_step <= last))
        seen_before += int((src_step < t[rel]).sum())
        seen_after += int((src_step > t[rel]).sum())
        seen_same += int(((src_step == t[rel]) & (t[rel] < last)).sum())  # not just the end
        # observation and next observation carry the same goal; rewards and ends recomputed
        g_obs = b.observation.numpy()[:, her.desired]
        g_next = b.next_observation.numpy()[:, her.desired]
        np.testing.assert_array_equal(g_obs, g_next)
        ag = b.next_observation.numpy()[:, her.achieved]
        np.testing.assert_array_equal(b.reward.numpy(), task.compute_reward(ag, g_next))
        np.testing.assert_array_equal(b.discount.numpy(), np.float32(0.9) * np.ones(64))
    assert abs(n_rel / n - 0.8) < 0.03  # k = 4: 4 of 5 rows relabelled
    if strategy == "episode":
        assert seen_before > 0 and seen_after > 0 and seen_same > 0
    if strategy == "future":  # t itself included (its own achieved goal), as SB3 draws it
        assert seen_after > 0 and seen_same > 0 and seen_before == 0


def test_relabelled_successes_terminate_and_the_mirror_keeps_what_happened(store):
    path, cols = store
    task = _task(terminate=True)
    her = relabeler_for_task(task, "future", k=4)
    s = _sampler(path, her)
    before = {k: v.copy() for k, v in s.mirror.cols.items()}
    b = s.sample(512)
    ag = b.next_observation.numpy()[:, her.achieved]
    g = b.next_observation.numpy()[:, her.desired]
    hit = task.compute_success(ag, g)
    assert hit.any()  # a future goal at t' = t is reached by construction
    np.testing.assert_array_equal(b.terminated.numpy(), hit.astype(np.float32))
    assert not np.any((b.terminated.numpy() > 0) & (b.truncated.numpy() > 0))
    np.testing.assert_array_equal(b.reward.numpy()[hit], 0.0)
    np.testing.assert_allclose(b.discount.numpy(), 0.9 * (1 - hit), rtol=1e-6)
    for k, v in s.mirror.cols.items():
        np.testing.assert_array_equal(v, before[k])  # relabelled copies, never the mirror


def test_same_seed_same_batches_and_demo_rows_relabelled_too(store):
    path, _ = store
    her = relabeler_for_task(_task(), "future", k=4)
    a, b = _sampler(path, her, seed=3), _sampler(path, her, seed=3)
    for _ in range(5):
        x, y = a.sample(32), b.sample(32)
        for u, v in zip(x, y):
            assert np.array_equal(u.numpy(), v.numpy())
    (r, e, t), _src, rel = _traced(_sampler(path, her).sample(1024), her)
    assert rel[e == 0].any()  # episode 0 is the demo episode


def test_her_refuses_nstep_prioritized_and_bad_settings(store):
    path, _ = store
    her = relabeler_for_task(_task(), "future", k=4)
    with pytest.raises(ValueError, match="n_step 3"):
        ReplaySampler(ReplayMirror(path, 100), n_step=3, her=her)
    with pytest.raises(ValueError, match="prioritized replay"):
        ReplaySampler(ReplayMirror(path, 100), prioritized=True, her=her)
    with pytest.raises(ValueError, match="strategy 'later'"):
        HindsightRelabeler("later", 4, slice(0, 3), slice(3, 6), None, None)
    with pytest.raises(ValueError, match="her_k"):
        HindsightRelabeler("final", 0, slice(0, 3), slice(3, 6), None, None)
    with pytest.raises(ValueError, match="same length"):
        HindsightRelabeler("final", 1, slice(0, 3), slice(3, 5), None, None)
    from robot_rl.config import ConfigError, load_config

    with pytest.raises((ValueError, ConfigError), match="agent.her=future needs agent.n_step 1"):
        load_config(None, ["agent.her=future", "agent.n_step=3"])
    with pytest.raises((ValueError, ConfigError), match="needs replay.prioritized false"):
        load_config(None, ["agent.her=final", "replay.prioritized=true"])


def test_a_resumed_sampler_must_use_the_same_relabelling(store, tmp_path):
    path, _ = store
    her = relabeler_for_task(_task(), "future", k=4)
    a = _sampler(path, her)
    a.sample(16)
    a.save(tmp_path / "s.safetensors")
    b = ReplaySampler(ReplayMirror(path, 1000), gamma=0.9, her=None)
    with pytest.raises(ValueError, match="her was \\['future', 4\\]"):
        b.load(tmp_path / "s.safetensors")
    c = ReplaySampler(ReplayMirror(path, 1000), gamma=0.9, her=her)
    c.load(tmp_path / "s.safetensors")
    assert np.array_equal(c.sample(16).observation.numpy(), a.sample(16).observation.numpy())
