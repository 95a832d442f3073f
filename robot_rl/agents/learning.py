"""The learner: DDPG, TD3, DDPGfD and SVG(0) updates as pure loss functions plus one ``step()``.

Training loop (the in-process trainer and the learner node run exactly this)::

    learner = Learner(learner_config(cfg.agent), obs_dim, act_dim, seed=cfg.run.seed)
    while training:
        batch = sampler.sample(learner.config.batch_size)
        metrics = learner.step(batch)                     # one gradient update
        if sampler.prioritized:
            sampler.update_priorities(batch.indices, learner.last_priorities, rows=batch.rows)

One ``step`` (the seed's "master algorithm"):

1. critic: targets from the target networks, under ``no_grad`` --
   ``y = r + gamma (1 - terminated) Q'(s', a')`` (``Batch.discount`` already carries
   ``gamma * (1 - terminated)``: no bootstrap through a termination, bootstrap through a
   truncation -- the easy-to-overlook step; the n-step target is the same with
   ``G^(n)`` and ``gamma^m``). ``a' = pi'(s')`` (DDPG), plus clipped Gaussian noise (TD3
   target-policy smoothing), or ``a' ~ pi(.|s')`` (SVG(0)). With twin critics
   ``Q' = min(Q'_1, Q'_2)`` (clipped double-Q). Loss: importance-weighted squared TD errors
   of every critic (+ L2 weight decay).
2. actor, every ``policy_delay`` critic updates (TD3; 1 otherwise): the deterministic policy
   gradient ``grad_theta pi(s) . grad_a Q_1(s, a)|a=pi(s)`` (loss ``-mean Q_1(s, pi(s))``), plus
   DDPGfD's behaviour cloning on demo rows with the Q-filter; SVG(0): the reparameterised
   gradient of ``E[alpha log pi(a|s) - Q(s, a)]``. Only the actor's weights get gradients (the
   critic's weight gradients are never computed in this pass).
3. targets, with the actor update (every ``target_update_period``-th): Polyak
   ``theta' <- tau theta + (1 - tau) theta'`` or a hard copy.

``step`` returns metrics as 0-d tensors (no device sync; ``float()`` them when logging) and
leaves the new replay priorities of the batch in :attr:`Learner.last_priorities`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from robot_rl.agents.config import LearnerConfig
from robot_rl.agents.networks import (
    Actor,
    CriticEnsemble,
    GaussianActor,
    RunningNormalizer,
    actor_weight_matrices,
    resolve_device,
)

# --------------------------------------------------------------------------- pure functions


#: :attr:`Learner.actor_saturation` above this: the trainer's and the learner node's progress
#: lines say so, with :func:`saturation_message`
SATURATION_WARN = 0.9


def saturation_message(saturation: float, agent: Any) -> str:
    """What a saturated actor (see :attr:`Learner.actor_saturation`) usually means."""
    twin = agent.twin_critics if agent.twin_critics is not None else agent.algo == "td3"
    hint = ("the usual remedy is clipped double-Q: agent.twin_critics=true" if not twin else
            "with twin critics already on, try a lower agent.actor_lr or more warm-up steps")
    return (f"warning: the policy is saturated -- {saturation:.0%} of its action components are "
            "within 1 % of their bounds on the last batch. The critic likely over-values the "
            f"edges of the action box and the actor follows it there; {hint} "
            "(docs/results.md, issue 7's 30k runs).")


def td_target(reward: torch.Tensor, discount: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
    """``y = r + d * Q'`` with ``d = gamma^m * (1 - terminated)`` from the batch.

    A terminated row has ``d = 0`` (``y = r``, no bootstrap); a truncated one keeps
    ``d = gamma^m`` (the time limit is not an end of the task: bootstrap through it).
    """
    return reward + discount * next_q


def clipped_target(y: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``clip(y, low, high)``: a TD target kept inside the range the returns can take.

    With rewards in ``[r_min, r_max]`` every discounted return lies in ``[r_min/(1-gamma),
    r_max/(1-gamma)]`` (the n-step target too), so a target outside it is the critic's own
    extrapolation feeding back -- e.g. ``Q > 0`` under the sparse reward (-1 / 0), where a
    bootstrapped overestimate otherwise grows without bound (HER clips its targets so).
    """
    return y.clamp(low, high)


