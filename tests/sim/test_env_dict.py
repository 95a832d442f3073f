"""The envs' Dict observations (issue 17): ``observation_layout="fields"`` (one Box per
observation field) and ``"goal"`` (gymnasium-robotics' observation / achieved_goal /
desired_goal), on real PyBullet: check_env, the same numbers as the flat layout, rewards
recomputed from the goals, and Stable-Baselines3's HER replay buffer taking the goal env."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robot_rl.sim  # noqa: F401  (registers the ids)
from robot_rl.sim.env import PandaEnv

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("task", ["reach", "push"])
@pytest.mark.parametrize("layout", ["fields", "goal"])
def test_check_env_passes_with_dict_observations(task, layout):
    env = PandaEnv(task=task, action_mode="ee_velocity", observation_layout=layout)
    check_env(env)
    obs, _ = env.reset(seed=1)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.parametrize("task", ["reach", "push"])
def test_dict_layouts_hold_the_flat_observation_and_the_goals(task):
    envs = {lay: PandaEnv(task=task, action_mode="ee_velocity", observation_layout=lay)
            for lay in ("flat", "fields", "goal")}
    spec = envs["flat"].task.obs_spec
    obs = {lay: e.reset(seed=4)[0] for lay, e in envs.items()}
    rng = np.random.default_rng(0)
    assert list(obs["fields"]) == list(spec.keys)
    n_rest = sum(f.size for f in spec.fields if f.role not in ("achieved_goal", "desired_goal"))
    assert obs["goal"]["observation"].shape == (n_rest,)  # reach 17, push 21
    for _ in range(25):
        np.testing.assert_array_equal(spec.join(obs["fields"]), obs["flat"])
        sl = envs["flat"].task.goal_slices
        np.testing.assert_array_equal(obs["goal"]["achieved_goal"], obs["flat"][sl["achieved_goal"]])
        np.testing.assert_array_equal(obs["goal"]["desired_goal"], obs["flat"][sl["desired_goal"]])
        a = rng.uniform(-1, 1, 3).astype(np.float32)
        out = {lay: e.step(a) for lay, e in envs.items()}
        obs = {lay: o[0] for lay, o in out.items()}
        reward = out["goal"][1]
        assert out["flat"][1] == reward
        # the reward from the observation's goals (float32): within float32 rounding
        g = obs["goal"]
        again = envs["goal"].compute_reward(g["achieved_goal"], g["desired_goal"], {})
        assert abs(float(again) - reward) < 1e-5
    for e in envs.values():
        e.close()


def test_a_bad_layout_is_refused_naming_it():
    with pytest.raises(ValueError, match="observation_layout: expected 'flat', 'fields' or "
                                         "'goal', got 'nested'"):
        PandaEnv(observation_layout="nested")


def test_stable_baselines3_her_takes_the_goal_env():
    """SB3 TD3 with its HerReplayBuffer (future, 4 relabels) on sparse reach, a few hundred
    steps: the goal env's spaces, info and vectorised compute_reward are what it expects
    (issue 18's peers run this way)."""
    import torch
    from stable_baselines3 import TD3, HerReplayBuffer

    torch.set_num_threads(1)
    env = gym.make("PandaReach-v0", action_mode="ee_velocity", reward="sparse", max_steps=25,
                   observation_layout="goal")
    model = TD3("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                learning_starts=100, batch_size=32, policy_kwargs={"net_arch": [16, 16]},
                seed=0, device="cpu")
    model.learn(300)
    buf = model.replay_buffer
    assert buf.size() * buf.n_envs >= 250
    batch = buf.sample(64)
    r = batch.rewards.numpy().ravel()
    assert set(np.unique(r)) <= {0.0, -1.0}
    # relabelled rows reach their (new) goal far more often than the episodes' own goals did
    assert (r == 0.0).mean() > 0.05
    env.close()
