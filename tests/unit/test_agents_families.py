"""Algorithm families: SAC's temperature, RLPD's ensembles, CrossQ's joint pass, the registry,
and checkpoints written before the families existed -- expected values written out."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from test_agents_learning import make_batch  # tests/unit is on sys.path (pytest rootdir mode)

from robot_rl.agents.checkpoint import load_checkpoint, read_checkpoint
from robot_rl.agents.config import LearnerConfig, learner_config
from robot_rl.agents.crossq.learning import CrossQLearner, joint_pass
from robot_rl.agents.dpg.learning import DPGLearner
from robot_rl.agents.learning import Learner
from robot_rl.agents.losses import (
    reduce_ensemble,
    sac_actor_loss,
    soft_value,
    subset_min,
    temperature_loss,
)
from robot_rl.agents.networks import BatchedCritic, Critic
from robot_rl.agents.registry import ALGORITHMS, learner_class
from robot_rl.agents.sac.learning import SACLearner
from robot_rl.agents.svg.learning import SVG0Learner
from robot_rl.config import AgentConfig, ReplayConfig
from robot_rl.replay import ReplayMirror, ReplaySampler, ReplayWriter, Source
from robot_rl.replay.synthetic import make_specs, synthetic_rows

pytestmark = pytest.mark.unit
torch.set_num_threads(1)
T = torch.tensor
DATA = Path(__file__).resolve().parents[1] / "data" / "checkpoints_v1"


# --------------------------------------------------------------------------- losses


def test_temperature_loss_value_and_direction():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_prob = T([-1.0, -3.0])  # entropy estimate 2 nats
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-2.0)
    # -mean(log 0.5 * [-3, -5]) = -(log 0.5 * -4) = -4 log 2
    assert loss.item() == pytest.approx(-4 * math.log(2), abs=1e-6)
    (g,) = torch.autograd.grad(loss, log_alpha)
    # d/dlog_alpha = -mean(log pi + H) = 4 > 0: entropy above target -> alpha shrinks
    assert g.item() == pytest.approx(4.0)
    below = temperature_loss(log_alpha, T([3.0, 5.0]), target_entropy=-2.0)
    (g2,) = torch.autograd.grad(below, log_alpha)
    assert g2.item() == pytest.approx(-2.0)  # entropy -4 < -2: alpha grows


def test_temperature_loss_ignores_the_policy_gradient():
    lp = T([-1.0, 0.5], requires_grad=True)
    loss = temperature_loss(torch.tensor(0.3, requires_grad=True), lp, -1.0)
    assert torch.autograd.grad(loss, lp, allow_unused=True)[0] is None


def test_subset_min_and_ensemble_reductions():
    q = T([[1.0, 5.0], [3.0, 2.0], [0.0, 9.0]])
    assert subset_min(q, T([0, 1])).tolist() == [1.0, 2.0]
    assert subset_min(q, T([1, 2])).tolist() == [0.0, 2.0]
    assert subset_min(q, T([2])).tolist() == [0.0, 9.0]
    assert reduce_ensemble(q, "min").tolist() == [0.0, 2.0]
    assert reduce_ensemble(q, "mean").tolist() == pytest.approx([4 / 3, 16 / 3])
    with pytest.raises(ValueError, match="actor_q"):
        reduce_ensemble(q, "max")


def test_soft_value_and_sac_actor_loss():
    v = soft_value(T([1.0, 2.0]), T([-1.0, 0.5]), 0.2)  # Q - alpha log pi
    assert v.tolist() == pytest.approx([1.2, 1.9])
    # mean(alpha log pi - Q) = mean(0.2*-1 - 1, 0.2*0.5 - 2) = mean(-1.2, -1.9)
    assert sac_actor_loss(T([1.0, 2.0]), T([-1.0, 0.5]), 0.2).item() == pytest.approx(-1.55)


# --------------------------------------------------------------------------- batched ensemble


def test_batched_ensemble_equals_separate_critics():
    """Same seed -> the same initial weights as N plain critics made in a row; the same values
    and gradients up to float rounding (one bmm per layer instead of a loop over critics)."""
    n, obs_dim, act_dim = 10, 5, 3
    torch.manual_seed(4)
    ens = BatchedCritic(obs_dim, act_dim, (32, 32), n=n)
    torch.manual_seed(4)
    plain = [Critic(obs_dim, act_dim, (32, 32)) for _ in range(n)]
    for i in range(n):
        for layer, lin in enumerate(plain[i].net.layers):
            assert torch.equal(ens.weight[layer][i], lin.weight.t())
            assert torch.equal(ens.bias[layer][i, 0], lin.bias)
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(64, obs_dim, generator=g), torch.rand(64, act_dim, generator=g)
    q = ens(obs, act)
    want = torch.stack([c(obs, act) for c in plain])
    assert q.shape == (n, 64)
    torch.testing.assert_close(q, want, rtol=1e-5, atol=1e-6)
    # members: only the subset is computed
    sub = ens(obs, act, T([7, 2]))
    torch.testing.assert_close(sub, want[[7, 2]], rtol=1e-5, atol=1e-6)
    # gradients of a loss on the ensemble equal the per-critic gradients
    y = torch.randn(64, generator=g)
    ((q - y) ** 2).mean(1).sum().backward()
    for c in plain:
        ((c(obs, act) - y) ** 2).mean().backward()
    for i in range(n):
        for layer, lin in enumerate(plain[i].net.layers):
            torch.testing.assert_close(ens.weight[layer].grad[i], lin.weight.grad.t(),
                                       rtol=1e-4, atol=1e-6)


def test_layer_norm_ensemble_equals_per_member_layer_norm_critics():
    n = 3
    torch.manual_seed(1)
    ens = BatchedCritic(2, 1, (8, 8), n=n, norm="layer")
    with torch.no_grad():
        for w in ens.norm_weight:
            w.uniform_(0.5, 1.5)
        for b in ens.norm_bias:
            b.uniform_(-0.1, 0.1)
    x = torch.randn(16, 2)
    a = torch.rand(16, 1)
    q = ens(x, a)
    for i in range(n):
        h = torch.cat([x, a], -1)
        for layer in range(3):
            h = h @ ens.weight[layer][i] + ens.bias[layer][i]
            if layer < 2:
                h = F.layer_norm(h, (8,), ens.norm_weight[layer][i, 0], ens.norm_bias[layer][i, 0],
                                 eps=1e-6)
                h = F.relu(h)
        torch.testing.assert_close(q[i], h.squeeze(-1), rtol=1e-5, atol=1e-6)


def _one_unit_bn_critic(norm="batch"):
    """1 member, obs 1 + act 1 -> 1 hidden unit (weights [1, 0], i.e. the normalised s) -> 1:
    ``Q(s, a) = BN_1(relu(BN_in(s)))`` (CrossQ's ``BN -> Dense -> ReLU -> BN -> Dense``)."""
    c = BatchedCritic(1, 1, (1,), n=1, norm=norm, eps=1e-12)
    with torch.no_grad():
        c.weight[0].copy_(T([[[1.0], [0.0]]]))
        c.bias[0].zero_()
        c.weight[1].copy_(T([[[1.0]]]))
        c.bias[1].zero_()
    return c


def test_crossq_joint_pass_normalises_over_both_halves():
    c = _one_unit_bn_critic()
    s, s2 = T([[1.0], [3.0]]), T([[5.0], [7.0]])
    a = torch.zeros(2, 1)
    q, q_next = joint_pass(c, s, a, s2, a)
    # input BN over the joint batch [1, 3, 5, 7]: mean 4, var 5 -> [-3, -1, 1, 3]/sqrt(5);
    # relu -> [0, 0, 1, 3]/sqrt(5): mean 1/sqrt(5), var 0.3 -> BN -> [-1, -1, 0, 2] * sqrt(2/3)
    k = math.sqrt(2 / 3)
    assert q[0].tolist() == pytest.approx([-k, -k], abs=1e-5)
    assert q_next[0].tolist() == pytest.approx([0.0, 2 * k], abs=1e-5)
    assert not q_next.requires_grad and q.requires_grad
    # a pass over s alone normalises it on its own: [1, 3] -> [-1, 1] -> [0, 1] -> [-1, 1]
    c2 = _one_unit_bn_critic()
    assert c2(s, a)[0].tolist() == pytest.approx([-1.0, 1.0], abs=1e-5)
    # running statistics of the input: 0.99 * 0 + 0.01 * 4, 0.99 * 1 + 0.01 * (unbiased 20/3)
    assert c.running_mean_0[0, 0].tolist() == pytest.approx([0.04, 0.0])
    assert c.running_var_0[0, 0, 0].item() == pytest.approx(0.99 + 0.01 * 20 / 3)
    c.eval()  # eval mode normalises with them
    with torch.no_grad():
        c.running_mean_1.fill_(0.5)
        c.running_var_1.fill_(0.25)
    x_in = (4.0 - 0.04) / math.sqrt(0.99 + 0.01 * 20 / 3)
    assert c(T([[4.0]]), T([[0.0]])).item() == pytest.approx((x_in - 0.5) / 0.5, abs=1e-5)


def test_batch_renorm_corrects_with_r_and_d_after_warmup():
    c = BatchedCritic(1, 0, (1,), n=1, norm="batch_renorm", eps=1e-12, renorm_warmup=1)
    with torch.no_grad():  # Q(s) = BN_1(relu(BN_in(s))) with unit weights
        for w in c.weight:
            w.fill_(1.0)
        for b in c.bias:
            b.zero_()
    x, a = T([[1.0], [3.0]]), torch.zeros(2, 0)

    def stats(mean, var):
        with torch.no_grad():
            c.running_mean_0.fill_(mean)
            c.running_var_0.fill_(var)
            c.running_mean_1.fill_(0.0)
            c.running_var_1.fill_(1.0)

    stats(2.0, 4.0)
    first = c(x, a)  # warm-up: plain batch norm, r = 1, d = 0: [1, 3] -> [-1, 1] -> [0, 1]
    assert first[0].tolist() == pytest.approx([-1.0, 1.0], abs=1e-5)
    stats(2.0, 4.0)
    # batch mean 2, std 1; running mean 2, std 2: r = 1/2, d = 0 -> input [-0.5, 0.5] ->
    # relu [0, 0.5]: the second norm (running mean 0, var 1, batch mean 0.25, std 0.25):
    # r = clip(0.25, 1/3, 3) = 1/3, d = clip(0.25, -5, 5) = 0.25 -> [-1, 1]/3 + 0.25
    assert c(x, a)[0].tolist() == pytest.approx([-1 / 3 + 0.25, 1 / 3 + 0.25], abs=1e-5)


# --------------------------------------------------------------------------- registry, config


def test_registry_names_every_algorithm_and_its_learner():
    want = {"ddpg": DPGLearner, "td3": DPGLearner, "ddpgfd": DPGLearner, "svg0": SVG0Learner,
            "sac": SACLearner, "crossq": CrossQLearner}
    assert set(ALGORITHMS) == set(want)
    for algo, cls in want.items():
        assert learner_class(algo) is cls
        lrn = Learner(learner_config(AgentConfig(algo=algo, hidden=(8,))), 3, 2)
        assert type(lrn) is cls
    with pytest.raises(ValueError, match="agent.algo"):
        learner_class("ppo")


def test_family_defaults():
    sac = learner_config(AgentConfig(algo="sac"))
    assert (sac.ensemble_size, sac.target_subset, sac.actor_q, sac.critic_norm) == (2, 2, "min", "none")
    assert sac.stochastic_actor and sac.soft_target and sac.learn_temperature
    assert sac.policy_delay == 1 and sac.adam_beta1 == 0.9 and sac.temperature_lr == 3e-4
    rlpd = learner_config(AgentConfig(algo="sac", ensemble_size=10, critic_norm="layer",
                                      utd_ratio=10, policy_delay=10))
    assert (rlpd.ensemble_size, rlpd.target_subset, rlpd.actor_q) == (10, 2, "mean")
    cq = learner_config(AgentConfig(algo="crossq"))
    assert (cq.critic_norm, cq.policy_delay, cq.adam_beta1) == ("batch_renorm", 3, 0.5)
    assert learner_config(AgentConfig(algo="td3")).policy_delay == 2


@pytest.mark.parametrize("algo, setting, match", [
    ("td3", {"ensemble_size": 10}, "agent.ensemble_size: algo=td3 does not use"),
    ("ddpgfd", {"critic_norm": "layer"}, "agent.critic_norm"),
    ("ddpg", {"policy_delay": 2}, "policy_delay"),
    ("svg0", {"learn_temperature": False}, "agent.learn_temperature"),
    ("svg0", {"bc_weight": 1.0}, "bc_weight"),
    ("sac", {"twin_critics": True}, "agent.twin_critics"),
    ("sac", {"ensemble_size": 3, "target_subset": 4}, "target_subset"),
    ("crossq", {"tau": 0.01}, "agent.tau"),
    ("crossq", {"critic_targets": "mixed"}, "mixed"),
])
def test_settings_a_family_would_ignore_are_refused(algo, setting, match):
    with pytest.raises(ValueError, match=match):
        learner_config(AgentConfig(algo=algo, **setting))


def test_unknown_algorithm_is_refused_by_the_config():
    with pytest.raises(ValueError, match="expected one of"):
        AgentConfig(algo="ppo")


# --------------------------------------------------------------------------- learners


@pytest.mark.parametrize("kw", [
    {"algo": "sac"},
    {"algo": "sac", "ensemble_size": 10, "critic_norm": "layer", "policy_delay": 4},
    {"algo": "crossq"},
])
def test_ensemble_learners_reduce_the_critic_loss(kw):
    lrn = Learner(learner_config(AgentConfig(hidden=(16, 16), batch_size=8, **kw)), 4, 2, seed=0)
    b = make_batch(B=32, demo_every=4)
    first = float(lrn.step(b)["critic_loss"])
    for _ in range(80):
        m = lrn.step(b)
    assert math.isfinite(float(m["critic_loss"])) and float(m["critic_loss"]) < first
    a = lrn.act(b.observation[:3].numpy(), deterministic=False)
    assert a.shape == (3, 2) and (np.abs(a) <= 1).all()


def test_sac_updates_the_actor_every_policy_delay_and_targets_every_step():
    lrn = Learner(learner_config(AgentConfig(algo="sac", hidden=(8,), ensemble_size=4,
                                             policy_delay=3, tau=0.5)), 4, 2, seed=0)
    b = make_batch()
    actor0 = [p.detach().clone() for p in lrn.actor.net.parameters()]
    target0 = [p.detach().clone() for p in lrn.target_critic.parameters()]
    for i in range(1, 4):
        m = lrn.step(b)
        assert float(m["actor_updated"]) == (i == 3)
        moved = [not torch.equal(t, t0) for t, t0 in zip(lrn.target_critic.parameters(), target0)]
        assert any(moved)  # targets follow after every critic update
        target0 = [p.detach().clone() for p in lrn.target_critic.parameters()]
        same = all(torch.equal(p, p0) for p, p0 in zip(lrn.actor.net.parameters(), actor0))
        assert same == (i < 3)
    assert lrn.num_actor_updates == 1 and "temperature_loss" in m


def test_sac_target_uses_a_random_subset_of_target_members():
    lrn = Learner(learner_config(AgentConfig(algo="sac", hidden=(8,), ensemble_size=6,
                                             target_subset=2, obs_normalization=False)), 4, 2)
    draws = {tuple(sorted(lrn._members().tolist())) for _ in range(40)}
    assert len(draws) > 5 and all(len(d) == 2 for d in draws)


def test_sac_temperature_moves_towards_the_target_entropy():
    cfg = learner_config(AgentConfig(algo="sac", hidden=(8,), target_entropy=-50.0,
                                     temperature_lr=0.05))
    lrn = Learner(cfg, 4, 2, seed=0)
    b = make_batch(B=16)
    for _ in range(20):
        lrn.step(b)
    assert float(lrn.alpha) < 0.5  # entropy far above -50: alpha shrinks from 1
    fixed = Learner(learner_config(AgentConfig(algo="sac", hidden=(8,), learn_temperature=False,
                                               init_temperature=0.3)), 4, 2)
    for _ in range(5):
        fixed.step(b)
    assert float(fixed.alpha) == pytest.approx(0.3)


def test_crossq_has_no_target_networks_and_its_actor_reads_running_statistics():
    lrn = Learner(learner_config(AgentConfig(algo="crossq", hidden=(8,), policy_delay=1)), 4, 2)
    assert not hasattr(lrn, "target_critic")
    assert "target_critic" not in lrn._modules()
    lrn.step(make_batch(B=16))
    assert lrn.critic.training  # back in training mode after the actor's eval-mode pass
    assert int(lrn.critic.num_batches) == 1  # only the joint pass moved the statistics


# --------------------------------------------------------------------------- symmetric sampling


def test_demo_fraction_half_is_rlpds_symmetric_sampling(tmp_path):
    """Half of every batch from demo + intervention rows, half online, whatever the pools'
    sizes (RLPD / SERL's 50/50), interventions counted with the demos."""
    obs, act = make_specs(4, 2)
    path = tmp_path / "replay.zarr"
    with ReplayWriter(path, obs, act, ReplayConfig(fsync=False, chunk_rows=256)) as w:
        w.append_batch(synthetic_rows(range(2000), obs_dim=4, act_dim=2, episode_len=50))
        w.append_batch(synthetic_rows(range(30), obs_dim=4, act_dim=2, episode_len=10,
                                      actor_session=2, source=Source.DEMO, episode_base=10_000))
        w.append_batch(synthetic_rows(range(20), obs_dim=4, act_dim=2, episode_len=10,
                                      actor_session=3, source=Source.INTERVENTION,
                                      episode_base=20_000))
        w.flush()
    s = ReplaySampler(ReplayMirror(path, 10_000), demo_fraction=0.5, seed=0)
    s.refresh()
    seen = set()
    for _ in range(20):
        b = s.sample(256)
        assert int(b.is_demo.sum()) == 128
        assert set(b.source[b.is_demo].tolist()) <= {1, 2}
        assert set(b.source[~b.is_demo].tolist()) == {0}
        seen |= set(b.source.tolist())
    assert seen == {0, 1, 2}


# --------------------------------------------------------------------------- old checkpoints


@pytest.mark.parametrize("algo", ["ddpg", "td3", "ddpgfd", "svg0"])
def test_checkpoints_written_before_the_families_load_and_continue(algo):
    """tests/data/checkpoints_v1: checkpoints of the single ``Learner`` class (commit 468a388),
    with the state that learner reached after 5 more updates on a fixed batch. The family
    learner restores them and makes the same 5 updates."""
    path = DATA / f"{algo}.safetensors"
    _, meta = read_checkpoint(path)
    lcfg = LearnerConfig.from_dict(meta["learner"]["config"])
    lrn = Learner(lcfg, 4, 2, seed=123)
    load_checkpoint(path, lrn)
    b = make_batch(B=16, demo_every=4, seed=1)
    for _ in range(5):
        lrn.step(b)
    want = load_file(str(DATA / f"{algo}_after5.safetensors"))
    got = {k: v for k, v in lrn.state_tensors().items() if not k.startswith("rng")}
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("algo", ["sac", "crossq"])
def test_behaviour_cloning_in_the_stochastic_families(algo):
    """bc_weight > 0: the actor's mean action also clones the demo rows' actions (DDPGfD's
    term, Q-filtered); without demo rows in the batch the term is 0."""
    cfg = learner_config(AgentConfig(algo=algo, hidden=(16,), policy_delay=1, bc_weight=1.0,
                                     q_filter=False, actor_lr=3e-3))
    assert cfg.bc_weight == 1.0
    b = make_batch(B=32, demo_every=2)
    demo_action = torch.tensor([0.6, -0.6])
    b = b._replace(action=torch.where(b.is_demo[:, None], demo_action, b.action))

    def distance(lrn):  # mean squared distance of the mean action to the demo action
        with torch.no_grad():
            a = lrn.actor.forward_normalized(lrn.normalizer(b.observation))
            return float(((a - demo_action) ** 2).sum(-1)[b.is_demo].mean())

    lrn = Learner(cfg, 4, 2, seed=0)
    plain = Learner(learner_config(AgentConfig(algo=algo, hidden=(16,), policy_delay=1,
                                               actor_lr=3e-3)), 4, 2, seed=0)
    m = lrn.step(b)
    plain.step(b)
    assert float(m["bc_loss"]) > 0 and float(m["q_filter_pass"]) == 1.0
    for _ in range(100):
        m = lrn.step(b)
        plain.step(b)
    assert distance(lrn) < 0.5 * distance(plain)  # the clone is closer than without BC
    none = lrn.step(make_batch(B=32))  # no demo rows
    assert float(none["bc_loss"]) == 0.0