def smoothed_target_action(action: torch.Tensor, noise: torch.Tensor, noise_clip: float,
                           low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """TD3 target-policy smoothing: ``a' = clip(pi'(s') + clip(eps, -c, c), low, high)``."""
    return (action + noise.clamp(-noise_clip, noise_clip)).clamp(low, high)


def min_over_critics(q: torch.Tensor) -> torch.Tensor:
    """Clipped double-Q: ``min_i Q_i`` over the first axis of ``(n, B)`` (identity for n = 1)."""
    return q[0] if q.shape[0] == 1 else q.min(dim=0).values


def critic_td_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``L = sum_i (1/B) sum_b w_b (Q_i(s_b, a_b) - y_b)^2`` over critics i (q is ``(n, B)``).

    ``w`` are the prioritized-replay importance weights (1 for uniform sampling).
    """
    return ((q - target.unsqueeze(0)).pow(2) * weights.unsqueeze(0)).mean(dim=1).sum()


def deterministic_actor_loss(q_pi: torch.Tensor) -> torch.Tensor:
    """DPG: ``L = -(1/B) sum_b Q_1(s_b, pi(s_b))``; its gradient is ``-grad_theta pi . grad_a Q``."""
    return -q_pi.mean()


def bc_loss(pi_action: torch.Tensor, demo_action: torch.Tensor, is_demo: torch.Tensor,
            q_demo: torch.Tensor, q_pi: torch.Tensor, q_filter: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Behaviour cloning with the Q-filter (Nair et al. 2018), over the demo rows of a batch.

    ``L_BC = sum_b m_b f_b ||pi(s_b) - a_b||^2 / max(1, sum_b m_b)`` with ``m_b = 1`` for demo
    rows and ``f_b = 1[Q(s_b, a_b) > Q(s_b, pi(s_b))]`` (``f_b = 1`` without the filter).
    Returns ``(L_BC, fraction of demo rows that passed the filter)``.
    """
    m = is_demo.to(pi_action.dtype)
    f = (q_demo > q_pi).to(pi_action.dtype) if q_filter else torch.ones_like(m)
    mf = m * f
    n_demo = m.sum().clamp_min(1.0)
    loss = (mf * (pi_action - demo_action).pow(2).sum(-1)).sum() / n_demo
    return loss, mf.sum() / n_demo


def l2_penalty(weights: Sequence[torch.Tensor], coef: float) -> torch.Tensor:
    """``lambda * sum_W ||W||_F^2`` (gradient ``2 lambda W``): DDPG/DDPGfD's L2 weight decay."""
    return coef * torch.stack([w.pow(2).sum() for w in weights]).sum()


def svg0_actor_loss(q: torch.Tensor, log_prob: torch.Tensor, alpha: float) -> torch.Tensor:
    """SVG(0): ``L = (1/B) sum_b [alpha log pi(a_b|s_b) - Q(s_b, a_b)]``, ``a_b = f(s_b, eps_b)``
    reparameterised, so ``grad L`` flows through ``grad_a Q``; ``-alpha log pi`` is the entropy
    bonus."""
    return (alpha * log_prob - q).mean()


def ddpgfd_priority(td: torch.Tensor, grad_a_q: torch.Tensor | None, lam: float) -> torch.Tensor:
    """DDPGfD: ``p = delta^2 + lambda3 ||grad_a Q(s, a)|_{a=pi(s)}||^2`` (the sampler adds
    ``eps`` and, for demo rows, ``eps_D``)."""
    p = td.pow(2)
    if grad_a_q is not None and lam > 0:
        p = p + lam * grad_a_q.pow(2).sum(-1)
    return p


@torch.no_grad()
def polyak_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """``theta' <- theta' + tau (theta - theta') = tau theta + (1 - tau) theta'`` (in place)."""
    torch._foreach_lerp_(list(target), list(online), tau)


@torch.no_grad()
def hard_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor]) -> None:
    """``theta' <- theta`` (in place)."""
    torch._foreach_copy_(list(target), list(online))


