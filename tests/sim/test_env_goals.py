"""The env's goal-conditioned face (issue 17 item 3) on real PyBullet: ``info`` carries the
achieved and desired goals, and ``compute_reward`` / ``compute_terminated`` reproduce every
step's reward and termination from them."""
import gymnasium as gym
import numpy as np
import pytest

import robot_rl.sim  # noqa: F401  (registers the ids)
from robot_rl.config import load_config
from robot_rl.sim.env import PandaEnv
from robot_rl.sim.scripted import ScriptedPusher, ScriptedReacher

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("task", ["reach", "push"])
@pytest.mark.parametrize("reward", ["dense", "sparse"])
def test_step_reward_is_compute_reward_of_info_goals(task, reward):
    """A scripted rollout (it succeeds, so sparse rewards of both values occur) followed by
    random actions: at every step, reward and terminated come back from info's goals, and the
    observation holds those goals at ``task.goal_slices``."""
    steps = 40 if task == "reach" else 100
    cfg = load_config(None, [f"task.name={task}", f"task.reward={reward}",
                             "task.action_mode=ee_velocity", f"task.max_steps={steps}"])
    env = gym.make("PandaReach-v0" if task == "reach" else "PandaPush-v0", config=cfg)
    u = env.unwrapped
    sl = u.task.goal_slices
    expert = (ScriptedReacher(u.mapper) if task == "reach"
              else ScriptedPusher(u.mapper, object_size=cfg.task.object_size))
    rng = np.random.default_rng(0)
    rewards = []
    for seed, policy in ((1, "scripted"), (2, "random")):
        obs, info = env.reset(seed=seed)
        np.testing.assert_array_equal(info["desired_goal"], u.goal)
        done = False
        while not done:
            for key in ("achieved_goal", "desired_goal"):
                assert info[key].shape == (u.task.goal_dim,) and info[key].dtype == np.float64
                np.testing.assert_array_equal(obs[sl[key]], info[key].astype(np.float32))
            action = (expert(u.snapshot()) if policy == "scripted"
                      else rng.uniform(-1, 1, 3).astype(np.float32))
            obs, r, term, trunc, info = env.step(action)
            recomputed = u.compute_reward(info["achieved_goal"], info["desired_goal"], info)
            assert recomputed.shape == () and float(recomputed) == r, (recomputed, r)
            ag, dg = info["achieved_goal"], info["desired_goal"]
            assert bool(u.compute_terminated(ag, dg, info)) == term
            assert bool(u.task.compute_success(ag, dg)) == info["is_success"]
            rewards.append(r)
            done = term or trunc
        if policy == "scripted":
            assert term and info["is_success"]
    if reward == "sparse":
        assert set(rewards) == {0.0, -1.0}
    env.close()


def test_env_compute_reward_is_vectorised_and_checks_its_input():
    env = PandaEnv(task="push", reward="sparse")
    _, info = env.reset(seed=0)
    ag = np.stack([info["achieved_goal"], info["desired_goal"]])
    np.testing.assert_array_equal(env.compute_reward(ag, info["desired_goal"], None), [-1.0, 0.0])
    with pytest.raises(ValueError,
                       match=r"push: desired_goal must have shape \(\.\.\., goal_dim=3\)"):
        env.compute_reward(ag, info["desired_goal"][:2], None)
    env.close()
