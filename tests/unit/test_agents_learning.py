"""Loss functions and the learner's step, with the expected numbers written out."""
import math

import pytest
import torch

from robot_rl.agents.config import LearnerConfig, learner_config
from robot_rl.agents.learning import (
    Learner,
    bc_loss,
    clipped_target,
    critic_td_loss,
    ddpgfd_priority,
    deterministic_actor_loss,
    hard_update,
    l2_penalty,
    min_over_critics,
    polyak_update,
    smoothed_target_action,
    svg0_actor_loss,
    td_target,
)
from robot_rl.agents.schedule import UpdateSchedule
from robot_rl.config import AgentConfig
from robot_rl.replay.sampler import Batch

pytestmark = pytest.mark.unit
torch.set_num_threads(1)

T = torch.tensor


def make_batch(B=8, obs_dim=4, act_dim=2, seed=0, demo_every=0, gamma=0.99):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(B, obs_dim, generator=g)
    a = torch.rand(B, act_dim, generator=g) * 2 - 1
    r = torch.randn(B, generator=g)
    no = torch.randn(B, obs_dim, generator=g)
    term = (torch.arange(B) % 3 == 0).float()
    trunc = (torch.arange(B) % 3 == 1).float()
    disc = gamma * (1 - term)
    demo = (torch.arange(B) % demo_every == 0) if demo_every else torch.zeros(B, dtype=torch.bool)
    return Batch(o, a, r, no, term, trunc, disc, r, disc, no, torch.ones(B, dtype=torch.int64),
                 torch.ones(B), torch.arange(B), torch.arange(B), demo,
                 demo.to(torch.uint8))


# --------------------------------------------------------------------------- targets


def test_td_target_terminated_vs_truncated():
    # rows: terminated, truncated (time limit), running; gamma 0.9, Q' = 10
    gamma = 0.9
    terminated = T([1.0, 0.0, 0.0])
    discount = gamma * (1 - terminated)  # what the sampler puts in Batch.discount
    y = td_target(T([1.0, 1.0, 1.0]), discount, T([10.0, 10.0, 10.0]))
    assert y.tolist() == pytest.approx([1.0, 10.0, 10.0])  # 1 | 1 + 0.9*10 | 1 + 0.9*10


def test_td_target_nstep():
    # G = 1 + 0.5*2 = 2, m = 2, gamma^2 = 0.25, Q' = 4 -> 3; terminated inside: 2
    y = td_target(T([2.0, 2.0]), T([0.25, 0.0]), T([4.0, 4.0]))
    assert y.tolist() == [3.0, 2.0]


def test_td3_smoothing_clips_noise_then_action():
    a = T([[0.0, 0.9, -0.95]])
    noise = T([[0.7, 0.3, -0.2]])
    out = smoothed_target_action(a, noise, 0.5, -torch.ones(3), torch.ones(3))
    # noise clipped to +-0.5 first: 0.5, 0.3, -0.2; then the sum clipped to [-1, 1]
    assert out[0].tolist() == pytest.approx([0.5, 1.0, -1.0])


def test_clipped_double_q_takes_the_minimum():
    q = T([[1.0, 5.0, -2.0], [3.0, 4.0, -1.0]])
    assert min_over_critics(q).tolist() == [1.0, 4.0, -2.0]
    assert min_over_critics(q[:1]).tolist() == [1.0, 5.0, -2.0]


def test_critic_loss_importance_weights_and_sum_over_critics():
    q = T([[1.0, 2.0], [0.0, 2.0]])
    y = T([2.0, 0.0])
    w = T([1.0, 0.5])
    # critic 1: (1*1 + 0.5*4)/2 = 1.5 ; critic 2: (1*4 + 0.5*4)/2 = 3
    assert float(critic_td_loss(q, y, w)) == pytest.approx(4.5)


def test_actor_losses():
    assert float(deterministic_actor_loss(T([1.0, 3.0]))) == -2.0
    # alpha * log pi - Q: (0.1*-1 - 2 + 0.1*-3 - 4) / 2 = -3.2
    assert float(svg0_actor_loss(T([2.0, 4.0]), T([-1.0, -3.0]), 0.1)) == pytest.approx(-3.2)


