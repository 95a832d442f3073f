"""What every algorithm family's learner shares: normaliser, acting, optimisers, state.

A family (``robot_rl/agents/<family>/learning.py``) subclasses :class:`LearnerBase` and
provides its networks (:meth:`LearnerBase._build`), its optimisers
(:meth:`LearnerBase._build_optimizers`) and ``step(batch) -> metrics``. The base class does the
rest the same way for all of them:

* the running observation normaliser (updated from each batch's observations in ``step``);
* ``act(observation, deterministic)`` -- ``pi(s)`` or, for stochastic actors, ``a ~ pi(.|s)``
  with the learner's own acting generator;
* the TD targets of a batch by ``critic_targets`` (1-step, n-step or both) through the
  family's ``_target(reward, discount, next_obs_n)``;
* state for checkpoints: every module's ``state_dict`` (``<module>.<name>``), every optimiser's
  moments (``<opt>.<param index>.<field>``), the torch generators (``rng.<name>``) and counters;
  restoring it continues bit for bit.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robot_rl.agents.config import LearnerConfig
from robot_rl.agents.losses import critic_td_loss, hard_update, l2_penalty, polyak_update
from robot_rl.agents.networks import RunningNormalizer, resolve_device


def maybe_compile(fn: Any, enabled: bool) -> Any:
    """``torch.compile(fn)`` when ``enabled`` (``LearnerConfig.compile``), else ``fn`` itself.

    Only pure tensor computations are compiled (forward passes, losses), never a module object:
    the modules, their ``state_dict`` keys (no ``_orig_mod.`` prefix) and the checkpoints stay
    what they are; random draws, optimiser steps and counters stay eager. The shapes are static
    (``dynamic=False``): a batch of another size compiles once more.
    """
    if not enabled:
        return fn
    return torch.compile(fn, dynamic=False)


def adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999)
         ) -> torch.optim.Adam:
    """Adam, fused (one kernel over all tensors: CPU since torch 2.4, CUDA) where available."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - old torch / unsupported device
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


