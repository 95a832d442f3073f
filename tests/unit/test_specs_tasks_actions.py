"""Specs, task reward/success functions and the joint-mode action map, with written-out values."""
import numpy as np
import pytest

from robot_rl.actions import ActionMapper, dls_joint_velocities
from robot_rl.config import Config, RobotProfile, TaskConfig
from robot_rl.specs import BoxSpec
from robot_rl.tasks import TaskSnapshot, make_task, push_distance, reach_distance

pytestmark = pytest.mark.unit


def _snap(ee, goal, obj=None):
    z = np.zeros(7)
    return TaskSnapshot(q=z, dq=z, ee_pos=np.asarray(ee, float), goal=np.asarray(goal, float),
                        object_pose=None if obj is None else np.asarray(obj, float))


def test_boxspec_validates_without_clipping():
    s = BoxSpec("action", ("a", "b"), [-1, -1], [1, 1])
    np.testing.assert_array_equal(s.validate([0.5, -1.0]), np.array([0.5, -1.0], np.float32))
    with pytest.raises(ValueError, match=r"action: expected shape \(2,\) \(a, b\), got shape \(3,\)"):
        s.validate([0, 0, 0])
    with pytest.raises(ValueError, match=r"action\[1\] \(b\) is not finite: nan"):
        s.validate([0, np.nan])
    with pytest.raises(ValueError, match=r"action\[0\] \(a\) = 1.5 is outside its bounds"):
        s.validate([1.5, 0])
    with pytest.raises(ValueError, match="expected 2 numbers"):
        s.validate("hello")
    assert BoxSpec.from_dict(s.to_dict()) == s
    inf = BoxSpec("obs", ("x",), [-np.inf], [np.inf])
    assert BoxSpec.from_dict(inf.to_dict()) == inf


@pytest.mark.parametrize(
    "reward, ee, goal, expected_reward, success",
    [
        ("dense", [0.3, 0.0, 0.4], [0.3, 0.0, 0.4], 0.0, True),
        ("dense", [0.3, 0.0, 0.4], [0.6, 0.4, 0.4], -0.5, False),  # 3-4-5 triangle
        ("dense", [0.0, 0.0, 0.0], [0.0, 0.0, 0.049], -0.049, True),
        ("sparse", [0.0, 0.0, 0.0], [0.0, 0.0, 0.049], 0.0, True),
        ("sparse", [0.0, 0.0, 0.0], [0.0, 0.0, 0.05], -1.0, False),  # threshold is strict
        ("sparse", [0.3, 0.0, 0.4], [0.6, 0.4, 0.4], -1.0, False),
    ],
)
def test_reach_reward_and_success(reward, ee, goal, expected_reward, success):
    cfg = Config()
    task = make_task(TaskConfig(reward=reward), cfg.robot)
    s = _snap(ee, goal)
    assert task.reward(s) == pytest.approx(expected_reward, abs=1e-12)
    assert task.is_success(s) is success


def test_push_distance_is_horizontal():
    assert push_distance([0.5, 0.1, 0.025], [0.5, 0.4, 0.9]) == pytest.approx(0.3)
    task = make_task(TaskConfig(name="push", reward="dense"), RobotProfile())
    s = _snap([0, 0, 0], [0.5, 0.0, 0.025], obj=[0.53, 0.04, 0.025, 0, 0, 0, 1])
    assert task.reward(s) == pytest.approx(-0.05)
    assert task.observation(s).shape == (27,)
    assert task.observation_spec.dim == 27
    with pytest.raises(ValueError, match="object_pose is required"):
        task.observation(_snap([0, 0, 0], [0, 0, 0]))
    line = task.describe()  # names what push draws: goal and cube (x, y), not reach's 3-d box
    c = task.config
    assert f"goal_xy={list(c.goal_box.low[:2])}..{list(c.goal_box.high[:2])}" in line
    assert f"cube_xy={list(c.object_box.low[:2])}..{list(c.object_box.high[:2])}" in line
    assert "goal_box=" not in line


def test_batched_distances():
    ee = np.array([[0, 0, 0], [1, 0, 0]], float)
    np.testing.assert_allclose(reach_distance(ee, [0, 0, 0]), [0.0, 1.0])


def test_reach_observation_layout_and_goal_sampling():
    profile = RobotProfile()
    task = make_task(TaskConfig(), profile)
    spec = task.observation_spec
    assert spec.dim == 20
    assert spec.names[:2] == ("q1", "q2") and spec.names[7] == "dq1"
    assert spec.names[14:] == ("ee_x", "ee_y", "ee_z", "goal_x", "goal_y", "goal_z")
    rng = np.random.default_rng(0)
    goals = np.array([task.sample_goal(rng) for _ in range(1000)])
    box = task.config.goal_box
    assert np.all(goals >= box.low) and np.all(goals <= box.high)
    assert np.all(goals.max(0) - goals.min(0) > 0.9 * (np.array(box.high) - np.array(box.low)))


def test_joint_action_map_written_out():
    m = ActionMapper(TaskConfig(joint_velocity_scale=0.5), RobotProfile())
    a = np.array([1, -1, 0.5, 0, 0, 0, -0.2], np.float32)
    dq = m.to_joint_velocities(a)
    np.testing.assert_allclose(dq, [1.0875, -1.0875, 0.54375, 0, 0, 0, -0.261], rtol=1e-6)
    np.testing.assert_allclose(m.to_action(dq), a, rtol=1e-6)
    with pytest.raises(ValueError, match=r"action: expected shape \(7,\)"):
        m.to_joint_velocities(np.zeros(6))
    with pytest.raises(ValueError, match=r"action\[2\] \(dq3\) is not finite"):
        m.to_joint_velocities([0, 0, np.nan, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"action\[0\] \(dq1\) = 2 is outside"):
        m.to_joint_velocities([2, 0, 0, 0, 0, 0, 0])


def test_dls_inverts_a_well_conditioned_jacobian():
    jac = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    v = np.array([0.1, 0.2])
    dq = dls_joint_velocities(jac, v, 1e-6)
    np.testing.assert_allclose(jac @ dq, v, atol=1e-9)
    np.testing.assert_allclose(dq, [0.1, 0.1, 0.0], atol=1e-9)
    # damping shrinks the step: (J J^T + l^2 I)^-1 with l = 1 halves the x component
    np.testing.assert_allclose(dls_joint_velocities(jac, v, 1.0)[0], 0.05)
