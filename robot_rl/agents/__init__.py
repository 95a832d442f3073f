"""Off-policy actor-critic agents: DDPG, TD3, DDPGfD and SVG(0) (ROS-free).

* :mod:`robot_rl.agents.config` -- :class:`LearnerConfig`, resolved from ``AgentConfig``.
* :mod:`robot_rl.agents.networks` -- actors, critics, observation normaliser, device choice.
* :mod:`robot_rl.agents.learning` -- pure loss functions and :class:`Learner` (``step(batch)``).
* :mod:`robot_rl.agents.exploration` -- Gaussian / Ornstein-Uhlenbeck noise, schedules.
* :mod:`robot_rl.agents.checkpoint` -- checkpoints and the exported policy (safetensors).
* :mod:`robot_rl.agents.trainer` -- the in-process trainer on the gym env (``robot-rl train``).

Importing this package imports torch lazily: only the names below, on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "LearnerConfig": "robot_rl.agents.config",
    "learner_config": "robot_rl.agents.config",
    "Learner": "robot_rl.agents.learning",
    "save_checkpoint": "robot_rl.agents.checkpoint",
    "load_checkpoint": "robot_rl.agents.checkpoint",
    "export_policy": "robot_rl.agents.checkpoint",
    "load_policy": "robot_rl.agents.checkpoint",
    "CheckpointMismatchError": "robot_rl.agents.checkpoint",
    "train": "robot_rl.agents.trainer",
    "evaluate": "robot_rl.agents.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robot_rl.agents' has no attribute {name!r}")
