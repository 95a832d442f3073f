"""ROS parameters generated from the typed config: names, descriptions, families, errors."""
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from robot_rl.config import ConfigError
from robot_rl.ros_nodes.params import declare_config


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(context, overrides):
    return Node("params_probe", context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_defaults_and_descriptions(context):
    node = _node(context, {})
    cfg = declare_config(node, ("robot", "sim"))
    assert cfg.robot.name == "panda" and cfg.sim.control_hz == 20.0
    assert node.get_parameter("robot.limits.dq_max").value[0] == 2.175
    assert "velocity limits" in node.describe_parameter("robot.limits.dq_max").description
    assert not node.has_parameter("task.reward")  # only the requested sections
    node.destroy_node()


def test_family_switch_takes_that_familys_defaults(context):
    node = _node(context, {"robot.name": "fr3", "sim.num_robots": 2,
                           "robot.limits.dq_max": [1.0] * 7})
    cfg = declare_config(node, ("robot", "sim"))
    assert cfg.robot.joint_names[0] == "fr3_joint1"
    assert cfg.robot.limits.ddq_max == (10.0,) * 7
    assert cfg.robot.limits.dq_max == (1.0,) * 7  # integers/floats both accepted
    assert cfg.sim.num_robots == 2
    node.destroy_node()


def test_bad_parameter_names_the_field(context, tmp_path):
    node = _node(context, {"sim.control_hz": -5.0})
    with pytest.raises(ConfigError, match=r"sim.control_hz: Input should be greater than 0"):
        declare_config(node, ("sim",))
    node.destroy_node()
    f = tmp_path / "c.yaml"
    f.write_text("task: {reward: sparse}\n")
    node = _node(context, {"config_file": str(f)})
    assert declare_config(node, ("task",)).task.reward == "sparse"
    node.destroy_node()
