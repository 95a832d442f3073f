"""Which family implements each algorithm (torch-free: the config layer reads it).

A family is a package ``robot_rl.agents.<family>`` in Acme's layout:

* ``config.py`` -- torch-free: ``resolve(agent) -> dict`` (the family's defaults for the
  :class:`~robot_rl.agents.config.LearnerConfig` fields it reads), ``check(cfg)`` (refuses
  settings the family would ignore, naming them) and ``architecture(cfg) -> dict`` (the
  family's extra fields that fix tensor shapes);
* ``learning.py`` -- the learner (a :class:`~robot_rl.agents.base.LearnerBase` with ``step()``),
  exported as ``LEARNER``; pure losses come from :mod:`robot_rl.agents.losses`.

Adding an algorithm is a family package (or a new branch of an existing one) plus one line
below.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

#: algorithm -> family package under robot_rl.agents
ALGORITHMS: dict[str, str] = {
    "ddpg": "dpg",
    "td3": "dpg",
    "ddpgfd": "dpg",
    "svg0": "svg",
    "sac": "sac",
    "crossq": "crossq",
}


def _check(algo: str) -> str:
    try:
        return ALGORITHMS[algo]
    except KeyError:
        raise ValueError(f"agent.algo: expected one of {sorted(ALGORITHMS)}, got {algo!r}") from None


def family_name(algo: str) -> str:
    return _check(algo)


def family_config(algo: str) -> ModuleType:
    """``robot_rl.agents.<family>.config`` of ``algo`` (torch-free)."""
    return importlib.import_module(f"robot_rl.agents.{_check(algo)}.config")


def learner_class(algo: str) -> type:
    """The learner class of ``algo`` (imports torch)."""
    return importlib.import_module(f"robot_rl.agents.{_check(algo)}.learning").LEARNER


def make_learner(config: Any, obs_dim: int, act_dim: int, **kwargs: Any) -> Any:
    """The learner for ``config.algo``: ``LEARNER(config, obs_dim, act_dim, **kwargs)``
    (``action_low``, ``action_high``, ``device``, ``seed``)."""
    return learner_class(config.algo)(config, obs_dim, act_dim, **kwargs)


def refuse_unused(agent: Any, names: tuple[str, ...], why: str) -> None:
    """Refuse ``agent.<name>`` settings that differ from their defaults but that the algorithm's
    family does not read (a silently ignored setting is a wrong belief about the learner)."""
    fields = type(agent).model_fields
    bad = [n for n in names if getattr(agent, n) != fields[n].default]
    if bad:
        raise ValueError(f"agent.{bad[0]}: algo={agent.algo} does not use "
                         f"{', '.join('agent.' + n for n in bad)} ({why}); remove "
                         f"{'it' if len(bad) == 1 else 'them'} or pick an algorithm that does")
