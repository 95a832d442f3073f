"""Goal-conditioned tasks (issue 17 item 3): achieved / desired goals, their place in the flat
observation, and vectorised rewards that equal the per-snapshot ones exactly."""
import numpy as np
import pytest

from robot_rl.config import Config
from robot_rl.tasks import TaskSnapshot, make_task, push_distance, reach_distance

pytestmark = pytest.mark.unit


def _task(name, reward="dense", **kw):
    c = Config()
    return make_task(c.task.model_copy(update={"name": name, "reward": reward, **kw}), c.robot)


def _random_snapshot(task, rng, dtype=np.float64):
    """A snapshot near the task's goal: about half of them within the 5 cm threshold."""
    goal = task.sample_goal(rng)
    near = goal + rng.normal(scale=0.04, size=3)
    obj = None
    if task.has_object:
        quat = rng.normal(size=4)
        obj = np.concatenate([near, quat / np.linalg.norm(quat)])
        ee = rng.uniform(-0.8, 0.8, 3)
    else:
        ee = near
    cast = (lambda a: None if a is None else np.asarray(a, dtype=dtype))
    return TaskSnapshot(q=cast(rng.uniform(-1, 1, 7)), dq=cast(rng.uniform(-1, 1, 7)),
                        ee_pos=cast(ee), goal=cast(goal), object_pose=cast(obj))


def _snap(ee=(0.0, 0.0, 0.0), goal=(0.0, 0.0, 0.0), obj=None):
    z = np.zeros(7)
    return TaskSnapshot(q=z, dq=z, ee_pos=np.asarray(ee, float), goal=np.asarray(goal, float),
                        object_pose=None if obj is None else np.asarray(obj, float))


# -- written-out values ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "task, reward, achieved, desired, expected_reward, success",
    [
        ("reach", "dense", [0.3, 0.0, 0.4], [0.6, 0.4, 0.4], -0.5, False),   # 3-4-5
        ("reach", "sparse", [0.3, 0.0, 0.4], [0.6, 0.4, 0.4], -1.0, False),
        ("reach", "sparse", [0.0, 0.0, 0.0], [0.0, 0.0, 0.049], 0.0, True),
        ("reach", "sparse", [0.0, 0.0, 0.0], [0.0, 0.0, 0.05], -1.0, False),  # strict <
        # push reads x and y only: 3 cm apart horizontally, 27.5 cm apart in z
        ("push", "dense", [0.5, 0.1, 0.025], [0.5, 0.13, 0.3], -0.03, True),
        ("push", "sparse", [0.5, 0.1, 0.025], [0.5, 0.13, 0.3], 0.0, True),
        ("push", "dense", [0.5, 0.0, 0.025], [0.53, 0.04, 0.025], -0.05, False),  # 3-4-5 cm
        ("push", "sparse", [0.5, 0.0, 0.025], [0.53, 0.04, 0.025], -1.0, False),
    ],
)
def test_compute_reward_written_out(task, reward, achieved, desired, expected_reward, success):
    t = _task(task, reward)
    r = t.compute_reward(np.array(achieved), np.array(desired))
    assert r.shape == () and r.dtype == np.float64
    assert r == pytest.approx(expected_reward, abs=1e-12)
    assert t.compute_success(achieved, desired) == success
    # the same numbers through a snapshot
    obj = None if task == "reach" else [*achieved, 0, 0, 0, 1]
    s = _snap(ee=achieved if task == "reach" else (0.4, 0.0, 0.3), goal=desired, obj=obj)
    assert t.reward(s) == r and t.is_success(s) == success


