"""SAC / RLPD settings (torch-free)."""
from __future__ import annotations

from typing import Any

from robot_rl.agents.registry import refuse_unused

_NOT_USED = ("svg_entropy_coef", "svg_soft_target", "twin_critics")


def resolve_ensemble(agent: Any, *, norm_default: str, delay_default: int,
                     beta1_default: float) -> dict[str, Any]:
    """The settings the ensemble families (sac, crossq) share."""
    n = agent.ensemble_size or 2
    m = agent.target_subset or min(2, n)
    if m > n:
        raise ValueError(f"agent.target_subset: {m} members of an ensemble of {n} "
                         "(agent.ensemble_size); expected target_subset <= ensemble_size")
    actor_q = agent.actor_q if agent.actor_q != "auto" else ("mean" if n > 2 else "min")
    return dict(
        twin_critics=n == 2,
        stochastic_actor=True,
        ensemble_size=n,
        target_subset=m,
        actor_q=actor_q,
        critic_norm=agent.critic_norm or norm_default,
        critic_norm_where=agent.critic_norm_where,
        bn_momentum=agent.bn_momentum,
        renorm_warmup=agent.renorm_warmup,
        policy_delay=agent.policy_delay or delay_default,
        adam_beta1=agent.adam_beta1 if agent.adam_beta1 is not None else beta1_default,
        learn_temperature=agent.learn_temperature,
        init_temperature=agent.init_temperature,
        target_entropy=None if agent.target_entropy == "auto" else float(agent.target_entropy),
        temperature_lr=agent.temperature_lr or agent.actor_lr,
        soft_target=True,
        bc_weight=agent.bc_weight or 0.0,
        target_noise=0.0,
        priority_formula="abs_td",
    )


def resolve(agent: Any) -> dict[str, Any]:
    refuse_unused(agent, _NOT_USED, "sac sets its ensemble with ensemble_size and learns alpha")
    return resolve_ensemble(agent, norm_default="none", delay_default=1, beta1_default=0.9)


def check(cfg: Any) -> None:
    if not cfg.stochastic_actor:
        raise ValueError(f"stochastic_actor: {cfg.algo} trains a stochastic actor")


def architecture(cfg: Any) -> dict[str, Any]:
    """Ensemble size, critic layers and normalisation fix the critic's tensors."""
    arch = {"ensemble_size": cfg.ensemble_size, "critic_hidden": list(cfg.critic_layers),
            "critic_norm": cfg.critic_norm}
    if cfg.critic_norm_where != "auto":
        arch["critic_norm_where"] = cfg.critic_norm_where
    return arch
