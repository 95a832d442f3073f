"""SVG(0) settings (torch-free): one (or twin) plain critics with a target, fixed alpha."""
from __future__ import annotations

from typing import Any

from robot_rl.agents.registry import refuse_unused

_NOT_USED = ("ensemble_size", "target_subset", "actor_q", "critic_norm", "critic_norm_where",
             "critic_hidden",
             "learn_temperature", "init_temperature", "target_entropy", "temperature_lr")


def resolve(agent: Any) -> dict[str, Any]:
    refuse_unused(agent, _NOT_USED, "svg0 keeps svg_entropy_coef fixed; algo=sac learns it")
    if agent.policy_delay not in (None, 1):
        raise ValueError(f"agent.policy_delay: algo=svg0 updates the actor with every critic "
                         f"update; policy_delay={agent.policy_delay} applies to td3, sac, crossq")
    if agent.bc_weight:
        raise ValueError("agent.bc_weight: behaviour cloning is part of ddpgfd (algo=ddpgfd); "
                         "svg0 does not use it")
    return dict(
        twin_critics=bool(agent.twin_critics) if agent.twin_critics is not None else False,
        stochastic_actor=True,
        policy_delay=1,
        target_noise=0.0,
        entropy_coef=agent.svg_entropy_coef,
        soft_target=agent.svg_soft_target,
        priority_formula="abs_td",
    )


def check(cfg: Any) -> None:
    if not cfg.stochastic_actor:
        raise ValueError("stochastic_actor: svg0 trains a stochastic actor")


def architecture(cfg: Any) -> dict[str, Any]:
    return {}