def test_goal_slices_and_names():
    reach, push = _task("reach"), _task("push")
    assert reach.goal_dim == push.goal_dim == 3
    assert reach.goal_slices == {"achieved_goal": slice(14, 17), "desired_goal": slice(17, 20)}
    assert push.goal_slices == {"achieved_goal": slice(17, 20), "desired_goal": slice(24, 27)}
    names = reach.observation_spec.names
    assert names[14:17] == ("ee_x", "ee_y", "ee_z")
    assert names[17:20] == ("goal_x", "goal_y", "goal_z")
    names = push.observation_spec.names
    assert names[17:20] == ("obj_x", "obj_y", "obj_z")
    assert names[24:27] == ("goal_x", "goal_y", "goal_z")
    # a copy: callers cannot move the task's slices
    reach.goal_slices["achieved_goal"] = slice(0, 3)
    assert reach.goal_slices["achieved_goal"] == slice(14, 17)


# -- exact agreement with the per-snapshot functions -------------------------------------------

@pytest.mark.parametrize("name", ["reach", "push"])
@pytest.mark.parametrize("reward", ["dense", "sparse"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compute_reward_equals_reward_for_random_snapshots(name, reward, dtype):
    t = _task(name, reward)
    rng = np.random.default_rng(17)
    snaps = [_random_snapshot(t, rng, dtype) for _ in range(400)]
    ag = np.stack([t.achieved_goal(s) for s in snaps])
    dg = np.stack([t.desired_goal(s) for s in snaps])
    assert ag.dtype == dg.dtype == dtype and ag.shape == dg.shape == (400, 3)
    expected = np.array([t.reward(s) for s in snaps])
    successes = np.array([t.is_success(s) for s in snaps])
    assert 50 < successes.sum() < 350  # both outcomes are exercised
    for s, a, d, r, ok in zip(snaps, ag, dg, expected, successes):
        single = t.compute_reward(t.achieved_goal(s), t.desired_goal(s))
        assert single.shape == () and float(single) == r, (single, r)
        assert bool(t.compute_success(a, d)) == ok
        # the distance itself is today's, unchanged
        today = (reach_distance(s.ee_pos, s.goal) if name == "reach"
                 else push_distance(s.object_pose[:3], s.goal))
        assert t.distance(s) == float(today)
    batch = t.compute_reward(ag, dg, info={"ignored": True})
    assert batch.shape == (400,)
    np.testing.assert_array_equal(batch, expected)
    np.testing.assert_array_equal(t.compute_success(ag, dg), successes)
    # any leading shape: (20, 20, 3) in, (20, 20) out
    np.testing.assert_array_equal(t.compute_reward(ag.reshape(20, 20, 3), dg.reshape(20, 20, 3)),
                                  expected.reshape(20, 20))


def test_batch_shapes_broadcast_for_relabelling():
    """Every achieved goal against every desired goal: (N, 1, 3) x (1, M, 3) -> (N, M)."""
    t = _task("reach", "sparse")
    ag = np.array([[0.5, 0.0, 0.3], [0.5, 0.1, 0.3]])
    dg = np.array([[0.5, 0.0, 0.3], [0.5, 0.1, 0.3], [0.5, 0.04, 0.3]])
    r = t.compute_reward(ag[:, None, :], dg[None, :, :])
    np.testing.assert_array_equal(r, [[0.0, -1.0, 0.0], [-1.0, 0.0, -1.0]])
    # one desired goal for a batch of achieved ones
    np.testing.assert_array_equal(t.compute_reward(ag, dg[0]), [0.0, -1.0])


def test_observation_holds_the_goals_at_goal_slices():
    rng = np.random.default_rng(3)
    for name in ("reach", "push"):
        t = _task(name)
        sl = t.goal_slices
        for _ in range(100):
            s = _random_snapshot(t, rng)
            obs = t.observation(s)
            np.testing.assert_array_equal(obs[sl["achieved_goal"]],
                                          t.achieved_goal(s).astype(np.float32))
            np.testing.assert_array_equal(obs[sl["desired_goal"]],
                                          t.desired_goal(s).astype(np.float32))


@pytest.mark.parametrize("name", ["reach", "push"])
def test_relabelling_stored_float32_rows(name):
    """What a HER sampler does: goals read from float32 observation rows give the stored dense
    reward up to float32 rounding, and the new goal's reward where the goal is swapped."""
    t = _task(name, "dense")
    rng = np.random.default_rng(5)
    snaps = [_random_snapshot(t, rng) for _ in range(200)]
    obs = np.stack([t.observation(s) for s in snaps])  # as the replay store holds them
    stored = np.array([t.reward(s) for s in snaps], dtype=np.float32)
    sl = t.goal_slices
    r = t.compute_reward(obs[:, sl["achieved_goal"]], obs[:, sl["desired_goal"]])
    assert r.dtype == np.float32
    np.testing.assert_allclose(r, stored, rtol=0, atol=1e-6)
    # relabel: the achieved goal as the desired one -> distance 0, the best reward
    np.testing.assert_array_equal(
        t.compute_reward(obs[:, sl["achieved_goal"]], obs[:, sl["achieved_goal"]]), 0.0)


def test_compute_terminated_follows_terminate_on_success():
    ag = np.array([[0.5, 0.0, 0.3], [0.5, 0.2, 0.3]])
    dg = np.array([0.5, 0.01, 0.3])
    np.testing.assert_array_equal(_task("reach").compute_terminated(ag, dg), [True, False])
    np.testing.assert_array_equal(
        _task("reach", terminate_on_success=False).compute_terminated(ag, dg), [False, False])


def test_inputs_are_not_modified_and_lists_work():
    t = _task("push", "sparse")
    ag = np.array([0.5, 0.0, 0.025])
    before = ag.copy()
    s = _snap(goal=(0.5, 0.0, 0.025), obj=(0.5, 0.0, 0.025, 0, 0, 0, 1))
    t.achieved_goal(s)[:] = 9.0  # a copy, not the snapshot's array
    assert t.distance(s) == 0.0
    assert t.compute_reward(ag, [0.5, 0.0, 0.025]) == 0.0
    assert t.compute_reward([[0, 0, 0]], [[1, 0, 0]]).tolist() == [-1.0]  # ints -> float64
    np.testing.assert_array_equal(ag, before)


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "achieved, desired, message",
    [
        (np.zeros(2), np.zeros(3),
         r"reach: achieved_goal must have shape \(\.\.\., goal_dim=3\), got shape \(2,\)"),
        (np.zeros((4, 3)), np.zeros((4, 7)),
         r"reach: desired_goal must have shape \(\.\.\., goal_dim=3\), got shape \(4, 7\)"),
        (np.float64(0.3), np.zeros(3),
         r"reach: achieved_goal must have shape \(\.\.\., goal_dim=3\), got shape \(\)"),
        (np.zeros((4, 3)), np.zeros((5, 3)),
         r"reach: the batch shapes of achieved_goal \(4, 3\) and desired_goal \(5, 3\) do not "
         r"broadcast together"),
        (np.array([[0, 0, 0], [0, np.nan, 0]]), np.zeros(3),
         r"reach: achieved_goal\[1, 1\] is not finite: nan"),
        (np.zeros(3), np.array([0, 0, np.inf], np.float32),
         r"reach: desired_goal\[2\] is not finite: inf"),
        ("0.3 0 0.4", np.zeros(3),
         r"reach: achieved_goal must be real numbers of shape \(\.\.\., goal_dim=3\), got str"),
        (np.zeros(3, complex), np.zeros(3), r"reach: achieved_goal must be real numbers"),
        ([[0, 0, 0], [0, 0]], np.zeros(3), r"reach: achieved_goal must be real numbers"),
    ],
)
def test_bad_goals_raise_clear_errors(achieved, desired, message):
    t = _task("reach", "sparse")
    for f in (t.compute_reward, t.compute_success, t.compute_terminated, t.compute_distance):
        with pytest.raises(ValueError, match=message):
            f(achieved, desired)


def test_push_achieved_goal_needs_the_object():
    with pytest.raises(ValueError, match="push: object_pose is required"):
        _task("push").achieved_goal(_snap())
