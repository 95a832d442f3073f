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
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from robot_rl.config import Config, config_from_dict, load_config


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
    """
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
