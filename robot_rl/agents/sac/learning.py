"""SAC with a learned temperature; RLPD's ensemble, LayerNorm and UTD as switches.

One ``step`` (one critic update; the actor and temperature every ``policy_delay``-th)::

    1. critic: y = r + d * (min_{i in M} Q'_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')
       M: target_subset members of the N target critics, drawn anew each update (REDQ);
       loss sum_i mean_b w_b (Q_i(s_b, a_b) - y_b)^2 over all N members (one batched pass)
    2. targets: theta'_i <- tau theta_i + (1 - tau) theta'_i after every critic update
    3. every policy_delay-th update (RLPD: G = utd_ratio, i.e. once per env step):
       actor   L = mean_b [alpha log pi(a_b|s_b) - Q(s_b, a_b)],  Q = min_i or mean_i Q_i
       alpha   J = -mean_b log alpha * (log pi(a_b|s_b) + H_target)   (learn_temperature)
       with bc_weight > 0 the actor also clones the demo rows' actions with its mean action,
       where the critic prefers them (Q-filter): + bc_weight * L_BC (DDPGfD's term)

``d = gamma^m (1 - terminated)`` from the batch: no bootstrap through a termination, bootstrap
through a truncation (the time limit is not the end of the task).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from robot_rl.agents.base import LearnerBase, adam, maybe_compile
from robot_rl.agents.losses import (
    bc_loss,
    clipped_target,
    l2_penalty,
    min_over_critics,
    reduce_ensemble,
    sac_actor_loss,
    soft_value,
    td_target,
    temperature_loss,
)
from robot_rl.agents.networks import BatchedCritic, GaussianActor


class Temperature(nn.Module):
    """The entropy temperature ``alpha = exp(log_alpha)`` as a module (saved like the others)."""

    def __init__(self, init: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init), dtype=torch.float32))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


class SACLearner(LearnerBase):
    """tanh-Gaussian actor, a batched ensemble of N critics + targets, learned temperature."""

    def _build(self, action_low: Any, action_high: Any) -> None:
        cfg, o, a = self.config, self.obs_dim, self.act_dim
        self.actor = GaussianActor(o, a, cfg.hidden, normalizer=self.normalizer, low=action_low,
                                   high=action_high)
        self.critic = self._make_critic()
        self.target_critic = self._make_critic()
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.temperature = Temperature(cfg.init_temperature)
        self.target_entropy = (float(cfg.target_entropy) if cfg.target_entropy is not None
                               else -float(self.act_dim))

    def _make_critic(self) -> BatchedCritic:
        cfg = self.config
        critic = BatchedCritic(self.obs_dim, self.act_dim, cfg.critic_layers, n=cfg.ensemble_size,
                               norm=cfg.critic_norm, where=cfg.critic_norm_where,
                               momentum=cfg.bn_momentum,
                               renorm_warmup=cfg.renorm_warmup)
        critic.compile_form = cfg.compile
        return critic

    def _build_optimizers(self) -> None:
        super()._build_optimizers()
        self.temperature_opt = adam([self.temperature.log_alpha], self.config.temperature_lr,
                                    self._betas)
        if hasattr(self, "target_critic"):
            self._targets = list(self.target_critic.parameters())
            self._onlines = self.critic_params
        # the subset of target members is drawn on the CPU from the update generator's seed
        self._subset_gen = torch.Generator().manual_seed(self.seed + 3)
        # compile on: the actor's loss as one compiled function (its backward compiled with it)
        self._actor_fn = maybe_compile(self._actor_core, self.config.compile)

    _GENERATORS = {"update": "generator", "act": "act_generator", "subset": "_subset_gen"}

    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic,
                "temperature": self.temperature}

    def _frozen(self) -> list[nn.Module]:
        return [self.target_critic]

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_opt": self.actor_opt, "critic_opt": self.critic_opt,
                "temperature_opt": self.temperature_opt}

    @property
    def alpha(self) -> torch.Tensor:
        """The current temperature (0-d, no gradient)."""
        return self.temperature().detach()

    def _members(self) -> torch.Tensor | None:
        """The target's member subset for this update (None: all N, no draw)."""
        cfg = self.config
        if cfg.target_subset >= cfg.ensemble_size:
            return None
        idx = torch.randperm(cfg.ensemble_size, generator=self._subset_gen)[: cfg.target_subset]
        return idx.to(self.device)

    @torch.no_grad()
    def _target(self, reward: torch.Tensor, discount: torch.Tensor,
                next_obs_n: torch.Tensor) -> torch.Tensor:
        return self._target_core(reward, discount, next_obs_n, *self._target_draws(next_obs_n))

    def _target_draws(self, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The policy's draws for a' (update generator) and the member subset (its own)."""
        return self.actor.draw_eps(next_obs, self.generator), self._members()

    def _target_core(self, reward: torch.Tensor, discount: torch.Tensor,
                     next_obs_n: torch.Tensor, eps: torch.Tensor,
                     members: torch.Tensor | None) -> torch.Tensor:
        """The TD target given the policy's draws and the member subset (compiled as one graph)."""
        cfg = self.config
        a_next, log_prob = self.actor.sample_normalized(next_obs_n, eps=eps)
        q_next = self.target_critic(next_obs_n, a_next, members)  # only the subset's members
        v_next = soft_value(min_over_critics(q_next), log_prob, self.alpha)
        y = td_target(reward, discount, v_next)
        if cfg.target_clip is not None:
            y = clipped_target(y, *cfg.target_clip)
        return y

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One critic update + target update, and the actor + temperature update when due.

        Returns 0-d metric tensors: ``critic_loss``, ``q_mean``, ``q_std`` (across members),
        ``td_abs``, ``alpha``, ``actor_updated`` and, on actor updates, ``actor_loss``,
        ``entropy`` (``-mean log pi``), ``temperature_loss``.
        """
        cfg = self.config
        obs_n, y1, yn, loss_c, q = self._critic_pass(batch)
        self._critic_step(loss_c)
        if self.num_steps % cfg.target_update_period == 0:
            self._update_targets()
        qd = q.detach()
        q_mean = qd.mean(dim=0)
        td_abs = ((y1 if self._use_1 else yn) - q_mean).abs()
        metrics: dict[str, torch.Tensor] = {
            "critic_loss": loss_c.detach(), "q_mean": q_mean.mean(), "td_abs": td_abs.mean(),
            "q_std": qd.std(dim=0).mean() if qd.shape[0] > 1 else torch.zeros(())}
        updated = self.num_steps % cfg.policy_delay == 0
        if updated:
            metrics.update(self._actor_step(obs_n, batch, q_mean))
            self.num_actor_updates += 1
        metrics["alpha"] = self.alpha
        metrics["actor_updated"] = torch.tensor(float(updated))
        self.last_priorities = td_abs
        return metrics

    def _actor_step(self, obs_n: torch.Tensor, batch: Any = None,
                    q_data: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The reparameterised actor update on the ensemble's value (+ behaviour cloning of the
        demo rows' actions by the mean action, with the Q-filter, when ``bc_weight`` > 0), then
        the temperature's."""
        cfg = self.config
        loss, log_prob, q_pi = self._actor_fn(obs_n, self.actor.draw_eps(obs_n, self.generator))
        out: dict[str, torch.Tensor] = {}
        if cfg.bc_weight > 0 and batch is not None:
            l_bc, passed = bc_loss(self.actor.forward_normalized(obs_n), batch.action,
                                   batch.is_demo, q_data, q_pi.detach(), cfg.q_filter)
            loss = loss + cfg.bc_weight * l_bc
            out.update({"bc_loss": l_bc.detach(), "q_filter_pass": passed})
        if cfg.actor_l2 > 0:
            loss = loss + l2_penalty(self._actor_w, cfg.actor_l2)
        self._apply_grads(self.actor_params, torch.autograd.grad(loss, self.actor_params),
                          self.actor_opt)
        out.update({"actor_loss": loss.detach(), "entropy": -log_prob.detach().mean()})
        if cfg.learn_temperature:
            t_loss = temperature_loss(self.temperature.log_alpha, log_prob, self.target_entropy)
            self._apply_grads([self.temperature.log_alpha],
                              torch.autograd.grad(t_loss, [self.temperature.log_alpha]),
                              self.temperature_opt)
            out["temperature_loss"] = t_loss.detach()
        return out

    def _actor_core(self, obs_n: torch.Tensor, eps: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(actor loss, log pi(a|s), Q(s, a))`` for ``a`` from the draws ``eps``. Compiled, the
        critic's weights are detached (the compiled backward would compute their gradients;
        eager ``autograd.grad`` skips them anyway, and eager stays as it was, bit for bit)."""
        a, log_prob = self.actor.sample_normalized(obs_n, eps=eps)
        q = self.critic(obs_n, a, frozen=True) if self.config.compile else self.critic(obs_n, a)
        q_pi = reduce_ensemble(q, self.config.actor_q)
        return sac_actor_loss(q_pi, log_prob, self.alpha), log_prob, q_pi


LEARNER = SACLearner