def test_bc_loss_q_filter():
    pi = T([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    demo_a = T([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    is_demo = T([True, True, True, False])
    q_demo = T([5.0, 1.0, 3.0, 9.0])
    q_pi = T([4.0, 2.0, 2.0, 0.0])
    # filter passes rows 0 (5 > 4) and 2 (3 > 2), not 1 (1 < 2); row 3 is not a demo
    loss, frac = bc_loss(pi, demo_a, is_demo, q_demo, q_pi, q_filter=True)
    assert float(loss) == pytest.approx((1.0 + 2.0) / 3)
    assert float(frac) == pytest.approx(2 / 3)
    loss, frac = bc_loss(pi, demo_a, is_demo, q_demo, q_pi, q_filter=False)
    assert float(loss) == pytest.approx((1.0 + 4.0 + 2.0) / 3)
    assert float(frac) == 1.0
    # no demo rows: zero loss, no division by zero
    loss, frac = bc_loss(pi, demo_a, torch.zeros(4, dtype=torch.bool), q_demo, q_pi, True)
    assert float(loss) == 0.0 and float(frac) == 0.0


def test_l2_penalty_value_and_gradient():
    w1 = T([[1.0, 2.0]], requires_grad=True)
    w2 = T([3.0], requires_grad=True)
    p = l2_penalty([w1, w2], 0.01)
    assert p.detach().item() == pytest.approx(0.14)  # 0.01 * (1 + 4 + 9)
    p.backward()
    assert w1.grad[0].tolist() == pytest.approx([0.02, 0.04])  # 2 * lambda * W
    assert w2.grad.tolist() == pytest.approx([0.06])


def test_ddpgfd_priority():
    td = T([1.0, -2.0])
    g = T([[3.0, 0.0], [1.0, 1.0]])
    assert ddpgfd_priority(td, g, 0.5).tolist() == [1.0 + 4.5, 4.0 + 1.0]
    assert ddpgfd_priority(td, None, 0.5).tolist() == [1.0, 4.0]


def test_polyak_and_hard_update():
    target = [T([0.0, 10.0]), T([[1.0]])]
    online = [T([1.0, 0.0]), T([[3.0]])]
    polyak_update(target, online, 0.1)
    assert target[0].tolist() == pytest.approx([0.1, 9.0])  # 0.1*1 + 0.9*0 ; 0.1*0 + 0.9*10
    assert target[1].item() == pytest.approx(1.2)
    hard_update(target, online)
    assert target[0].tolist() == [1.0, 0.0] and target[1].tolist() == [[3.0]]


# --------------------------------------------------------------------------- config


def test_learner_config_algorithm_defaults():
    td3 = learner_config(AgentConfig(algo="td3"))
    assert td3.twin_critics and td3.policy_delay == 2 and td3.target_noise == 0.2
    ddpg = learner_config(AgentConfig(algo="ddpg"))
    assert not ddpg.twin_critics and ddpg.policy_delay == 1 and ddpg.target_noise == 0.0
    fd = learner_config(AgentConfig(algo="ddpgfd", n_step=5))
    assert fd.bc_weight == 1.0 and fd.critic_targets == "mixed" and fd.priority_formula == "ddpgfd"
    svg = learner_config(AgentConfig(algo="svg0"))
    assert svg.stochastic_actor and svg.entropy_coef == 0.01 and not svg.soft_target
    sac = learner_config(AgentConfig(algo="svg0", twin_critics=True, svg_soft_target=True))
    assert sac.twin_critics and sac.soft_target
    off = learner_config(AgentConfig(algo="ddpgfd", bc_weight=0.0, critic_targets="1step"))
    assert off.bc_weight == 0.0 and off.critic_targets == "1step"


def test_learner_config_refuses_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="tau"):
        LearnerConfig(tau=0.0)
    with pytest.raises(ValueError, match="policy_delay"):
        LearnerConfig(policy_delay=0)
    with pytest.raises(ValueError, match="hidden"):
        LearnerConfig(hidden=())


# --------------------------------------------------------------------------- learner


def small(algo="td3", **kw):
    base = learner_config(AgentConfig(algo=algo, hidden=(16, 16), batch_size=8))
    d = base.to_dict()
    d.update(kw)
    return LearnerConfig.from_dict(d)


def params(m):
    return [p.detach().clone() for p in m.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_td3_delays_actor_and_targets():
    lrn = Learner(small("td3", policy_delay=2, tau=0.5), 4, 2, seed=0)
    b = make_batch()
    a0, c0, ta0 = params(lrn.actor.net), params(lrn.critic), params(lrn.target_actor)
    m = lrn.step(b)
    assert float(m["actor_updated"]) == 0.0 and "actor_loss" not in m
    assert same(params(lrn.actor.net), a0) and same(params(lrn.target_actor), ta0)
    assert not same(params(lrn.critic), c0)
    m = lrn.step(b)
    assert float(m["actor_updated"]) == 1.0 and "actor_loss" in m
    assert not same(params(lrn.actor.net), a0)
    # Polyak with tau 0.5 right after the actor step: target = (online + old target) / 2
    for t, o, old in zip(lrn.target_actor.parameters(), lrn.actor.net.parameters(), ta0):
        assert torch.allclose(t, 0.5 * o + 0.5 * old, atol=1e-7)
    assert lrn.num_steps == 2 and lrn.num_actor_updates == 1


def test_hard_target_update_every_m_steps():
    lrn = Learner(small("ddpg", target_update="hard", target_update_period=3), 4, 2, seed=0)
    b = make_batch()
    t0 = params(lrn.target_critic)
    lrn.step(b)
    lrn.step(b)
    assert same(params(lrn.target_critic), t0)  # not yet
    lrn.step(b)
    assert same(params(lrn.target_critic), params(lrn.critic))  # copied on the 3rd
    lrn.step(b)
    assert not same(params(lrn.target_critic), params(lrn.critic))


def test_terminated_rows_do_not_bootstrap_in_the_learner():
    lrn = Learner(small("ddpg", obs_normalization=False), 4, 2, seed=0)
    b = make_batch()
    with torch.no_grad():
        y = lrn._target(b.reward, b.discount, b.next_observation)
        qn = lrn.target_critic(b.next_observation, lrn.target_actor(b.next_observation))[0]
    term = b.terminated.bool()
    assert torch.equal(y[term], b.reward[term])
    assert torch.allclose(y[~term], b.reward[~term] + 0.99 * qn[~term])
    assert b.truncated[~term].sum() > 0  # truncated rows are among those that bootstrap


def test_clipped_target_values():
    y = T([-250.0, -100.0, -3.5, 0.0, 0.7, 40.0])
    assert torch.equal(clipped_target(y, -100.0, 0.0), T([-100.0, -100.0, -3.5, 0.0, 0.0, 0.0]))


def test_target_clip_bounds_the_learners_targets():
    """A target critic that over-values everything (Q' = +50 under rewards <= 0): with
    target_clip=[-100, 0] every target is inside the returns' range; without, it is not."""
    b = make_batch()
    for clip, expect_max in (((-100.0, 0.0), 0.0), (None, None)):
        lrn = Learner(small("ddpgfd", obs_normalization=False, target_clip=clip), 4, 2, seed=0)
        with torch.no_grad():
            for c in lrn.target_critic.critics:
                c.net.layers[-1].weight.zero_()
                c.net.layers[-1].bias.fill_(50.0)
            y = lrn._target(-b.reward.abs(), b.discount, b.next_observation)
        term = b.terminated.bool()
        if clip is None:
            assert torch.allclose(y[~term], -b.reward[~term].abs() + 0.99 * 50.0)
        else:
            assert float(y.max()) <= expect_max and float(y.min()) >= -100.0
            assert torch.equal(y[~term], torch.zeros(int((~term).sum())))  # -|r| + 49.5 -> 0
            assert torch.equal(y[term], -b.reward[term].abs())  # in range: unchanged


def test_actor_gradient_equals_plain_backward():
    """The two-stage actor gradient (through grad_a Q) equals backward() of the whole loss."""
    cfg = small("ddpgfd", bc_weight=0.7, actor_l2=0.01, obs_normalization=False)
    lrn = Learner(cfg, 4, 2, seed=3)
    b = make_batch(demo_every=2)
    obs_n = b.observation
    with torch.no_grad():
        q_demo = lrn.critic(obs_n, b.action)[0]
    a_pi = lrn.actor.forward_normalized(obs_n)
    q_pi = lrn.critic.q1(obs_n, a_pi)
    l_bc, _ = bc_loss(a_pi, b.action, b.is_demo, q_demo, q_pi.detach(), True)
    loss = deterministic_actor_loss(q_pi) + 0.7 * l_bc + l2_penalty(lrn._actor_w, 0.01)
    want = torch.autograd.grad(loss, lrn.actor_params)
    lrn.actor_opt.step = lambda: None  # keep the weights; look at the gradients
    lrn._actor_step(obs_n, b, q_demo)
    for p, g in zip(lrn.actor_params, want):
        assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-5)


def test_critic_l2_decay_is_applied():
    """With lambda2 the critic gradient is the plain one plus 2*lambda2*W on weight matrices."""
    b = make_batch()
    grads = {}
    for lam in (0.0, 0.5):
        lrn = Learner(small("ddpg", critic_l2=lam, obs_normalization=False), 4, 2, seed=1)
        lrn.critic_opt.step = lambda: None
        lrn.actor_opt.step = lambda: None
        lrn.step(b)
        grads[lam] = [p.grad.clone() for p in lrn.critic.parameters()]
        weights = {id(w) for w in lrn.critic.weight_matrices()}
        kinds = [id(p) in weights for p in lrn.critic.parameters()]
        plist = [p.detach().clone() for p in lrn.critic.parameters()]
    for g0, g1, is_w, p in zip(grads[0.0], grads[0.5], kinds, plist):
        expect = g0 + 2 * 0.5 * p if is_w else g0
        assert torch.allclose(g1, expect, atol=1e-6)


def test_priorities_abs_td_and_ddpgfd():
    b = make_batch()
    lrn = Learner(small("td3"), 4, 2, seed=0)
    lrn.step(b)
    assert lrn.last_priorities.shape == (8,) and (lrn.last_priorities >= 0).all()
    fd = Learner(small("ddpgfd", priority_actor_lambda=0.0), 4, 2, seed=0)
    fd2 = Learner(small("ddpgfd", priority_actor_lambda=2.0), 4, 2, seed=0)
    fd.step(b)
    fd2.step(b)
    assert (fd2.last_priorities > fd.last_priorities).all()  # + lambda3 |grad_a Q|^2 > 0


def test_importance_weights_scale_the_critic_gradient():
    b = make_batch()
    half = b._replace(weights=torch.full((8,), 0.5))
    g = []
    for batch in (b, half):
        lrn = Learner(small("ddpg", obs_normalization=False), 4, 2, seed=1)
        lrn.critic_opt.step = lambda: None
        lrn.step(batch)
        g.append([p.grad.clone() for p in lrn.critic.parameters()])
    for full, h in zip(*g):
        assert torch.allclose(h, 0.5 * full, atol=1e-7)


@pytest.mark.parametrize("algo", ["ddpg", "td3", "ddpgfd", "svg0"])
def test_every_algorithm_steps_and_reduces_critic_loss(algo):
    torch.manual_seed(0)
    lrn = Learner(small(algo, n_step=3 if algo == "ddpgfd" else 1), 4, 2, seed=0)
    b = make_batch(B=32, demo_every=4)
    first = float(lrn.step(b)["critic_loss"])
    for _ in range(60):
        m = lrn.step(b)
    assert math.isfinite(float(m["critic_loss"])) and float(m["critic_loss"]) < first
    a = lrn.act(b.observation[0].numpy())
    assert a.shape == (2,) and (abs(a) <= 1).all()


def test_learner_is_deterministic_for_a_seed():
    b = make_batch()
    outs = []
    for _ in range(2):
        lrn = Learner(small("td3"), 4, 2, seed=5)
        for _ in range(4):
            lrn.step(b)
        outs.append(params(lrn.actor.net) + params(lrn.critic))
    assert same(*outs)


def test_act_refuses_wrong_shape():
    lrn = Learner(small("td3"), 4, 2, seed=0)
    with pytest.raises(ValueError, match="observation"):
        lrn.act([0.0, 1.0])


# --------------------------------------------------------------------------- UTD


@pytest.mark.parametrize("ratio, warmup, steps, expect", [
    (1.0, 0, 10, 10), (0.25, 0, 10, 2), (4, 0, 10, 40), (0.5, 100, 120, 10),
    (0.29, 0, 100, 29), (1.0, 1000, 999, 0),
])
def test_utd_ratio_held(ratio, warmup, steps, expect):
    s = UpdateSchedule(ratio, warmup)
    total = sum(s.due(n) for n in range(1, steps + 1))
    assert total == expect == s.done


def test_utd_ratio_held_per_step():
    s = UpdateSchedule(0.25, 2)
    assert [s.due(n) for n in range(1, 12)] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="utd_ratio"):
        UpdateSchedule(0.0)


def test_actor_saturation_is_the_fraction_of_components_at_the_bounds():
    lrn = Learner(small("ddpg"), 4, 2, seed=0)
    assert lrn.actor_saturation is None  # before any actor update
    m = lrn.step(make_batch())
    fresh = float(m["actor_saturation"])
    assert 0.0 <= fresh < 0.5 and float(lrn.actor_saturation) == fresh
    # drive the first output far past the tanh's knee: half the components saturate
    last = lrn.actor.net.layers[-1] if hasattr(lrn.actor.net, "layers") else \
        [x for x in lrn.actor.net.modules() if isinstance(x, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([50.0, 0.0]))
    m = lrn.step(make_batch(seed=1))
    assert float(m["actor_saturation"]) == pytest.approx(0.5)


def test_saturation_message_names_the_remedy():
    from robot_rl.agents.learning import saturation_message

    single = saturation_message(0.97, AgentConfig(algo="ddpgfd"))
    assert "97%" in single and "agent.twin_critics=true" in single
    twin = saturation_message(0.95, AgentConfig(algo="ddpgfd", twin_critics=True))
    assert "twin critics already on" in twin
