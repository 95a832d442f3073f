"""The behaviour policy (robot_rl.agents.acting): the actor node samples a Gaussian policy as the
torch GaussianActor does, and the trainer and the actor core choose their actions the same way."""
import json

import numpy as np
import pytest
import torch

from robot_rl.actor import ActorCore, NumpyPolicy
from robot_rl.agents.acting import BehaviourPolicy, LearnerPolicy
from robot_rl.agents.checkpoint import _safetensors_metadata, export_policy, load_policy
from robot_rl.agents.config import learner_config
from robot_rl.agents.learning import Learner
from robot_rl.config import AgentConfig, config_from_dict

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

LOW = np.array([-2.0, -1.0, 0.0], np.float32)
HIGH = np.array([2.0, 1.0, 0.5], np.float32)


def gaussian_learner(algo="sac", seed=3):
    lrn = Learner(learner_config(AgentConfig(algo=algo, hidden=(16, 16))), 5, 3,
                  action_low=LOW, action_high=HIGH, seed=seed)
    g = torch.Generator().manual_seed(0)
    lrn.normalizer.update(torch.randn(64, 5, generator=g) * 3 + 1)  # a non-trivial normaliser
    return lrn


@pytest.mark.parametrize("algo", ["sac", "svg0"])
def test_numpy_sample_is_the_torch_gaussian_actors_sample_for_the_same_draw(algo):
    lrn = gaussian_learner(algo)
    pol = NumpyPolicy(load_policy(export_policy(lrn, version=1)))
    assert pol.stochastic and pol.gaussian
    obs = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32) * 2
    with torch.no_grad():
        a_t, _ = lrn.actor.sample_normalized(lrn.normalizer(torch.as_tensor(obs)),
                                             torch.Generator().manual_seed(9))
    xi = torch.randn((8, 3), generator=torch.Generator().manual_seed(9)).numpy()  # its eps
    a_np = np.stack([pol.sample(o, x) for o, x in zip(obs, xi)])
    np.testing.assert_allclose(a_np, a_t.numpy(), rtol=1e-5, atol=2e-6)
    # the trainer's view of the learner samples the same action for the same draw
    lp = LearnerPolicy(lrn)
    np.testing.assert_allclose(np.stack([lp.sample(o, x) for o, x in zip(obs, xi)]), a_np,
                               rtol=1e-5, atol=2e-6)
    # xi = 0 is the deterministic (evaluation) action
    np.testing.assert_allclose(pol.sample(obs[0], np.zeros(3)), pol(obs[0]), atol=1e-7)
    with pytest.raises(ValueError, match="xi"):
        pol.sample(obs[0], np.zeros(4))


