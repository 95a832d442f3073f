"""ROS parameters generated from the typed config (robot_rl.config), never from stray literals.

Every leaf field of the requested config sections becomes a ROS parameter with a dotted name
(``sim.control_hz``, ``robot.limits.dq_max``, ``task.goal_box.low``) and the field's description,
so ``ros2 param describe`` documents it and a ``ros__parameters`` YAML can nest it::

    /**:
      ros__parameters:
        config_file: ""          # optional robot_rl YAML; parameters override it
        robot: {name: fr3}
        sim: {control_hz: 20.0, num_robots: 2}

Values are validated by the same pydantic models as everywhere else; a bad value stops the node
with the field's path. ``robot.name`` is read first so that the other robot fields default to that
family's published values (an FR3 gets FR3 joint names and limits, not the Panda's).

Parameters are read once, at start-up: a node builds its filter, topics and timers from them and
never reads them again. So a change at run time (``ros2 param set``, ``ros2 param load``, the
``set_parameters`` service) is **refused**, naming the parameter, instead of "succeeding" and
changing nothing::

    $ ros2 param set /robot_0/safety_node safety.limit_scale 0.5
    Setting parameter failed: safety.limit_scale is read at start-up; restart the node to change it

:func:`declare_config` installs that guard (:func:`refuse_runtime_changes`) on the node before it
declares anything, and ``run_node`` installs it on every node it builds, so no node needs code of
its own. Declaring a parameter is not a change and stays allowed. Only the parameters in
:data:`RUNTIME_PARAMETERS` (those rclpy itself applies while the node runs) can be set; a node
that genuinely applies one of its own at run time names it with
``refuse_runtime_changes(node, dynamic=(name,))``.
"""
from __future__ import annotations

import weakref
from typing import Any

from pydantic import BaseModel
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from robot_rl.config import Config, config_from_dict, load_config


#: Parameters that rclpy applies while the node runs (``use_sim_time`` switches the node's clock
#: to ``/clock`` and back); every other parameter of a robot_rl node is read once, at start-up.
RUNTIME_PARAMETERS = frozenset({"use_sim_time"})

# Node attribute holding the names that the installed guard lets through (its presence means
# the guard is installed).
_DYNAMIC_ATTR = "_robot_rl_runtime_parameters"


def startup_only_reason(names: list[str]) -> str:
    """The refusal's reason: which parameters, and what to do instead."""
    if len(names) == 1:
        return f"{names[0]} is read at start-up; restart the node to change it"
    return f"{', '.join(names)} are read at start-up; restart the node to change them"


def refuse_runtime_changes(node: Node, dynamic: tuple[str, ...] = ()) -> None:
    """Make ``node`` refuse a change of any declared parameter it does not apply at run time.

    Registers a set-parameters callback (once per node; a second call only adds ``dynamic``
    names). The callback lets through a parameter being *declared* (not declared yet, which is
    how rclpy runs these callbacks for ``declare_parameter``), the names in
    :data:`RUNTIME_PARAMETERS` and ``dynamic``; any other set fails with
    :func:`startup_only_reason`, so ``get_parameters`` keeps returning the value the node uses.
    """
    allowed: set[str] | None = getattr(node, _DYNAMIC_ATTR, None)
    if allowed is not None:
        allowed.update(dynamic)
        return
    allowed = set(RUNTIME_PARAMETERS) | set(dynamic)
    setattr(node, _DYNAMIC_ATTR, allowed)

    # A weak reference: a strong one would make a cycle that keeps a node whose constructor
    # failed alive until rclpy.shutdown(), which then calls its destroy_node on half-built state.
    ref = weakref.ref(node)

    def on_set_parameters(params: list[Parameter]) -> SetParametersResult:
        n = ref()
        if n is None:
            return SetParametersResult(successful=False, reason="node destroyed")
        fixed = [p.name for p in params if n.has_parameter(p.name) and p.name not in allowed]
        if fixed:
            return SetParametersResult(successful=False, reason=startup_only_reason(fixed))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set_parameters)


def _leaves(model: BaseModel, prefix: str) -> list[tuple[str, Any, str]]:
    """(dotted name, current value, description) for every leaf field of ``model``."""
    out: list[tuple[str, Any, str]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        full = f"{prefix}.{name}"
        if isinstance(value, BaseModel):
            out.extend(_leaves(value, full))
        else:
            out.append((full, value, field.description or ""))
    return out


def _ros_value(v: Any) -> Any:
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v) and any(
        isinstance(x, float) for x in v
    ):
        return [float(x) for x in v]
    return v


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def declare_config(node: Node, sections: tuple[str, ...]) -> Config:
    """Declare the parameters of ``sections`` on ``node`` and return the validated Config.

    Raises ``robot_rl.config.ConfigError`` naming the parameter (field path) that is wrong.
    Installs :func:`refuse_runtime_changes` first, so these parameters and every one the node
    declares after them refuse run-time changes.
    """
    refuse_runtime_changes(node)
    desc = ParameterDescriptor(description="robot_rl YAML config file; parameters override it")
    config_file = node.declare_parameter("config_file", "", desc).value
    base = load_config(config_file or None)
    data = base.model_dump(mode="json")

    if "robot" in sections:
        fam = node.declare_parameter(
            "robot.name", base.robot.name,
            ParameterDescriptor(description=type(base.robot).model_fields["name"].description),
        ).value
        if fam != base.robot.name:
            # Another family: its own defaults, not the base file's robot fields.
            data["robot"] = {"name": fam}
            base = config_from_dict(data, source="robot.name parameter")
            data = base.model_dump(mode="json")

    for section in sections:
        for dotted, default, description in _leaves(getattr(base, section), section):
            if dotted == "robot.name":
                continue
            d = ParameterDescriptor(description=description, dynamic_typing=True)
            value = node.declare_parameter(dotted, _ros_value(default), d).value
            _set_dotted(data, dotted, value)
    return config_from_dict(data, source=f"ROS parameters of {node.get_fully_qualified_name()}")