class LearnerBase:
    """Actor, critic(s), their targets, optimisers and the observation normaliser.

    Args:
        config: resolved settings (:func:`robot_rl.agents.config.learner_config`).
        obs_dim, act_dim: observation and action sizes.
        action_low, action_high: bounds of the policy's action space ([-1, 1] by default).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        seed: seeds the initial weights (without touching torch's global RNG) and the learner's
            own generators (``generator``: target smoothing noise, policy samples in updates;
            ``act_generator``: acting).
    """

    #: the generators saved in a checkpoint, by name (``rng.<name>``)
    _GENERATORS = {"update": "generator", "act": "act_generator"}

    def __init__(self, config: LearnerConfig, obs_dim: int, act_dim: int, *,
                 action_low: Any = None, action_high: Any = None,
                 device: str | torch.device = "cpu", seed: int = 0,
                 observation: Any = None) -> None:
        if int(obs_dim) < 1 or int(act_dim) < 1:
            raise ValueError(f"obs_dim/act_dim: expected >= 1, got {obs_dim}/{act_dim}")
        if observation is not None and observation.dim != int(obs_dim):
            raise ValueError(f"observation spec: {observation.dim} elements "
                             f"({', '.join(observation.keys)}), but obs_dim is {obs_dim}")
        #: the observation's named fields (:class:`~robot_rl.specs.ObservationSpec`), part of
        #: the architecture (checkpoint identity) when given
        self.observation = observation
        self.config = cfg = config
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = resolve_device(device)
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.normalizer = RunningNormalizer(obs_dim, clip=cfg.obs_clip,
                                                enabled=cfg.obs_normalization)
            self._build(action_low, action_high)
        for m in self._modules().values():
            m.to(self.device)
        for m in self._frozen():
            m.requires_grad_(False)
        self._build_optimizers()
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
        #: update's batch (0-d tensor; None before one, and for stochastic actors): near 1 the
        #: actor has run into the box's edges, the mark of a critic that over-values them
        self.actor_saturation: torch.Tensor | None = None
        self._use_1 = cfg.critic_targets in ("1step", "mixed")
        self._use_n = cfg.critic_targets in ("nstep", "mixed")

    # ------------------------------------------------------------------ family hooks

    def _build(self, action_low: Any, action_high: Any) -> None:
        """Create ``self.actor`` and the critics (under the learner's seed)."""
        raise NotImplementedError

    def _build_optimizers(self) -> None:
        """The actor's and the critic's Adam (after the modules moved to the device), and the
        weight matrices the L2 penalties read; families with more state extend it."""
        from robot_rl.agents.networks import actor_weight_matrices

        cfg = self.config
        self._betas = (cfg.adam_beta1, 0.999)
        self.actor_params = list(self.actor.net.parameters())
        self.critic_params = list(self.critic.parameters())
        self.actor_opt = adam(self.actor_params, cfg.actor_lr, self._betas)
        self.critic_opt = adam(self.critic_params, cfg.critic_lr, self._betas)
        self._critic_w = self.critic.weight_matrices()
        #: the compiled critic pass (compile on; families compile their actor parts too)
        self._critic_pass_fn = maybe_compile(self._critic_pass_core, cfg.compile)
        self._actor_w = actor_weight_matrices(self.actor)
        #: target parameters and the online ones they follow (:meth:`_update_targets`)
        self._targets: list[torch.Tensor] = []
        self._onlines: list[torch.Tensor] = []

    def _modules(self) -> dict[str, nn.Module]:
        """Every module whose state is saved, by checkpoint name."""
        raise NotImplementedError

    def _frozen(self) -> list[nn.Module]:
        """Modules that never get gradients (target networks)."""
        return []

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_opt": self.actor_opt, "critic_opt": self.critic_opt}

    def _target(self, reward: torch.Tensor, discount: torch.Tensor,
                next_obs_n: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ identity

    def architecture(self) -> dict[str, Any]:
        """What fixes this learner's tensors (compared when a checkpoint loads): the config's
        shapes and, when the learner was given one, the observation spec's field signature and
        hash (a checkpoint of another observation layout is refused, naming the field)."""
        arch = self.config.architecture(self.obs_dim, self.act_dim)
        if self.observation is not None:
            arch.update(observation_architecture(self.observation))
        return arch

    # ------------------------------------------------------------------ acting

    @torch.inference_mode()
    def act(self, observation: Any, deterministic: bool = True) -> Any:
        """Policy action(s) for numpy observation(s) ``(obs_dim,)`` or ``(N, obs_dim)``.

        ``deterministic``: ``pi(s)`` (the mean action of a stochastic actor); otherwise a
        stochastic actor samples ``a ~ pi(.|s)`` with the learner's acting generator
        (deterministic actors ignore it: their exploration noise is added by
        :mod:`robot_rl.agents.exploration`).
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

    # ------------------------------------------------------------------ shared update parts

    def _normalized_targets(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None,
                                                       torch.Tensor | None]:
        """Update the normaliser from the batch; return ``(norm(s), y_1step, y_nstep)`` (the
        targets the config's ``critic_targets`` asks for, else None), all without gradient."""
        norm = self.normalizer
        if self.config.obs_normalization:
            norm.update(batch.observation)
        with torch.no_grad():
            obs_n = norm(batch.observation)
            y1 = yn = None
            if self._use_1:
                y1 = self._target(batch.reward, batch.discount, norm(batch.next_observation))
            if self._use_n:
                yn = self._target(batch.nstep_return, batch.nstep_discount,
                                  norm(batch.nstep_next_observation))
        return obs_n, y1, yn

    def _target_draws(self, next_obs: torch.Tensor) -> tuple[Any, ...]:
        """The random draws of one TD target (compiled updates draw them outside the graph, in
        the order the eager update does); ``_target_core(r, d, s'_n, *draws)`` uses them."""
        raise NotImplementedError

    def _target_core(self, reward: torch.Tensor, discount: torch.Tensor,
                     next_obs_n: torch.Tensor, *draws: Any) -> torch.Tensor:
        raise NotImplementedError

    def _critic_pass(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None,
                                                torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The critic's half of an update up to its loss: ``(norm(s), y_1step, y_nstep, loss,
        Q(s, a))``. Eager (``compile`` off): :meth:`_normalized_targets` then
        :meth:`_critic_forward_loss`, as always. Compiled: the normaliser's update and the random
        draws eagerly, then the targets, the critic's forward and loss as **one** compiled
        function (one call's overhead per update; its backward compiled with it)."""
        if not self.config.compile:
            obs_n, y1, yn = self._normalized_targets(batch)
            loss, q = self._critic_forward_loss(obs_n, batch.action, y1, yn, batch.weights)
            return obs_n, y1, yn, loss, q
        if self.config.obs_normalization:
            self.normalizer.update(batch.observation)
        t1 = tn = d1 = dn = None
        if self._use_1:
            t1 = (batch.reward, batch.discount, batch.next_observation)
            d1 = self._target_draws(batch.next_observation)
        if self._use_n:
            tn = (batch.nstep_return, batch.nstep_discount, batch.nstep_next_observation)
            dn = self._target_draws(batch.nstep_next_observation)
        return self._critic_pass_fn(batch.observation, batch.action, batch.weights, t1, tn, d1, dn)

    def _critic_pass_core(self, obs: torch.Tensor, action: torch.Tensor, weights: torch.Tensor,
                          t1: Any, tn: Any, d1: Any, dn: Any) -> tuple[Any, ...]:
        """What :meth:`_critic_pass` compiles (``t``: reward, discount, s'; ``d``: draws)."""
        norm = self.normalizer
        with torch.no_grad():
            obs_n = norm(obs)
            y1 = None if t1 is None else self._target_core(t1[0], t1[1], norm(t1[2]), *d1)
            yn = None if tn is None else self._target_core(tn[0], tn[1], norm(tn[2]), *dn)
        loss, q = self._critic_forward_loss(obs_n, action, y1, yn, weights)
        return obs_n, y1, yn, loss, q

    def _critic_forward_loss(self, obs_n: torch.Tensor, action: torch.Tensor,
                             y1: torch.Tensor | None, yn: torch.Tensor | None,
                             weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(critic loss, Q(s, a))`` of a batch: the critic's forward and loss (one compiled
        function with ``compile`` on: its backward is compiled with it)."""
        q = self.critic(obs_n, action)
        return self._critic_loss(q, y1, yn, weights), q

    def _critic_loss(self, q: torch.Tensor, y1: torch.Tensor | None, yn: torch.Tensor | None,
                     weights: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.critic_targets == "mixed":
            loss = critic_td_loss(q, y1, weights) + cfg.nstep_loss_weight * critic_td_loss(q, yn, weights)
        else:
            loss = critic_td_loss(q, y1 if self._use_1 else yn, weights)
        if cfg.critic_l2 > 0:
            loss = loss + l2_penalty(self._critic_w, cfg.critic_l2)
        return loss

    def _critic_step(self, loss: torch.Tensor) -> None:
        """One optimiser step of the critic(s) on ``loss``; counts the update."""
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        self.num_steps += 1

    def _update_targets(self) -> None:
        """``target_update``: Polyak ``theta' <- tau theta + (1 - tau) theta'`` or a hard copy."""
        if self.config.target_update == "polyak":
            polyak_update(self._targets, self._onlines, self.config.tau)
        else:
            hard_update(self._targets, self._onlines)

    @staticmethod
    def _apply_grads(params: list[nn.Parameter], grads: tuple[torch.Tensor, ...],
                     opt: torch.optim.Optimizer) -> None:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()

    # ------------------------------------------------------------------ state

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the learner's state, CPU, by name (for safetensors)."""
        out: dict[str, torch.Tensor] = {}
        for name, mod in self._modules().items():
            for k, v in mod.state_dict().items():
                out[f"{name}.{k}"] = v
        for name, opt in self._optimizers().items():
            for idx, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    out[f"{name}.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        for name, attr in self._GENERATORS.items():
            out[f"rng.{name}"] = getattr(self, attr).get_state()
        return {k: v.detach().to("cpu").contiguous().clone() for k, v in out.items()}

    def state_meta(self) -> dict[str, Any]:
        """The JSON half of the state: counters, settings, optimiser hyper-parameters."""
        groups = {}
        for name, opt in self._optimizers().items():
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
        for name, opt in self._optimizers().items():
            prefix = f"{name}."
            state: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in tensors.items():
                if k.startswith(prefix):
                    idx, field = k[len(prefix):].split(".", 1)
                    state.setdefault(int(idx), {})[field] = v.clone()
            if name not in meta["param_groups"]:
                raise ValueError(f"checkpoint: no optimiser settings for {name}")
            groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                      for g in meta["param_groups"][name]]
            opt.load_state_dict({"state": state, "param_groups": groups})
        for name, attr in self._GENERATORS.items():
            getattr(self, attr).set_state(tensors[f"rng.{name}"].clone())
        self.num_steps = int(meta["num_steps"])
        self.num_actor_updates = int(meta["num_actor_updates"])


def observation_architecture(spec: Any) -> dict[str, Any]:
    """The architecture entries of an :class:`~robot_rl.specs.ObservationSpec`: its fields'
    ``key:shape:dtype:role`` signature and its hash."""
    return {"observation": spec.signature(), "observation_hash": spec.hash}
