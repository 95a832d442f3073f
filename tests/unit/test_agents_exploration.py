"""Exploration noise: statistics, seeding, schedules, the clipped behaviour action."""
import numpy as np
import pytest

from robot_rl.agents.exploration import (
    GaussianNoise,
    LinearSchedule,
    OrnsteinUhlenbeckNoise,
    behaviour_action,
    make_noise,
)
from robot_rl.config import AgentConfig

pytestmark = pytest.mark.unit


def test_linear_schedule_values():
    s = LinearSchedule(0.3, 0.1, steps=100, begin=50)
    assert [s(t) for t in (0, 50, 100, 150, 1000)] == pytest.approx([0.3, 0.3, 0.2, 0.1, 0.1])
    assert LinearSchedule(0.2)(10**6) == 0.2
    assert LinearSchedule(0.2, 0.0, steps=0)(10) == 0.2
    with pytest.raises(ValueError, match="schedule"):
        LinearSchedule(-1.0)


def test_gaussian_noise_is_seeded_and_has_the_std():
    a = GaussianNoise(7, 0.2, seed=3)
    b = GaussianNoise(7, 0.2, seed=3)
    x = np.stack([a.sample() for _ in range(4000)])
    y = np.stack([b.sample() for _ in range(4000)])
    assert np.array_equal(x, y) and x.dtype == np.float32
    assert abs(x.mean()) < 0.01
    assert x.std() == pytest.approx(0.2, rel=0.03)
    # lag-1 autocorrelation ~ 0 (independent over time)
    assert abs(np.corrcoef(x[:-1, 0], x[1:, 0])[0, 1]) < 0.06


def test_ou_noise_statistics():
    theta, dt, sigma = 0.5, 0.1, 0.3
    ou = OrnsteinUhlenbeckNoise(7, sigma, theta=theta, dt=dt, seed=0)
    for _ in range(200):  # burn-in to the stationary distribution
        ou.sample()
    x = np.stack([ou.sample() for _ in range(20000)]).astype(np.float64)
    rho = 1 - theta * dt  # 0.95
    want_std = sigma * np.sqrt(dt / (1 - rho**2))  # 0.3 * sqrt(0.1 / 0.0975) = 0.30382
    assert ou.stationary_std(sigma) == pytest.approx(0.303822, rel=1e-5)
    assert x.std() == pytest.approx(want_std, rel=0.06)
    assert abs(x.mean()) < 0.05
    lag1 = np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(7)])
    assert lag1 == pytest.approx(rho, abs=0.01)


def test_ou_reset_and_state_round_trip():
    ou = OrnsteinUhlenbeckNoise(2, 0.2, seed=1)
    for _ in range(5):
        ou.sample()
    st = ou.state()
    nxt = [ou.sample() for _ in range(3)]
    ou2 = OrnsteinUhlenbeckNoise(2, 0.2, seed=99)
    ou2.set_state(st)
    assert all(np.array_equal(p, q) for p, q in zip(nxt, [ou2.sample() for _ in range(3)]))
    ou.reset()
    assert ou.x.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="kind"):
        GaussianNoise(2, 0.1).set_state(st)
    with pytest.raises(ValueError, match="ou_theta"):
        OrnsteinUhlenbeckNoise(2, 0.1, theta=100.0, dt=1.0)


def test_behaviour_action_clips_to_bounds():
    a = behaviour_action(np.array([0.9, -0.5, 0.0]), np.array([0.3, -0.7, 0.1]),
                         -np.ones(3, np.float32), np.ones(3, np.float32))
    assert a.tolist() == pytest.approx([1.0, -1.0, 0.1])
    assert a.dtype == np.float32


def test_make_noise_from_config():
    n = make_noise(AgentConfig(exploration="ou", exploration_noise=0.2, warmup_steps=10), 7, 0)
    assert isinstance(n, OrnsteinUhlenbeckNoise) and n.sigma(0) == 0.2
    g = make_noise(AgentConfig(exploration_noise=0.3, exploration_noise_final=0.1,
                               exploration_decay_steps=100, warmup_steps=10), 7, 0)
    assert isinstance(g, GaussianNoise) and g.sigma(60) == pytest.approx(0.2)
