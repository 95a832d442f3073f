"""Acting: the behaviour policy of the in-process trainer and of every actor node, in one place.

What an actor does at env step ``t`` with observation ``s``::

    warming up (t < warmup, or no policy yet)  ->  a ~ U(low, high)
    deterministic policy (ddpg, td3, ddpgfd)    ->  a = clip(pi(s) + eps_t, low, high)
                                                    eps_t from the configured noise process
    stochastic policy (svg0, sac, crossq)       ->  a = clip(scale * tanh(mu(s) + sigma(s) * xi_t)
                                                    + bias, low, high),  xi_t ~ N(0, I)
                                                    (its own sample: no extra noise)

The draws ``xi_t`` of a stochastic policy are independent, or with ``agent.sample_correlation``
``rho > 0`` an AR(1) process ``xi_t = rho xi_(t-1) + sqrt(1 - rho^2) n_t`` (``xi_0 ~ N(0, I)``
at every episode start): each ``xi_t`` is still standard normal, so each action is a sample of
the policy at its state (what the off-policy learner assumes of nothing anyway), but consecutive
draws differ by ``sqrt(2 (1 - rho))`` instead of ``sqrt(2)`` standard deviations -- a real arm's
acceleration limits at 20 Hz clamp independent samples (docs/results.md, issue 16).

Evaluation (DESIGN §8) acts with the deterministic action alone: ``pi(s)``, or
``scale * tanh(mu(s)) + bias`` for a stochastic policy.

:class:`BehaviourPolicy` makes the choice; the policy it is given says which kind it is. The
trainer gives it :class:`LearnerPolicy` (the learner's own actor, in torch); an actor node its
:class:`robot_rl.actor.NumpyPolicy` (the exported weights, in numpy). Both sample the Gaussian
from the same draw ``xi`` of the behaviour policy's generator, so with the same seed and the
same weights they choose the same actions (to float32 rounding; tests/unit/test_agents_acting.py).

Warm-up: the trainer counts its env steps against ``agent.warmup_steps``. In the ROS graph the
warm-up is the learner's (it counts the run's policy rows over all robots, and publishes no
policy before its first updates), so an actor warms up exactly while it has no policy
(``warmup=0``).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from robot_rl.agents.exploration import behaviour_action, make_noise


class ActingPolicy(Protocol):
    """What :class:`BehaviourPolicy` needs of a policy."""

    #: True for a Gaussian policy (``sample`` is used), False for a deterministic one
    stochastic: bool

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """The deterministic action (the mean action of a Gaussian policy)."""

    def sample(self, observation: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """``scale * tanh(mu(s) + sigma(s) * xi) + bias`` for a standard normal draw ``xi``."""


class BehaviourPolicy:
    """The action an actor takes (see the module docstring), with its own seeded generators.

    Args:
        agent: the :class:`robot_rl.config.AgentConfig` (noise process and its schedule).
        low, high: the bounds of the policy's action space.
        seed: seeds the exploration noise (``seed``) and the generator of warm-up actions and
            Gaussian draws (``seed + 1``).
        warmup: env steps of uniform actions (the trainer: ``agent.warmup_steps``; an actor
            node: 0, see the module docstring).
    """

    def __init__(self, agent: Any, low: Any, high: Any, *, seed: int, warmup: int) -> None:
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        if self.low.ndim != 1 or self.low.shape != self.high.shape or not np.all(self.low < self.high):
            raise ValueError(f"action bounds: expected two vectors of one size with low < high, "
                             f"got {self.low!r} and {self.high!r}")
        if int(warmup) < 0:
            raise ValueError(f"agent.warmup_steps: expected >= 0, got {warmup}")
        self.act_dim = int(self.low.shape[0])
        self.warmup = int(warmup)
        self.noise = make_noise(agent, self.act_dim, seed=seed)
        self.rng = np.random.Generator(np.random.PCG64(seed + 1))
        self.rho = float(getattr(agent, "sample_correlation", 0.0))
        if not 0.0 <= self.rho < 1.0:
            raise ValueError(f"agent.sample_correlation: expected 0 <= rho < 1, got {self.rho}")
        self._xi: np.ndarray | None = None  # the last draw of this episode (rho > 0)

    def warming_up(self, t: int, policy: ActingPolicy | None) -> bool:
        return policy is None or t < self.warmup

    def __call__(self, observation: np.ndarray, policy: ActingPolicy | None, t: int) -> np.ndarray:
        """The behaviour action (float32, within the bounds) at env step ``t``."""
        if self.warming_up(t, policy):
            return self.rng.uniform(self.low, self.high).astype(np.float32)
        if policy.stochastic:
            xi = self._draw()
            return np.clip(policy.sample(observation, xi), self.low, self.high).astype(np.float32)
        return behaviour_action(policy(observation), self.noise.sample(t), self.low, self.high)

    def _draw(self) -> np.ndarray:
        """The next standard normal draw ``xi_t`` of a stochastic policy (float32)."""
        n = self.rng.standard_normal(self.act_dim)
        if self.rho > 0.0:
            if self._xi is not None:
                n = self.rho * self._xi + np.sqrt(1.0 - self.rho * self.rho) * n
            self._xi = n
        return n.astype(np.float32)

    def reset(self) -> None:
        """Episode start (an Ornstein-Uhlenbeck process restarts at its mean; correlated draws
        of a stochastic policy start afresh)."""
        self.noise.reset()
        self._xi = None

    def state(self) -> dict[str, Any]:
        """The generators' states (JSON), for a checkpoint: ``{"noise": ..., "rng": ...,
        "xi": ...}`` (``xi``: the last correlated draw, or None)."""
        return {"noise": self.noise.state(), "rng": self.rng.bit_generator.state,
                "xi": None if self._xi is None else self._xi.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.noise.set_state(state["noise"])
        self.rng.bit_generator.state = state["rng"]
        xi = state.get("xi")  # (absent from checkpoints written before it existed)
        self._xi = None if xi is None else np.asarray(xi, dtype=np.float64)


class LearnerPolicy:
    """A learner's current actor as an :class:`ActingPolicy` (the in-process trainer's).

    ``__call__`` is ``learner.act(s)``; ``sample(s, xi)`` evaluates the Gaussian actor's
    ``mu(s)`` and ``sigma(s)`` (:meth:`~robot_rl.agents.networks.GaussianActor.dist_params`) on
    the normalised observation and squashes ``mu + sigma * xi`` into the action bounds.
    """

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        self.stochastic = bool(learner.config.stochastic_actor)

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self.learner.act(observation, deterministic=True)

    def sample(self, observation: np.ndarray, xi: np.ndarray) -> np.ndarray:
        import torch

        lrn = self.learner
        with torch.inference_mode():
            obs = torch.as_tensor(np.asarray(observation, dtype=np.float32),
                                  device=lrn.device).reshape(1, -1)
            if obs.shape[1] != lrn.obs_dim:
                raise ValueError(f"observation: expected shape ({lrn.obs_dim},), got "
                                 f"{np.shape(observation)}")
            actor = lrn.actor
            mu, log_std = actor.dist_params(lrn.normalizer(obs))
            u = mu + log_std.exp() * torch.as_tensor(xi, dtype=mu.dtype, device=mu.device)
            a = torch.tanh(u) * actor.action_scale + actor.action_bias
        return a[0].cpu().numpy()
