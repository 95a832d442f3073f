"""CrossQ settings (torch-free)."""
from __future__ import annotations

from typing import Any

from robot_rl.agents.registry import refuse_unused
from robot_rl.agents.sac.config import resolve_ensemble

_NOT_USED = ("svg_entropy_coef", "svg_soft_target", "twin_critics", "tau", "target_update",
             "target_update_period")


def resolve(agent: Any) -> dict[str, Any]:
    refuse_unused(agent, _NOT_USED, "crossq has no target networks; its ensemble is "
                                    "ensemble_size")
    if agent.critic_targets == "mixed":
        raise ValueError("agent.critic_targets: crossq's joint forward pass takes one kind of "
                         "target (1step or nstep), not mixed")
    return resolve_ensemble(agent, norm_default="batch_renorm", delay_default=3,
                            beta1_default=0.5)


def check(cfg: Any) -> None:
    if not cfg.stochastic_actor:
        raise ValueError("stochastic_actor: crossq trains a stochastic actor")
    if cfg.critic_targets == "mixed":
        raise ValueError("critic_targets: crossq takes 1step or nstep targets, not mixed")


def architecture(cfg: Any) -> dict[str, Any]:
    from robot_rl.agents.sac.config import architecture as ensemble_architecture

    return ensemble_architecture(cfg)
