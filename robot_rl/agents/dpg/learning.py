"""DDPG, TD3 and DDPGfD: the deterministic policy gradient learner.

One ``step`` (the seed's "master algorithm")::

    learner = DPGLearner(learner_config(cfg.agent), obs_dim, act_dim, seed=cfg.run.seed)
    while training:
        batch = sampler.sample(learner.config.batch_size)
        metrics = learner.step(batch)                     # one gradient update

1. critic: targets from the target networks, under ``no_grad`` --
   ``y = r + gamma (1 - terminated) Q'(s', a')`` (``Batch.discount`` already carries
   ``gamma * (1 - terminated)``: no bootstrap through a termination, bootstrap through a
   truncation -- the easy-to-overlook step; the n-step target is the same with
   ``G^(n)`` and ``gamma^m``). ``a' = pi'(s')`` (DDPG), plus clipped Gaussian noise (TD3
   target-policy smoothing). With twin critics ``Q' = min(Q'_1, Q'_2)`` (clipped double-Q).
   Loss: importance-weighted squared TD errors of every critic (+ L2 weight decay).
2. actor, every ``policy_delay`` critic updates (TD3; 1 otherwise): the deterministic policy
   gradient ``grad_theta pi(s) . grad_a Q_1(s, a)|a=pi(s)`` (loss ``-mean Q_1(s, pi(s))``), plus
   DDPGfD's behaviour cloning on demo rows with the Q-filter. Only the actor's weights get
   gradients (the critic's weight gradients are never computed in this pass).
3. targets, with the actor update (every ``target_update_period``-th): Polyak
   ``theta' <- tau theta + (1 - tau) theta'`` or a hard copy.

``step`` returns metrics as 0-d tensors (no device sync; ``float()`` them when logging) and
leaves the new replay priorities of the batch in ``last_priorities``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robot_rl.agents.base import LearnerBase, maybe_compile
from robot_rl.agents.losses import (
    bc_loss,
    clipped_target,
    ddpgfd_priority,
    deterministic_actor_loss,
    l2_penalty,
    min_over_critics,
    smoothed_target_action,
    td_target,
)
from robot_rl.agents.networks import Actor, CriticEnsemble


class DPGLearner(LearnerBase):
    """Deterministic actor + target actor, one or two plain critics + targets."""

    def _build(self, action_low: Any, action_high: Any) -> None:
        cfg, o, a = self.config, self.obs_dim, self.act_dim
        self.actor = Actor(o, a, cfg.hidden, normalizer=self.normalizer, low=action_low,
                           high=action_high)
        self.critic = CriticEnsemble(o, a, cfg.hidden, n=2 if cfg.twin_critics else 1)
        self.target_critic = CriticEnsemble(o, a, cfg.hidden, n=self.critic.n)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.critic.compile_form = self.target_critic.compile_form = cfg.compile
        self.target_actor = Actor(o, a, cfg.hidden, low=action_low, high=action_high)
        self.target_actor.net.load_state_dict(self.actor.net.state_dict())

    def _build_optimizers(self) -> None:
        super()._build_optimizers()
        self._targets = list(self.target_critic.parameters()) + list(self.target_actor.net.parameters())
        self._onlines = list(self.critic.parameters()) + self.actor_params
        # compile on: pi(s), Q_1(s, pi(s)) and grad_a Q_1 as one compiled function
        self._actor_fn = maybe_compile(self._actor_core, self.config.compile)

    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic,
                "target_actor": self.target_actor.net}

    def _frozen(self) -> list[nn.Module]:
        return [self.target_critic, self.target_actor]

    @torch.no_grad()
    def _target(self, reward: torch.Tensor, discount: torch.Tensor,
                next_obs_n: torch.Tensor) -> torch.Tensor:
        return self._target_core(reward, discount, next_obs_n, *self._target_draws(next_obs_n))

    def _target_draws(self, next_obs: torch.Tensor) -> tuple[torch.Tensor | None]:
        """TD3's smoothing noise ``(B, act_dim)``, the shape of a' (the same draws as before)."""
        if self.config.target_noise > 0:
            return (torch.randn((next_obs.shape[0], self.act_dim), generator=self.generator,
                                device=next_obs.device),)
        return (None,)

    def _target_core(self, reward: torch.Tensor, discount: torch.Tensor,
                     next_obs_n: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """The TD target given the smoothing noise (no random draws: compiled as one graph)."""
        cfg = self.config
        a_next = self.target_actor.forward_normalized(next_obs_n)
        if noise is not None:
            a_next = smoothed_target_action(a_next, noise * cfg.target_noise,
                                            cfg.target_noise_clip,
                                            self.actor.action_low, self.actor.action_high)
        y = td_target(reward, discount, min_over_critics(self.target_critic(next_obs_n, a_next)))
        if cfg.target_clip is not None:
            y = clipped_target(y, *cfg.target_clip)
        return y

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One critic update (and actor + target update when due) on ``batch``.

        ``batch``: a :class:`robot_rl.replay.sampler.Batch` (or anything with its fields) on
        :attr:`device`. Returns 0-d metric tensors: ``critic_loss``, ``q_mean``, ``td_abs``,
        ``actor_updated`` and, on actor updates, ``actor_loss`` (+ ``bc_loss``,
        ``q_filter_pass`` with BC on).
        """
        cfg = self.config
        obs_n, y1, yn, loss_c, q = self._critic_pass(batch)
        self._critic_step(loss_c)

        q1 = q[0].detach()
        td = (y1 if self._use_1 else yn) - q1
        td_abs = td.abs()
        metrics: dict[str, torch.Tensor] = {"critic_loss": loss_c.detach(), "q_mean": q1.mean(),
                                            "td_abs": td_abs.mean()}
        grad_a_q = None
        updated = self.num_steps % cfg.policy_delay == 0
        if updated:
            m, grad_a_q = self._actor_step(obs_n, batch, q1)
            metrics.update(m)
            self.num_actor_updates += 1
            if self.num_actor_updates % cfg.target_update_period == 0:
                self._update_targets()
        metrics["actor_updated"] = torch.tensor(float(updated))
        if cfg.priority_formula == "ddpgfd":
            self.last_priorities = ddpgfd_priority(td, grad_a_q, cfg.priority_actor_lambda)
        else:
            self.last_priorities = td_abs
        return metrics

    def _actor_step(self, obs_n: torch.Tensor, batch: Any, q_demo: torch.Tensor
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Deterministic policy gradient (+ BC with Q-filter, + L2); returns ``grad_a Q_1``.

        Two stages with the same result as ``backward()`` of the whole actor loss:
        ``g = grad_a Q_1(s, a)|a=pi(s)`` through the critic (inputs only), then
        ``grad_theta L = J_theta(pi)^T (-g/B + bc_weight * grad_a L_BC)`` through the actor.
        """
        cfg = self.config
        if cfg.compile:
            a_pi, q_pi, grad_a_q = self._actor_fn(obs_n)
        else:
            a_pi = self.actor.forward_normalized(obs_n)
        with torch.no_grad():
            unit = (a_pi - self.actor.action_bias) / self.actor.action_scale
            self.actor_saturation = (unit.abs() > 0.99).float().mean()
        if not cfg.compile:
            q_pi = self.critic.q1(obs_n, a_pi)
            (grad_a_q,) = torch.autograd.grad(q_pi.sum(), a_pi, retain_graph=False)
        loss = deterministic_actor_loss(q_pi.detach())
        g_a = grad_a_q * (-1.0 / a_pi.shape[0])
        metrics: dict[str, torch.Tensor] = {"actor_saturation": self.actor_saturation}
        if cfg.bc_weight > 0:
            a_leaf = a_pi.detach().requires_grad_(True)
            with torch.enable_grad():
                l_bc, passed = bc_loss(a_leaf, batch.action, batch.is_demo, q_demo,
                                       q_pi.detach(), cfg.q_filter)
                (g_bc,) = torch.autograd.grad(cfg.bc_weight * l_bc, a_leaf)
            g_a = g_a + g_bc
            loss = loss + cfg.bc_weight * l_bc.detach()
            metrics["bc_loss"] = l_bc.detach()
            metrics["q_filter_pass"] = passed
        surrogate = (a_pi * g_a).sum()
        if cfg.actor_l2 > 0:
            l2 = l2_penalty(self._actor_w, cfg.actor_l2)
            surrogate = surrogate + l2
            loss = loss + l2.detach()
        self._apply_grads(self.actor_params, torch.autograd.grad(surrogate, self.actor_params),
                          self.actor_opt)
        metrics["actor_loss"] = loss
        return metrics, grad_a_q

    def _actor_core(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pi(s), Q_1(s, pi(s)), grad_a Q_1)``, the critic's part without a tape
        (:meth:`CriticEnsemble.q1_and_action_grad`); compiled with ``compile``."""
        a_pi = self.actor.forward_normalized(obs_n)
        q_pi, grad_a_q = self.critic.q1_and_action_grad(obs_n, a_pi.detach())
        return a_pi, q_pi, grad_a_q


LEARNER = DPGLearner
