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


def test_runtime_changes_are_refused_with_the_parameter_named(context):
    """Parameters are read at start-up: a later set fails, naming them, and changes nothing."""
    node = _node(context, {"sim.control_hz": 50.0})
    cfg = declare_config(node, ("sim", "safety"))
    node.declare_parameter("startup_wait", 1.0)  # a node's own parameter, declared after
    [r] = node.set_parameters([Parameter("safety.limit_scale", value=0.5)])
    assert not r.successful
    assert r.reason == "safety.limit_scale is read at start-up; restart the node to change it"
    assert node.get_parameter("safety.limit_scale").value == cfg.safety.limit_scale != 0.5
    [r] = node.set_parameters([Parameter("startup_wait", value=3.0)])
    assert (r.successful, r.reason) == (
        False, "startup_wait is read at start-up; restart the node to change it")
    r = node.set_parameters_atomically([Parameter("sim.control_hz", value=10.0),
                                        Parameter("startup_wait", value=3.0)])
    assert (r.successful, r.reason) == (
        False, "sim.control_hz, startup_wait are read at start-up; restart the node to change them")
    assert node.get_parameter("sim.control_hz").value == 50.0
    assert node.get_parameter("startup_wait").value == 1.0
    # rclpy applies use_sim_time itself: it stays settable (and switches the clock).
    [r] = node.set_parameters([Parameter("use_sim_time", value=True)])
    assert r.successful and node.get_parameter("use_sim_time").value is True
    node.destroy_node()


def test_a_parameter_applied_at_runtime_can_be_named_dynamic(context):
    from robot_rl.ros_nodes.params import refuse_runtime_changes

    node = _node(context, {})
    declare_config(node, ("sim",))
    refuse_runtime_changes(node, dynamic=("log_every_s",))  # a second call only adds names
    node.declare_parameter("log_every_s", 10.0)
    node.declare_parameter("slice_s", 0.05)
    assert node.set_parameters([Parameter("log_every_s", value=2.0)])[0].successful
    assert node.get_parameter("log_every_s").value == 2.0
    assert not node.set_parameters([Parameter("slice_s", value=1.0)])[0].successful
    assert len(node._on_set_parameters_callbacks) == 2  # rclpy's time source + one guard
    node.destroy_node()
