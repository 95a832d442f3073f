"""Networks: normaliser statistics, bounded actors, critics, device and threads."""
import math

import numpy as np
import pytest
import torch

from robot_rl.agents.networks import (
    Actor,
    Critic,
    CriticEnsemble,
    GaussianActor,
    RunningNormalizer,
    resolve_device,
    set_torch_threads,
)

pytestmark = pytest.mark.unit
torch.set_num_threads(1)


def test_normalizer_running_statistics_match_the_whole_data():
    norm = RunningNormalizer(2, clip=100.0)
    data = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 13.0], [7.0, 7.0], [9.0, 10.0]])
    norm.update(data[:2])
    norm.update(data[2:])
    assert norm.count.item() == 5
    assert norm.mean.tolist() == pytest.approx([5.0, 10.0])
    # population variance: [8, 3.6]
    assert (norm.m2 / norm.count).tolist() == pytest.approx([8.0, 3.6])
    y = norm(torch.tensor([[5.0 + math.sqrt(8.0), 10.0]]))
    assert y[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)


def test_normalizer_clips_and_can_be_disabled():
    norm = RunningNormalizer(1, clip=2.0)
    norm.update(torch.tensor([[-1.0], [1.0]]))  # mean 0, std 1
    assert norm(torch.tensor([[10.0], [-0.5]])).tolist() == [[2.0], [-0.5]]
    off = RunningNormalizer(1, enabled=False)
    off.update(torch.tensor([[5.0], [7.0]]))
    assert off.count.item() == 0 and off(torch.tensor([[10.0]])).item() == 10.0
    with pytest.raises(ValueError, match="observation"):
        norm.update(torch.zeros(3, 2))


def test_normalizer_statistics_are_saved_with_the_actor():
    a = Actor(2, 1, (8,), normalizer=RunningNormalizer(2))
    a.normalizer.update(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    sd = a.state_dict()
    assert {"normalizer.count", "normalizer.mean", "normalizer.m2"} <= set(sd)
    b = Actor(2, 1, (8,), normalizer=RunningNormalizer(2))
    b.load_state_dict(sd)
    x = torch.tensor([[0.5, 0.5]])
    assert torch.equal(a(x), b(x))


def test_actor_is_tanh_bounded_and_scaled():
    a = Actor(3, 2, (8,), low=[-2.0, 0.0], high=[2.0, 1.0])
    with torch.no_grad():
        a.net.layers[-1].bias.fill_(100.0)
    out = a(torch.zeros(4, 3))
    assert torch.allclose(out, torch.tensor([[2.0, 1.0]] * 4))
    with torch.no_grad():
        a.net.layers[-1].bias.fill_(-100.0)
    assert torch.allclose(a(torch.zeros(1, 3)), torch.tensor([[-2.0, 0.0]]))
    with pytest.raises(ValueError, match="action bounds"):
        Actor(3, 2, (8,), low=[1.0, 1.0], high=[0.0, 2.0])


def test_gaussian_actor_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    pi = GaussianActor(3, 2, (16,))
    obs = torch.randn(5, 3)
    g = torch.Generator().manual_seed(1)
    a, logp = pi.sample_normalized(obs, g)
    mu, log_std = pi.dist_params(obs)
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    base = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum(-1)
    want = base - torch.log(1 - a.pow(2) + 1e-6).sum(-1)
    assert torch.allclose(logp, want, atol=1e-3)
    assert (a.abs() < 1).all()
    assert torch.equal(pi(obs), torch.tanh(mu))


def test_critic_ensemble_equals_plain_critics_bit_for_bit():
    torch.manual_seed(0)
    ens = CriticEnsemble(5, 2, (16, 16), n=2)
    plain = [Critic(5, 2, (16, 16)), Critic(5, 2, (16, 16))]
    for p, c in zip(plain, ens.critics):
        p.load_state_dict(c.state_dict())
    o, a = torch.randn(7, 5), torch.randn(7, 2)
    q = ens(o, a)
    assert q.shape == (2, 7)
    assert torch.equal(q[0], plain[0](o, a)) and torch.equal(q[1], plain[1](o, a))
    assert torch.equal(ens.q1(o, a), plain[0](o, a))
    q.sum().backward()
    (plain[0](o, a).sum() + plain[1](o, a).sum()).backward()
    for p, c in zip(plain, ens.critics):
        for x, y in zip(p.parameters(), c.parameters()):
            assert torch.equal(x.grad, y.grad)


def test_device_and_threads():
    assert resolve_device("cpu") == torch.device("cpu")
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expect
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="agent.device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="agent.device"):
        resolve_device("tpu")
    before = torch.get_num_threads()
    assert set_torch_threads(None) == before
    assert set_torch_threads(1) == 1
    with pytest.raises(ValueError, match="torch_threads"):
        set_torch_threads(0)
    torch.set_num_threads(before)


def test_default_init_bounds():
    c = Critic(20, 7, (256, 256))
    w = c.net.layers[0].weight.detach()
    assert w.abs().max() <= 1 / math.sqrt(27) + 1e-7
    assert np.isclose(float(w.std()), 1 / math.sqrt(27) / math.sqrt(3), rtol=0.05)
