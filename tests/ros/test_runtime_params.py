"""Run-time parameter changes are refused, through the real SetParameters service.

Every robot_rl node reads its parameters once, at start-up; ``ros2 param set`` used to succeed
and change nothing (a user believed ``safety.limit_scale 0.5`` slowed the arm). Here the real
safety node (under ``/robot_0``) and replay node processes are asked over DDS to change a config
leaf and one of their own parameters: each answer is ``successful=False`` with a reason naming
the parameter, ``get_parameters`` still returns the old value, and ``use_sim_time`` (which rclpy
applies itself) stays settable.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import rclpy
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python

BIN = Path(sys.executable).parent
NS = "/robot_0"


def _call(node, client, request, timeout: float = 20.0):
    assert client.wait_for_service(timeout_sec=timeout), f"no service {client.srv_name}"
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    assert future.done(), f"no answer from {client.srv_name}"
    return future.result()


class ParamProbe:
    """``set_parameters`` / ``get_parameters`` of one remote node, with plain service clients."""

    def __init__(self, node, fqn: str):
        self.node = node
        self.set_client = node.create_client(SetParameters, f"{fqn}/set_parameters")
        self.get_client = node.create_client(GetParameters, f"{fqn}/get_parameters")

    def set(self, name: str, value):
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        [result] = _call(self.node, self.set_client, req).results
        return result

    def get(self, name: str):
        [value] = _call(self.node, self.get_client, GetParameters.Request(names=[name])).values
        return parameter_value_to_python(value)


def test_safety_and_replay_nodes_refuse_runtime_changes(ros_process, tmp_path):
    estop = tmp_path / "estop.json"
    estop.write_text('{"latched": false}\n')
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n"
                      f"    safety: {{limit_scale: 0.8, estop_file: '{estop}'}}\n")
    safety = ros_process([str(BIN / "safety_node"), "--ros-args", "-r", f"__ns:={NS}",
                          "--params-file", str(params)], name="safety")
    replay = ros_process.python(["-m", "robot_rl.ros_nodes.replay_node", "--ros-args",
                                 "-p", f"run_dir:={tmp_path / 'run'}"], name="replay")
    safety.wait_for_line(rf"safety node {NS}/safety_node ", timeout=60)
    replay.wait_for_line(r"replay node /replay_node: store ", timeout=60)

    rclpy.init()
    node = rclpy.create_node("param_probe")
    try:
        t0 = time.monotonic()
        cases = [  # (node, parameter, value to try): a config leaf and a node's own parameter
            (f"{NS}/safety_node", "safety.limit_scale", 0.5),
            (f"{NS}/safety_node", "startup_wait", 5.0),
            ("/replay_node", "replay.flush_interval", 5.0),
            ("/replay_node", "ack_period", 2.0),
        ]
        probes = {fqn: ParamProbe(node, fqn) for fqn, _, _ in cases}
        for fqn, name, value in cases:
            probe = probes[fqn]
            before = probe.get(name)
            assert before != value
            result = probe.set(name, value)
            assert not result.successful, f"{fqn} accepted {name}={value}"
            assert result.reason == f"{name} is read at start-up; restart the node to change it"
            assert probe.get(name) == before, f"{fqn}: {name} changed although refused"
        assert probes[f"{NS}/safety_node"].get("safety.limit_scale") == 0.8  # the start-up value
        # rclpy applies use_sim_time itself: not refused (set to its current value, so the
        # nodes keep their wall clock).
        for probe in probes.values():
            assert probe.set("use_sim_time", False).successful
        assert time.monotonic() - t0 < 30
        assert safety.running and replay.running
    finally:
        node.destroy_node()
        rclpy.shutdown()
