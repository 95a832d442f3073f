"""The gymnasium envs on real PyBullet: API conformance, determinism, episode ends, bad input."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robot_rl.sim  # noqa: F401  (registers the ids)
from robot_rl.config import Config, load_config
from robot_rl.sim.env import PandaEnv
from robot_rl.sim.scripted import ScriptedPusher, ScriptedReacher

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("env_id", ["PandaReach-v0", "PandaPush-v0"])
@pytest.mark.parametrize("mode", ["joint", "ee_velocity"])
def test_check_env_passes(env_id, mode):
    env = gym.make(env_id, action_mode=mode)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == ((7,) if mode == "joint" else (3,))
    env.close()


def test_render_rgb_array():
    env = gym.make("PandaReach-v0", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8 and img.std() > 0
    env.close()


def _trajectory(seed, n=60):
    env = PandaEnv(task="push")
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [obs]
    for _ in range(n):
        obs, r, term, trunc, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
        out.append(np.append(obs, r))
        if term or trunc:
            out.append(env.reset()[0])
    env.close()
    return out


def test_deterministic_for_a_seed():
    a, b = _trajectory(7), _trajectory(7)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = _trajectory(8)
    assert not np.array_equal(a[0], c[0])


def test_time_limit_truncates_and_success_terminates():
    env = PandaEnv(max_steps=5)
    env.reset(seed=0)
    for i in range(5):
        _, _, term, trunc, info = env.step(np.zeros(7, np.float32))
    assert trunc and not term and not info["is_success"]
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.zeros(7, np.float32))
    env.close()

    env = PandaEnv(action_mode="ee_velocity", reward="sparse")
    reacher = ScriptedReacher(env.mapper)
    env.reset(seed=1)
    rewards = []
    for _ in range(50):
        _, r, term, trunc, info = env.step(reacher(env.snapshot()))
        rewards.append(r)
        if term or trunc:
            break
    assert term and not trunc and info["is_success"] and info["distance"] < 0.05
    assert rewards[-1] == 0.0 and set(rewards[:-1]) == {-1.0}
    env.close()


def test_bad_actions_raise_clear_errors():
    env = PandaEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: expected shape \(7,\)"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"action\[4\] \(dq5\) is not finite"):
        env.step(np.array([0, 0, 0, 0, np.nan, 0, 0], np.float32))
    with pytest.raises(ValueError, match=r"action\[0\] \(dq1\) = 7 is outside"):
        env.step(np.array([7, 0, 0, 0, 0, 0, 0], np.float32))
    # The rejected actions did not advance the episode.
    _, _, _, _, info = env.step(np.zeros(7, np.float32))
    env.close()


def test_joint_velocity_command_is_tracked():
    env = PandaEnv()
    env.reset(seed=0)
    a = np.array([0.2, 0, 0, 0, 0, 0, 0], np.float32)
    for _ in range(4):
        env.step(a)
    q, dq = env.world.joint_state(0)
    assert dq[0] == pytest.approx(0.2 * 0.5 * 2.175, rel=0.02)
    env.close()


@pytest.mark.parametrize("mode", ["ee_velocity", "joint"])
def test_scripted_p_controller_solves_reach(mode):
    """>= 95% of 100 seeded episodes: the task is solvable and the kinematics are right."""
    cfg = load_config(None, [f"task.action_mode={mode}"])
    env = PandaEnv(cfg)
    reacher = ScriptedReacher(env.mapper, profile=cfg.robot)
    wins = 0
    for seed in range(100):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(reacher(env.snapshot()))
            done = term or trunc
        wins += info["is_success"]
    env.close()
    assert wins >= 95, f"scripted reach success {wins}/100 in {mode} mode"


@pytest.mark.parametrize("mode", ["ee_velocity", "joint"])
def test_scripted_pusher_solves_push(mode):
    """>= 90% of 30 seeded push episodes within 100 steps (the push experiments' time limit):
    the cube is pushed by the hand (the hand never teleports it), and every phase is used."""
    cfg = load_config(None, ["task.name=push", f"task.action_mode={mode}", "task.max_steps=100"])
    env = PandaEnv(cfg)
    pusher = ScriptedPusher(env.mapper, object_size=cfg.task.object_size, profile=cfg.robot)
    wins, phases, moved = 0, set(), []
    for seed in range(30):
        env.reset(seed=seed)
        start = env.snapshot().object_pose[:2].copy()
        done = False
        while not done:
            s = env.snapshot()
            phases.add(pusher.phase(s)[0])
            _, _, term, trunc, info = env.step(pusher(s))
            done = term or trunc
        wins += info["is_success"]
        moved.append(float(np.linalg.norm(env.snapshot().object_pose[:2] - start)))
    env.close()
    assert wins >= 27, f"scripted push success {wins}/30 in {mode} mode"
    assert phases == {"push", "lift", "over", "down"}, phases
    assert np.median(moved) > 0.05  # the goals are not where the cubes start


def test_scripted_pusher_needs_an_object():
    cfg = load_config(None, ["task.action_mode=ee_velocity"])
    env = PandaEnv(cfg)  # reach: no object
    env.reset(seed=0)
    with pytest.raises(ValueError, match="no object pose"):
        ScriptedPusher(env.mapper, object_size=0.05, profile=cfg.robot)(env.snapshot())
    env.close()


def test_a_physics_spike_is_clipped_into_the_spec_and_counted():
    """A joint velocity past the observation spec (seen in a training run: dq6 = 5.37 rad/s
    against 5.22) comes back clipped into the spec, described in info and counted, so the
    replay store accepts the row and training goes on. The spike is injected into the world's
    joint-state reading; the rest is the real env."""
    env = PandaEnv(load_config(None))
    env.reset(seed=0)
    real = env.world.joint_state

    def spiky(i):
        q, dq = real(i)
        dq = dq.copy()
        dq[5] = 5.37
        return q, dq

    env.world.joint_state = spiky
    obs, _, _, _, info = env.step(np.zeros(7, np.float32))
    assert env.observation_space.contains(obs)
    assert obs[12] == pytest.approx(5.22)  # dq6 at its bound
    assert info["observation_clipped"] == "dq6 = 5.37 outside [-5.22, 5.22]"
    assert env.observation_clips == 1 and env.last_clip.startswith("episode step 1: dq6")
    env.world.joint_state = real
    _, _, _, _, info = env.step(np.zeros(7, np.float32))
    assert "observation_clipped" not in info and env.observation_clips == 1
    env.close()


def test_several_robots_in_one_world_are_independent():
    from robot_rl.sim.panda import PandaWorld

    cfg = Config()
    w = PandaWorld(cfg.sim, cfg.robot, num_robots=3)
    for i in range(3):
        w.reset_robot(i, np.array(cfg.robot.home))
    w.set_joint_velocities(1, np.array([0.5, 0, 0, 0, 0, 0, 0]))
    for _ in range(5):
        w.step()
    q0, _ = w.joint_state(0)
    q1, _ = w.joint_state(1)
    np.testing.assert_allclose(q0, cfg.robot.home, atol=1e-3)
    assert q1[0] > 0.1
    # Positions are reported in each robot's own base frame.
    np.testing.assert_allclose(w.ee_position(0), w.ee_position(2), atol=1e-6)
    with pytest.raises(ValueError, match="robot index 3 out of range"):
        w.joint_state(3)
    w.close()