def test_sampled_actions_follow_the_policys_gaussian():
    """atanh((a - bias) / scale) of many behaviour actions at one state: mean mu(s), std
    sigma(s) of the torch actor (20000 draws: 4 standard errors)."""
    lrn = gaussian_learner()
    pol = NumpyPolicy(load_policy(export_policy(lrn, version=1)))
    s = np.array([0.5, -1.0, 2.0, 0.0, 1.5], np.float32)
    with torch.no_grad():
        mu, log_std = lrn.actor.dist_params(lrn.normalizer(torch.as_tensor(s[None])))
    mu, sigma = mu[0].double().numpy(), log_std[0].exp().double().numpy()
    np.testing.assert_allclose(pol.dist(s)[0], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pol.dist(s)[1], sigma, rtol=1e-5)
    bp = BehaviourPolicy(AgentConfig(algo="sac"), LOW, HIGH, seed=4, warmup=0)
    n = 20000
    a = np.stack([bp(s, pol, t) for t in range(n)]).astype(np.float64)
    u = np.arctanh(np.clip((a - (HIGH + LOW) / 2) / ((HIGH - LOW) / 2), -1 + 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(u.mean(0), mu, atol=4 * sigma.max() / np.sqrt(n))
    np.testing.assert_allclose(u.std(0), sigma, rtol=0.03)


def test_correlated_samples_are_an_ar1_process_of_the_policys_gaussian():
    """agent.sample_correlation = rho: xi_t = rho xi_(t-1) + sqrt(1 - rho^2) n_t, restarted at
    every episode; each action is still a sample of pi(.|s) (mean mu, std sigma), consecutive
    ones correlated rho; a checkpointed state continues the same draws."""
    lrn = gaussian_learner()
    pol = NumpyPolicy(load_policy(export_policy(lrn, version=1)))
    s = np.array([0.5, -1.0, 2.0, 0.0, 1.5], np.float32)
    mu, sigma = (x.astype(np.float64) for x in pol.dist(s))
    rho = 0.9
    bp = BehaviourPolicy(AgentConfig(algo="sac", sample_correlation=rho), LOW, HIGH, seed=4,
                         warmup=0)
    # written out: the first draw of an episode is the generator's normal, then the AR(1) update
    n = np.random.Generator(np.random.PCG64(5)).standard_normal((3, 3))  # seed + 1
    xi1 = n[0]
    xi2 = rho * xi1 + np.sqrt(1 - rho ** 2) * n[1]
    np.testing.assert_allclose(bp(s, pol, 0), pol.sample(s, xi1.astype(np.float32)), atol=1e-7)
    np.testing.assert_allclose(bp(s, pol, 1), pol.sample(s, xi2.astype(np.float32)), atol=1e-7)
    bp.reset()  # a new episode: no memory of the last draw
    np.testing.assert_allclose(bp(s, pol, 2), pol.sample(s, n[2].astype(np.float32)), atol=1e-7)
    # mid-episode checkpoint: the same continuation
    st = bp.state()
    assert st["xi"] is not None
    first = [bp(s, pol, 3 + i) for i in range(4)]
    bp.set_state(json.loads(json.dumps(st)))
    np.testing.assert_array_equal([bp(s, pol, 3 + i) for i in range(4)], first)
    # the marginal is the policy's Gaussian, the lag-1 correlation rho
    bp.reset()
    k = 40000
    a = np.stack([bp(s, pol, t) for t in range(k)]).astype(np.float64)
    u = np.arctanh(np.clip((a - (HIGH + LOW) / 2) / ((HIGH - LOW) / 2), -1 + 1e-7, 1 - 1e-7))
    z = (u - mu) / sigma
    ess = k * (1 - rho) / (1 + rho)  # effective sample size of an AR(1) mean
    np.testing.assert_allclose(z.mean(0), 0.0, atol=4 / np.sqrt(ess))
    np.testing.assert_allclose(z.std(0), 1.0, rtol=0.05)
    lag1 = [np.corrcoef(z[:-1, j], z[1:, j])[0, 1] for j in range(3)]
    np.testing.assert_allclose(lag1, rho, atol=0.02)
    # independent draws (the default) are not correlated
    bp0 = BehaviourPolicy(AgentConfig(algo="sac"), LOW, HIGH, seed=4, warmup=0)
    a0 = np.stack([bp0(s, pol, t) for t in range(4000)]).astype(np.float64)
    assert abs(np.corrcoef(a0[:-1, 0], a0[1:, 0])[0, 1]) < 0.1
    with pytest.raises(ValueError, match="sample_correlation"):
        AgentConfig(algo="sac", sample_correlation=1.0)


def test_warm_up_then_noise_or_sample_and_state_round_trip():
    agent = AgentConfig(algo="td3", exploration_noise=0.2)
    lo, hi = -np.ones(3, np.float32), np.ones(3, np.float32)
    bp = BehaviourPolicy(agent, lo, hi, seed=7, warmup=3)
    det = NumpyPolicy(load_policy(export_policy(Learner(learner_config(agent), 5, 3, seed=0))))
    s = np.zeros(5, np.float32)
    rng = np.random.Generator(np.random.PCG64(8))   # seed + 1: warm-up draws
    noise = np.random.Generator(np.random.PCG64(7))  # seed: the Gaussian noise
    for t in range(3):  # warming up, policy or not: uniform in the bounds
        np.testing.assert_array_equal(bp(s, det, t), rng.uniform(lo, hi).astype(np.float32))
    expect = np.clip(det(s) + (0.2 * noise.standard_normal(3)).astype(np.float32), lo, hi)
    np.testing.assert_array_equal(bp(s, det, 3), expect)
    np.testing.assert_array_equal(bp(s, None, 4), rng.uniform(lo, hi).astype(np.float32))
    st = bp.state()
    assert set(st) == {"noise", "rng", "xi"} and st["xi"] is None
    first = [bp(s, det, 10 + i) for i in range(3)]
    bp.set_state(st)
    np.testing.assert_array_equal([bp(s, det, 10 + i) for i in range(3)], first)
    with pytest.raises(ValueError, match="warmup_steps"):
        BehaviourPolicy(agent, lo, hi, seed=0, warmup=-1)
    with pytest.raises(ValueError, match="action bounds"):
        BehaviourPolicy(agent, hi, lo, seed=0, warmup=0)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_trainer_and_actor_core_choose_actions_the_same_way(algo):
    """The trainer (BehaviourPolicy over its learner) and an actor node's core (the same
    BehaviourPolicy over the exported policy in numpy), seeded alike, act alike: uniform until a
    policy, then pi(s) + noise (td3) or a sample of pi(.|s) (sac), to float32 rounding."""
    cfg = config_from_dict({"task": {"action_mode": "ee_velocity"},
                            "agent": {"algo": algo, "hidden": [16, 16]}})
    core = ActorCore(cfg, robot_id=0, session=77, seed=21)
    lrn = Learner(learner_config(cfg.agent, cfg.replay), 20, 3, action_low=core.low,
                  action_high=core.high, seed=0, observation=core.task.obs_spec)
    trainer = BehaviourPolicy(cfg.agent, core.low, core.high, seed=21, warmup=4)
    policy = LearnerPolicy(lrn)
    obs = np.random.default_rng(2).uniform(-1, 1, (12, 20)).astype(np.float32)
    # warm-up: the trainer's first warmup_steps, the actor's steps before its first policy
    for t in range(4):
        np.testing.assert_array_equal(trainer(obs[t], policy, t), core.act(obs[t]))
        core.env_steps += 1
    blob = export_policy(lrn, version=1)
    core.load_policy(blob, 1, _safetensors_metadata(blob)["config_hash"])
    assert core.policy.stochastic is (algo == "sac")
    for t in range(4, 12):
        a_trainer, a_actor = trainer(obs[t], policy, t), core.act(obs[t])
        np.testing.assert_allclose(a_actor, a_trainer, rtol=1e-5, atol=2e-6)
        assert np.all(a_actor >= core.low) and np.all(a_actor <= core.high)
        core.env_steps += 1
    if algo == "sac":  # no extra exploration noise on a Gaussian policy's sample
        rng = np.random.Generator(np.random.PCG64(22))
        for t in range(12):
            rng.uniform(core.low, core.high) if t < 4 else rng.standard_normal(3)
        xi = rng.standard_normal(3).astype(np.float32)
        np.testing.assert_array_equal(core.act(obs[0]), np.clip(core.policy.sample(obs[0], xi),
                                                                core.low, core.high))
