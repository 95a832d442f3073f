"""SVG(0): a reparameterised tanh-Gaussian actor against one (or twin) critics with targets.

1. critic: ``y = r + d min_i Q'_i(s', a')``, ``a' ~ pi(.|s')`` from the *current* policy (no
   target actor); with ``soft_target`` ``- alpha log pi(a'|s')`` is subtracted (SAC's backup
   with a fixed alpha). Loss: importance-weighted squared TD errors of every critic.
2. actor, every update: the reparameterised gradient of
   ``E[alpha log pi(a|s) - min_i Q_i(s, a)]``, ``a = tanh(mu + sigma eps)``.
3. targets: the critics' Polyak / hard update, with the actor update.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robot_rl.agents.base import LearnerBase
from robot_rl.agents.losses import (
    clipped_target,
    l2_penalty,
    min_over_critics,
    svg0_actor_loss,
    td_target,
)
from robot_rl.agents.networks import CriticEnsemble, GaussianActor


class SVG0Learner(LearnerBase):
    """Gaussian actor, one or two plain critics + their targets, fixed entropy weight."""

    def _build(self, action_low: Any, action_high: Any) -> None:
        cfg, o, a = self.config, self.obs_dim, self.act_dim
        self.actor = GaussianActor(o, a, cfg.hidden, normalizer=self.normalizer, low=action_low,
                                   high=action_high)
        self.critic = CriticEnsemble(o, a, cfg.hidden, n=2 if cfg.twin_critics else 1)
        self.target_critic = CriticEnsemble(o, a, cfg.hidden, n=self.critic.n)
        self.target_critic.load_state_dict(self.critic.state_dict())

    def _build_optimizers(self) -> None:
        super()._build_optimizers()
        self._targets = list(self.target_critic.parameters())
        self._onlines = list(self.critic.parameters())

    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}

    def _frozen(self) -> list[nn.Module]:
        return [self.target_critic]

    @torch.no_grad()
    def _target(self, reward: torch.Tensor, discount: torch.Tensor,
                next_obs_n: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        a_next, log_prob = self.actor.sample_normalized(next_obs_n, self.generator)
        q_next = min_over_critics(self.target_critic(next_obs_n, a_next))
        if cfg.soft_target:
            q_next = q_next - cfg.entropy_coef * log_prob
        y = td_target(reward, discount, q_next)
        if cfg.target_clip is not None:
            y = clipped_target(y, *cfg.target_clip)
        return y

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One critic, actor and target update on ``batch``; metrics as 0-d tensors
        (``critic_loss``, ``q_mean``, ``td_abs``, ``actor_loss``, ``entropy``,
        ``actor_updated``)."""
        cfg = self.config
        obs_n, y1, yn = self._normalized_targets(batch)
        q = self.critic(obs_n, batch.action)
        loss_c = self._critic_loss(q, y1, yn, batch.weights)
        self._critic_step(loss_c)
        q1 = q[0].detach()
        td_abs = ((y1 if self._use_1 else yn) - q1).abs()
        metrics: dict[str, torch.Tensor] = {"critic_loss": loss_c.detach(), "q_mean": q1.mean(),
                                            "td_abs": td_abs.mean()}
        a, log_prob = self.actor.sample_normalized(obs_n, self.generator)
        loss = svg0_actor_loss(min_over_critics(self.critic(obs_n, a)), log_prob, cfg.entropy_coef)
        if cfg.actor_l2 > 0:
            loss = loss + l2_penalty(self._actor_w, cfg.actor_l2)
        self._apply_grads(self.actor_params, torch.autograd.grad(loss, self.actor_params),
                          self.actor_opt)
        metrics.update({"actor_loss": loss.detach(), "entropy": -log_prob.detach().mean()})
        self.num_actor_updates += 1
        if self.num_actor_updates % cfg.target_update_period == 0:
            self._update_targets()
        metrics["actor_updated"] = torch.tensor(1.0)
        self.last_priorities = td_abs
        return metrics


LEARNER = SVG0Learner
