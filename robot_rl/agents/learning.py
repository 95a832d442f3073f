"""The learner's public face: :func:`Learner` builds the algorithm's learner; the losses.

What one update is (the in-process trainer and the learner node both drive it through
:class:`robot_rl.agents.loop.TrainingLoop`, which adds the pacing and the cadences)::

    learner = Learner(learner_config(cfg.agent), obs_dim, act_dim, seed=cfg.run.seed)
    while training:
        batch = sampler.sample(learner.config.batch_size)
        metrics = learner.step(batch)                     # one gradient update
        if sampler.prioritized:
            sampler.update_priorities(batch.indices, learner.last_priorities, rows=batch.rows)

Each algorithm family is a package with its config, learner and ``step()``
(:mod:`robot_rl.agents.registry`): ``dpg`` (DDPG, TD3, DDPGfD), ``svg`` (SVG(0)), ``sac`` (SAC
with a learned temperature and the RLPD recipe), ``crossq`` (CrossQ). They share
:class:`robot_rl.agents.base.LearnerBase` (normaliser, acting, optimisers, checkpoint state) and
the pure losses of :mod:`robot_rl.agents.losses`, re-exported here.
"""
from __future__ import annotations

from typing import Any

from robot_rl.agents.base import LearnerBase
from robot_rl.agents.losses import (  # noqa: F401 - the losses' historical import path
    bc_loss,
    clipped_target,
    critic_td_loss,
    ddpgfd_priority,
    deterministic_actor_loss,
    hard_update,
    l2_penalty,
    min_over_critics,
    polyak_update,
    reduce_ensemble,
    sac_actor_loss,
    smoothed_target_action,
    soft_value,
    subset_min,
    svg0_actor_loss,
    td_target,
    temperature_loss,
)
from robot_rl.agents.registry import make_learner

#: :attr:`LearnerBase.actor_saturation` above this: the trainer's and the learner node's progress
#: lines say so, with :func:`saturation_message`
SATURATION_WARN = 0.9


def saturation_message(saturation: float, agent: Any) -> str:
    """What a saturated actor (see :attr:`LearnerBase.actor_saturation`) usually means."""
    twin = agent.twin_critics if agent.twin_critics is not None else agent.algo == "td3"
    hint = ("the usual remedy is clipped double-Q: agent.twin_critics=true" if not twin else
            "with twin critics already on, try a lower agent.actor_lr or more warm-up steps")
    return (f"warning: the policy is saturated -- {saturation:.0%} of its action components are "
            "within 1 % of their bounds on the last batch. The critic likely over-values the "
            f"edges of the action box and the actor follows it there; {hint} "
            "(docs/results.md, issue 7's 30k runs).")


def Learner(config: Any, obs_dim: int, act_dim: int, **kwargs: Any) -> LearnerBase:  # noqa: N802
    """The learner of ``config.algo`` (:func:`robot_rl.agents.registry.make_learner`); keyword
    arguments ``action_low``, ``action_high``, ``device``, ``seed``."""
    return make_learner(config, obs_dim, act_dim, **kwargs)
