"""Exploration: the noisy behaviour policy ``clip(pi(s) + eps, low, high)``.

* :class:`GaussianNoise` -- ``eps_t ~ N(0, sigma(t)^2 I)``, independent over time.
* :class:`OrnsteinUhlenbeckNoise` -- the discretised OU process of DDPG (Lillicrap et al.),
  ``x_{t+1} = x_t + theta (mu - x_t) dt + sigma(t) sqrt(dt) xi_t``, ``xi_t ~ N(0, I)``, reset to
  ``mu`` at every episode start. With constant sigma it is an AR(1) process with lag-1
  autocorrelation ``1 - theta dt`` and stationary variance
  ``sigma^2 dt / (1 - (1 - theta dt)^2)``.
* :class:`LinearSchedule` -- ``sigma(t)`` from ``start`` to ``end`` over ``steps`` (then flat).

Each noise owns a seeded numpy generator (PCG64); :meth:`state` / :meth:`set_state` make a
resumed run draw exactly the noise the interrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LinearSchedule:
    """``v(t) = start + (end - start) * min(1, max(0, t - begin) / steps)`` (``steps = 0``: start)."""

    start: float
    end: float | None = None
    steps: int = 0
    begin: int = 0

    def __post_init__(self) -> None:
        if self.start < 0 or (self.end is not None and self.end < 0):
            raise ValueError(f"schedule: values must be >= 0, got start={self.start}, end={self.end}")
        if self.steps < 0:
            raise ValueError(f"schedule: steps must be >= 0, got {self.steps}")

    def __call__(self, t: int) -> float:
        if self.end is None or self.steps == 0:
            return float(self.start)
        frac = min(1.0, max(0, t - self.begin) / self.steps)
        return float(self.start + (self.end - self.start) * frac)


class GaussianNoise:
    """``eps ~ N(0, sigma(t)^2)`` per action dimension, seeded."""

    kind = "gaussian"

    def __init__(self, act_dim: int, sigma: LinearSchedule | float, seed: int = 0) -> None:
        if act_dim < 1:
            raise ValueError(f"act_dim: expected >= 1, got {act_dim}")
        self.act_dim = int(act_dim)
        self.sigma = sigma if isinstance(sigma, LinearSchedule) else LinearSchedule(float(sigma))
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def reset(self) -> None:
        """Episode start (nothing to do for independent noise)."""

    def sample(self, t: int = 0) -> np.ndarray:
        return (self.sigma(t) * self.rng.standard_normal(self.act_dim)).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"noise state: kind {state.get('kind')!r}, expected {self.kind!r}")
        self.rng.bit_generator.state = state["rng"]


class OrnsteinUhlenbeckNoise:
    """``x <- x + theta (mu - x) dt + sigma(t) sqrt(dt) xi``; :meth:`reset` sets ``x = mu``."""

    kind = "ou"

    def __init__(self, act_dim: int, sigma: LinearSchedule | float, theta: float = 0.15,
                 dt: float = 0.05, mu: float = 0.0, seed: int = 0) -> None:
        if act_dim < 1:
            raise ValueError(f"act_dim: expected >= 1, got {act_dim}")
        if theta <= 0 or dt <= 0 or theta * dt >= 2:
            raise ValueError(f"ou_theta, ou_dt: expected theta > 0, dt > 0 and theta*dt < 2 "
                             f"(a stable process), got theta={theta}, dt={dt}")
        self.act_dim = int(act_dim)
        self.sigma = sigma if isinstance(sigma, LinearSchedule) else LinearSchedule(float(sigma))
        self.theta, self.dt, self.mu = float(theta), float(dt), float(mu)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.x = np.full(self.act_dim, self.mu)

    def reset(self) -> None:
        self.x = np.full(self.act_dim, self.mu)

    def sample(self, t: int = 0) -> np.ndarray:
        xi = self.rng.standard_normal(self.act_dim)
        self.x = (self.x + self.theta * (self.mu - self.x) * self.dt
                  + self.sigma(t) * np.sqrt(self.dt) * xi)
        return self.x.astype(np.float32)

    def stationary_std(self, sigma: float) -> float:
        """``sigma sqrt(dt / (1 - (1 - theta dt)^2))`` for a constant ``sigma``."""
        rho = 1.0 - self.theta * self.dt
        return float(sigma * np.sqrt(self.dt / (1.0 - rho * rho)))

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "rng": self.rng.bit_generator.state,
                "x": [float(v) for v in self.x]}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"noise state: kind {state.get('kind')!r}, expected {self.kind!r}")
        self.rng.bit_generator.state = state["rng"]
        self.x = np.asarray(state["x"], dtype=np.float64)


def behaviour_action(policy_action: np.ndarray, noise: np.ndarray, low: np.ndarray,
                     high: np.ndarray) -> np.ndarray:
    """The noisy DPG behaviour policy: ``clip(pi(s) + eps, low, high)`` (float32)."""
    a = np.asarray(policy_action, dtype=np.float32) + np.asarray(noise, dtype=np.float32)
    return np.clip(a, low, high).astype(np.float32)


def make_noise(agent_cfg: Any, act_dim: int, seed: int) -> GaussianNoise | OrnsteinUhlenbeckNoise:
    """The noise an :class:`robot_rl.config.AgentConfig` asks for; the schedule's clock is env
    steps and it starts after the warm-up."""
    sched = LinearSchedule(agent_cfg.exploration_noise, agent_cfg.exploration_noise_final,
                           agent_cfg.exploration_decay_steps, begin=agent_cfg.warmup_steps)
    if agent_cfg.exploration == "ou":
        return OrnsteinUhlenbeckNoise(act_dim, sched, theta=agent_cfg.ou_theta,
                                      dt=agent_cfg.ou_dt, seed=seed)
    return GaussianNoise(act_dim, sched, seed=seed)