# --------------------------------------------------------------------------- learner


def _adam(params: list[nn.Parameter], lr: float, device: torch.device) -> torch.optim.Adam:
    # fused Adam: one kernel over all tensors (CPU since torch 2.4, CUDA); foreach otherwise
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - old torch / unsupported device
        return torch.optim.Adam(params, lr=lr, foreach=True)


class Learner:
    """Actor, critic(s), their targets, optimisers and the observation normaliser.

    Args:
        config: resolved settings (:func:`robot_rl.agents.config.learner_config`).
        obs_dim, act_dim: observation and action sizes.
        action_low, action_high: bounds of the policy's action space ([-1, 1] by default).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        seed: seeds the initial weights (without touching torch's global RNG) and the learner's
            own generators (target smoothing noise, SVG sampling, acting).
    """

    def __init__(self, config: LearnerConfig, obs_dim: int, act_dim: int, *,
                 action_low: Any = None, action_high: Any = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        if int(obs_dim) < 1 or int(act_dim) < 1:
            raise ValueError(f"obs_dim/act_dim: expected >= 1, got {obs_dim}/{act_dim}")
        self.config = cfg = config
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = resolve_device(device)
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.normalizer = RunningNormalizer(obs_dim, clip=cfg.obs_clip,
                                                enabled=cfg.obs_normalization)
            actor_cls = GaussianActor if cfg.stochastic_actor else Actor
            self.actor = actor_cls(obs_dim, act_dim, cfg.hidden, normalizer=self.normalizer,
                                   low=action_low, high=action_high)
            self.critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden, n=2 if cfg.twin_critics else 1)
        self.target_critic = CriticEnsemble(obs_dim, act_dim, cfg.hidden, n=self.critic.n)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_actor: nn.Module | None = None
        if not cfg.stochastic_actor:  # SVG(0) samples a' from the current policy (no target)
            self.target_actor = Actor(obs_dim, act_dim, cfg.hidden, low=action_low, high=action_high)
            self.target_actor.net.load_state_dict(self.actor.net.state_dict())
        for m in (self.actor, self.critic, self.target_critic, self.target_actor):
            if m is not None:
                m.to(self.device)
        for m in (self.target_critic, self.target_actor):
            if m is not None:
                m.requires_grad_(False)
        self.actor_params = list(self.actor.net.parameters())
        self.critic_params = list(self.critic.parameters())
        self.actor_opt = _adam(self.actor_params, cfg.actor_lr, self.device)
        self.critic_opt = _adam(self.critic_params, cfg.critic_lr, self.device)
        self._targets = list(self.target_critic.parameters())
        self._onlines = list(self.critic.parameters())
        if self.target_actor is not None:
            self._targets += list(self.target_actor.net.parameters())
            self._onlines += self.actor_params
        self._critic_w = self.critic.weight_matrices()
        self._actor_w = actor_weight_matrices(self.actor)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed + 1)
        self.act_generator = torch.Generator(device=self.device)
        self.act_generator.manual_seed(self.seed + 2)
        #: critic updates done (= calls of step())
        self.num_steps = 0
        #: actor updates done
        self.num_actor_updates = 0
        #: new replay priorities of the last batch (B,), see LearnerConfig.priority_formula
        self.last_priorities: torch.Tensor | None = None
        #: fraction of pi(s)'s action components within 1 % of their bounds on the last actor
        #: update's batch (0-d tensor; None before one): near 1 the actor has run into the box's
        #: edges, the mark of a critic that over-values them (docs/results.md)
        self.actor_saturation: torch.Tensor | None = None
        self._use_1 = cfg.critic_targets in ("1step", "mixed")
        self._use_n = cfg.critic_targets in ("nstep", "mixed")

    # ------------------------------------------------------------------ identity

    def architecture(self) -> dict[str, Any]:
        return self.config.architecture(self.obs_dim, self.act_dim)

    # ------------------------------------------------------------------ acting

    @torch.inference_mode()
    def act(self, observation: Any, deterministic: bool = True) -> Any:
        """Policy action(s) for numpy observation(s) ``(obs_dim,)`` or ``(N, obs_dim)``.

        ``deterministic``: ``pi(s)`` (the mean action of SVG(0)); otherwise SVG(0) samples
        ``a ~ pi(.|s)`` with the learner's acting generator (deterministic actors ignore it: their
        exploration noise is added by :mod:`robot_rl.agents.exploration`).
        """
        import numpy as np

        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device)
        single = obs.ndim == 1
        if single:
            obs = obs.unsqueeze(0)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"observation: expected shape ({self.obs_dim},) or (N, "
                             f"{self.obs_dim}), got {tuple(np.shape(observation))}")
        obs_n = self.normalizer(obs)
        if deterministic or not self.config.stochastic_actor:
            a = self.actor.forward_normalized(obs_n)
        else:
            a, _ = self.actor.sample_normalized(obs_n, self.act_generator)
        out = a.cpu().numpy()
        return out[0] if single else out

    # ------------------------------------------------------------------ update

    @torch.no_grad()
    def _target(self, reward: torch.Tensor, discount: torch.Tensor,
                next_obs_n: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        log_prob = None
        if cfg.stochastic_actor:
            a_next, log_prob = self.actor.sample_normalized(next_obs_n, self.generator)
        else:
            a_next = self.target_actor.forward_normalized(next_obs_n)
            if cfg.target_noise > 0:
                noise = torch.randn(a_next.shape, generator=self.generator, device=a_next.device)
                a_next = smoothed_target_action(a_next, noise * cfg.target_noise,
                                                cfg.target_noise_clip,
                                                self.actor.action_low, self.actor.action_high)
        q_next = min_over_critics(self.target_critic(next_obs_n, a_next))
        if cfg.soft_target:
            q_next = q_next - cfg.entropy_coef * log_prob
        y = td_target(reward, discount, q_next)
        if cfg.target_clip is not None:
            y = clipped_target(y, *cfg.target_clip)
        return y

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One critic update (and actor + target update when due) on ``batch``.

        ``batch``: a :class:`robot_rl.replay.sampler.Batch` (or anything with its fields) on
        :attr:`device`. Returns 0-d metric tensors: ``critic_loss``, ``q_mean``, ``td_abs``,
        ``actor_updated`` and, on actor updates, ``actor_loss`` (+ ``bc_loss``,
        ``q_filter_pass`` with demos in the batch; ``entropy`` for SVG(0)).
        """
        cfg = self.config
        norm = self.normalizer
        if cfg.obs_normalization:
            norm.update(batch.observation)
        with torch.no_grad():
            obs_n = norm(batch.observation)
            y1 = yn = None
            if self._use_1:
                y1 = self._target(batch.reward, batch.discount, norm(batch.next_observation))
            if self._use_n:
                yn = self._target(batch.nstep_return, batch.nstep_discount,
                                  norm(batch.nstep_next_observation))
        weights = batch.weights
        q = self.critic(obs_n, batch.action)
        if cfg.critic_targets == "mixed":
            loss_c = critic_td_loss(q, y1, weights) + cfg.nstep_loss_weight * critic_td_loss(q, yn, weights)
        else:
            loss_c = critic_td_loss(q, y1 if self._use_1 else yn, weights)
        if cfg.critic_l2 > 0:
            loss_c = loss_c + l2_penalty(self._critic_w, cfg.critic_l2)
        self.critic_opt.zero_grad(set_to_none=True)
        loss_c.backward()
        self.critic_opt.step()
        self.num_steps += 1

        q1 = q[0].detach()
        td = (y1 if self._use_1 else yn) - q1
        td_abs = td.abs()
        metrics: dict[str, torch.Tensor] = {"critic_loss": loss_c.detach(), "q_mean": q1.mean(),
                                            "td_abs": td_abs.mean()}
        grad_a_q = None
        updated = self.num_steps % cfg.policy_delay == 0
        if updated:
            if cfg.stochastic_actor:
                metrics.update(self._svg0_actor_step(obs_n))
            else:
                m, grad_a_q = self._dpg_actor_step(obs_n, batch, q1)
                metrics.update(m)
            self.num_actor_updates += 1
            if self.num_actor_updates % cfg.target_update_period == 0:
                if cfg.target_update == "polyak":
                    polyak_update(self._targets, self._onlines, cfg.tau)
                else:
                    hard_update(self._targets, self._onlines)
        metrics["actor_updated"] = torch.tensor(float(updated))
        if cfg.priority_formula == "ddpgfd":
            self.last_priorities = ddpgfd_priority(td, grad_a_q, cfg.priority_actor_lambda)
        else:
            self.last_priorities = td_abs
        return metrics

    def _dpg_actor_step(self, obs_n: torch.Tensor, batch: Any, q_demo: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Deterministic policy gradient (+ BC with Q-filter, + L2); returns ``grad_a Q_1``.

        Two stages with the same result as ``backward()`` of the whole actor loss:
        ``g = grad_a Q_1(s, a)|a=pi(s)`` through the critic (inputs only), then
        ``grad_theta L = J_theta(pi)^T (-g/B + bc_weight * grad_a L_BC)`` through the actor.
        """
        cfg = self.config
        a_pi = self.actor.forward_normalized(obs_n)
        with torch.no_grad():
            unit = (a_pi - self.actor.action_bias) / self.actor.action_scale
            self.actor_saturation = (unit.abs() > 0.99).float().mean()
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
        grads = torch.autograd.grad(surrogate, self.actor_params)
        for p, g in zip(self.actor_params, grads):
            p.grad = g
        self.actor_opt.step()
        metrics["actor_loss"] = loss
        return metrics, grad_a_q

    def _svg0_actor_step(self, obs_n: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        a, log_prob = self.actor.sample_normalized(obs_n, self.generator)
        q_pi = min_over_critics(self.critic(obs_n, a))
        loss = svg0_actor_loss(q_pi, log_prob, cfg.entropy_coef)
        if cfg.actor_l2 > 0:
            loss = loss + l2_penalty(self._actor_w, cfg.actor_l2)
        grads = torch.autograd.grad(loss, self.actor_params)
        for p, g in zip(self.actor_params, grads):
            p.grad = g
        self.actor_opt.step()
        return {"actor_loss": loss.detach(), "entropy": -log_prob.detach().mean()}

    # ------------------------------------------------------------------ state

    def _modules(self) -> dict[str, nn.Module]:
        mods = {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}
        if self.target_actor is not None:
            mods["target_actor"] = self.target_actor.net
        return mods

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the learner's state, CPU, by name (for safetensors)."""
        out: dict[str, torch.Tensor] = {}
        for name, mod in self._modules().items():
            for k, v in mod.state_dict().items():
                out[f"{name}.{k}"] = v
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            for idx, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    out[f"{name}.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        out["rng.update"] = self.generator.get_state()
        out["rng.act"] = self.act_generator.get_state()
        return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}

    def state_meta(self) -> dict[str, Any]:
        """The JSON half of the state: counters, settings, optimiser hyper-parameters."""
        groups = {}
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            groups[name] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
                            for g in opt.state_dict()["param_groups"]]
        return {"architecture": self.architecture(), "config": self.config.to_dict(),
                "num_steps": self.num_steps, "num_actor_updates": self.num_actor_updates,
                "param_groups": groups}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` + :meth:`state_meta` (architecture checked by the caller)."""
        for name, mod in self._modules().items():
            prefix = f"{name}."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            missing = set(mod.state_dict()) - set(sd)
            if missing:
                raise ValueError(f"checkpoint: {name} lacks tensors {sorted(missing)[:5]}")
            mod.load_state_dict(sd, strict=True)
        self.normalizer.sync()
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            prefix = f"{name}."
            state: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in tensors.items():
                if k.startswith(prefix):
                    idx, field = k[len(prefix):].split(".", 1)
                    state.setdefault(int(idx), {})[field] = v.clone()
            groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                      for g in meta["param_groups"][name]]
            opt.load_state_dict({"state": state, "param_groups": groups})
        self.generator.set_state(tensors["rng.update"].clone())
        self.act_generator.set_state(tensors["rng.act"].clone())
        self.num_steps = int(meta["num_steps"])
        self.num_actor_updates = int(meta["num_actor_updates"])
