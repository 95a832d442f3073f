"""DDPG / TD3 / DDPGfD settings (torch-free).

    algo      critics  actor update         target smoothing  extras
    ddpg      1        every update         no                -
    td3       2 (min)  every policy_delay   yes               -
    ddpgfd    1        every update         no                BC + Q-filter on demo rows, mixed
                                                              1-step + n-step losses, DDPGfD
                                                              PER priorities
"""
from __future__ import annotations

from typing import Any

from robot_rl.agents.registry import refuse_unused

#: settings of the stochastic families that this one does not read
_NOT_USED = ("ensemble_size", "target_subset", "actor_q", "critic_norm", "critic_norm_where",
             "critic_hidden",
             "learn_temperature", "init_temperature", "target_entropy", "temperature_lr")


def resolve(agent: Any) -> dict[str, Any]:
    algo = agent.algo
    fd = algo == "ddpgfd"
    refuse_unused(agent, _NOT_USED, "a deterministic actor with twin_critics; see sac")
    if algo != "td3" and agent.policy_delay not in (None, 1):
        raise ValueError(f"agent.policy_delay: algo={algo} updates the actor with every critic "
                         f"update; policy_delay={agent.policy_delay} applies to td3, sac, crossq")
    twin = agent.twin_critics if agent.twin_critics is not None else algo == "td3"
    if agent.critic_targets is not None:
        targets = agent.critic_targets
    else:
        targets = "mixed" if fd and agent.n_step > 1 else "nstep"
    return dict(
        twin_critics=bool(twin),
        stochastic_actor=False,
        policy_delay=(agent.policy_delay or 2) if algo == "td3" else 1,
        target_noise=agent.target_noise if algo == "td3" else 0.0,
        critic_targets=targets,
        bc_weight=agent.bc_weight if agent.bc_weight is not None else (1.0 if fd else 0.0),
        priority_formula="ddpgfd" if fd else "abs_td",
    )


def check(cfg: Any) -> None:
    if cfg.stochastic_actor:
        raise ValueError(f"stochastic_actor: {cfg.algo} trains a deterministic actor")


def architecture(cfg: Any) -> dict[str, Any]:
    return {}
