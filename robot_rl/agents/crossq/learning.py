"""CrossQ: SAC without target networks, BatchNorm critics, one joint forward pass.

One ``step``::

    a' ~ pi(.|s')                                    (no gradient)
    [Q(s, a); Q(s', a')] = critic([s; s'], [a; a'])  one pass in training mode: the batch
                                                     statistics cover both halves
    y = r + d * (min_{i in M} Q_i(s', a') - alpha log pi(a'|s'))     (no gradient)
    L = sum_i mean_b w_b (Q_i(s_b, a_b) - y_b)^2
    every policy_delay-th update: the actor on the critic in eval mode (running statistics),
    L = mean_b [alpha log pi(a_b|s_b) - Q(s_b, a_b)], and the temperature as SAC's.

The n-step variant bootstraps from ``nstep_next_observation`` with ``nstep_discount``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robot_rl.agents.losses import (
    clipped_target,
    critic_td_loss,
    l2_penalty,
    min_over_critics,
    soft_value,
    subset_min,
    td_target,
)
from robot_rl.agents.sac.learning import SACLearner


def joint_pass(critic: nn.Module, obs_n: torch.Tensor, action: torch.Tensor,
               next_obs_n: torch.Tensor, next_action: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """CrossQ's joint forward pass: ``critic([s; s'], [a; a'])`` split into ``(Q(s, a),
    Q(s', a'))``, each ``(N, B)``; the second half carries no gradient."""
    b = obs_n.shape[0]
    q = critic(torch.cat([obs_n, next_obs_n]), torch.cat([action, next_action]))
    return q[:, :b], q[:, b:].detach()


class CrossQLearner(SACLearner):
    """SAC's actor and temperature; critics with batch (re)normalisation and no targets."""

    def _build(self, action_low: Any, action_high: Any) -> None:
        super()._build(action_low, action_high)
        del self.target_critic  # no target networks

    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "temperature": self.temperature}

    def _frozen(self) -> list[nn.Module]:
        return []

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One joint-pass critic update, and the actor + temperature update when due.

        Metrics as :meth:`SACLearner.step` (0-d tensors)."""
        cfg = self.config
        norm = self.normalizer
        if cfg.obs_normalization:
            norm.update(batch.observation)
        if self._use_1:
            reward, discount, nxt = batch.reward, batch.discount, batch.next_observation
        else:
            reward, discount, nxt = batch.nstep_return, batch.nstep_discount, batch.nstep_next_observation
        with torch.no_grad():
            obs_n, next_n = norm(batch.observation), norm(nxt)
            a_next, log_prob_next = self.actor.sample_normalized(next_n, self.generator)
        self.critic.train()
        q, q_next = joint_pass(self.critic, obs_n, batch.action, next_n, a_next)
        with torch.no_grad():
            members = self._members()
            v_next = (min_over_critics(q_next) if members is None
                      else subset_min(q_next, members))
            y = td_target(reward, discount, soft_value(v_next, log_prob_next, self.alpha))
            if cfg.target_clip is not None:
                y = clipped_target(y, *cfg.target_clip)
        loss_c = critic_td_loss(q, y, batch.weights)
        if cfg.critic_l2 > 0:
            loss_c = loss_c + l2_penalty(self._critic_w, cfg.critic_l2)
        self._critic_step(loss_c)
        qd = q.detach()
        q_mean = qd.mean(dim=0)
        td_abs = (y - q_mean).abs()
        metrics: dict[str, torch.Tensor] = {
            "critic_loss": loss_c.detach(), "q_mean": q_mean.mean(), "td_abs": td_abs.mean(),
            "q_std": qd.std(dim=0).mean() if qd.shape[0] > 1 else torch.zeros(())}
        updated = self.num_steps % cfg.policy_delay == 0
        if updated:
            self.critic.eval()
            try:
                metrics.update(self._actor_step(obs_n, batch, q_mean))
            finally:
                self.critic.train()
            self.num_actor_updates += 1
        metrics["alpha"] = self.alpha
        metrics["actor_updated"] = torch.tensor(float(updated))
        self.last_priorities = td_abs
        return metrics


LEARNER = CrossQLearner
