"""Acting: the behaviour policy of the in-process trainer and of every actor node, in one place.

What an actor does at env step ``t`` with observation ``s``::

    warming up (t < warmup, or no policy yet)  ->  a ~ U(low, high)
    deterministic policy (ddpg, td3, ddpgfd)    ->  a = clip(pi(s) + eps_t, low, high)
                                                    eps_t from the configured noise process
    stochastic policy (svg0, sac, crossq)       ->  a = clip(scale * tanh(mu(s) + sigma(s) * xi)
                                                    + bias, low, high),  xi ~ N(0, I)
                                                    (its own sample: no extra noise)

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

    def warming_up(self, t: int, policy: ActingPolicy | None) -> bool:
        return policy is None or t < self.warmup

    def __call__(self, observation: np.ndarray, policy: ActingPolicy | None, t: int) -> np.ndarray:
        """The behaviour action (float32, within the bounds) at env step ``t``."""
        if self.warming_up(t, policy):
            return self.rng.uniform(self.low, self.high).astype(np.float32)
        if policy.stochastic:
            xi = self.rng.standard_normal(self.act_dim).astype(np.float32)
            return np.clip(policy.sample(observation, xi), self.low, self.high).astype(np.float32)
        return behaviour_action(policy(observation), self.noise.sample(t), self.low, self.high)

    def reset(self) -> None:
        """Episode start (an Ornstein-Uhlenbeck process restarts at its mean)."""
        self.noise.reset()

    def state(self) -> dict[str, Any]:
        """The generators' states (JSON), for a checkpoint: ``{"noise": ..., "rng": ...}``."""
        return {"noise": self.noise.state(), "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.noise.set_state(state["noise"])
        self.rng.bit_generator.state = state["rng"]


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
