"""teleop_node: a SpaceMouse (spacenav) or a gamepad (joy) -> ``TeleopCommand`` for one robot.

Run one per robot, in the robot's namespace (``--ros-args -r __ns:=/robot_0``; the root namespace
for a single robot). The device topics are absolute by default (one device per operator; remap
them when several operators drive several robots).

* subscribes, with ``teleop.input: spacenav`` (the default), ``twist_topic`` (default
  ``/spacenav/twist``, ``geometry_msgs/Twist``; ``twist_stamped: true`` for spacenav's
  ``use_twist_stamped``) for motion and ``joy_topic`` (default ``/spacenav/joy``,
  ``sensor_msgs/Joy``) for its buttons; with ``teleop.input: joy``, ``joy_topic`` (default
  ``/joy``) for both; with the ``cartesian`` mapping also ``joint_states`` (matched by name);
* publishes, every control period (``sim.control_hz``), ``rl/teleop``
  (``robot_rl_interfaces/TeleopCommand``, reliable, depth 10: a mark is never overwritten):
  ``action`` in the policy's action space ([-1, 1]^n: 3 for ``task.action_mode: ee_velocity``,
  one per joint for ``joint``), ``deadman`` (true only while the deadman button is held and the
  input is fresh; false -> a zero action) and ``episode_mark`` (none / success / failure /
  discard: each button press once, in the next command), ``stamp_ns`` the node clock's time;
* ``/diagnostics`` (1 Hz): deadman, why not, marks sent, input losses, messages refused.

The mapping (axes, scales, deadband, deadman and mark buttons, input timeout) is the ``teleop``
config section (every field is a ROS parameter ``teleop.*``); its defaults and semantics are in
:mod:`robot_rl.teleop`, which holds the logic. The node only moves messages in and out.

This node never commands the robot: the actor decides what to do with the command (demos,
intervention), and every motion still goes through the safety node. Releasing the deadman stops
teleop-driven motion because the actor then stops using these actions.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState, Joy

from robot_rl import graph
from robot_rl.config import ConfigError
from robot_rl.ros_nodes.common import STATE_QOS, run_node, status_message
from robot_rl.ros_nodes.params import declare_config
from robot_rl.teleop import MARK_NAMES, MARK_NONE, TeleopMapper
from robot_rl_interfaces.msg import TeleopCommand

#: TeleopCommand: reliable, and deep enough that a command carrying a mark is never replaced by
#: the next one before a busy subscriber reads it.
TELEOP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
#: Device drivers (spacenav, joy) publish with the default QoS: reliable, depth 10.
DEVICE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)

DEFAULT_JOY_TOPIC = {"spacenav": "/spacenav/joy", "joy": "/joy"}


def _twist_vector(t) -> list[float]:
    return [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]


class TeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__("teleop_node", **kwargs)
        self.cfg = declare_config(self, ("robot", "task", "sim", "teleop"))
        P = self._param
        inp = self.cfg.teleop.input
        twist_topic = P("twist_topic", "/spacenav/twist", "spacenav: geometry_msgs/Twist topic")
        self.twist_stamped = bool(P("twist_stamped", False,
                                    "spacenav: the Twist topic carries TwistStamped (the "
                                    "driver's use_twist_stamped)"))
        joy_topic = P("joy_topic", "", "sensor_msgs/Joy topic ('' = /spacenav/joy for spacenav "
                      "(its buttons), /joy for joy)") or DEFAULT_JOY_TOPIC[inp]
        teleop_topic = P("teleop_topic", graph.TELEOP_TOPIC, "TeleopCommand output (per robot)")
        js_topic = P("joint_states_topic", graph.JOINT_STATES_TOPIC,
                     "robot joint states (cartesian mapping only)")
        diag_topic = P("diagnostics_topic", graph.DIAGNOSTICS_TOPIC, "status, 1 Hz")
        try:
            self.core = TeleopMapper.from_config(self.cfg)
        except ValueError as e:  # ConfigError included
            raise ConfigError(str(e)) from None
        self.m = self.core.m
        self.joint_names = tuple(self.cfg.robot.joint_names)
        self._index_cache: dict[tuple, list[int] | None] = {}

        self.pub = self.create_publisher(TeleopCommand, teleop_topic, TELEOP_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, diag_topic, 10)
        if inp == "spacenav":
            self.create_subscription(TwistStamped if self.twist_stamped else Twist, twist_topic,
                                     self.on_twist, DEVICE_QOS)
            self.create_subscription(Joy, joy_topic, self.on_spacenav_joy, DEVICE_QOS)
            topics = f"{twist_topic} + {joy_topic}"
        else:
            self.create_subscription(Joy, joy_topic, self.on_joy, DEVICE_QOS)
            topics = joy_topic
        if self.m.mode == "cartesian":
            self.create_subscription(JointState, js_topic, self.on_joint_state, STATE_QOS)
        self.create_timer(self.cfg.sim.control_dt, self.on_timer)
        self.create_timer(1.0, self.publish_status)
        self.published = 0
        self.bad_states = 0
        self._deadman = False
        self._reason = ""
        self._last_input = None
        self.get_logger().info(
            f"teleop {self.get_fully_qualified_name()} from {topics} -> "
            f"{self.resolve_topic_name(teleop_topic)} at {self.cfg.sim.control_hz:g} Hz: "
            f"{self.m.describe()}")

    def _param(self, name, default, doc):
        return self.declare_parameter(name, default, ParameterDescriptor(description=doc)).value

    # -- inputs -------------------------------------------------------------------------------

    def on_twist(self, msg) -> None:
        t = msg.twist if self.twist_stamped else msg
        now = time.monotonic()
        if not self.core.on_axes(_twist_vector(t), now):
            self.get_logger().warning("twist with non-finite values refused",
                                      throttle_duration_sec=2.0)
        self._last_input = now

    def on_spacenav_joy(self, msg: Joy) -> None:
        self.core.on_buttons(msg.buttons, time.monotonic())

    def on_joy(self, msg: Joy) -> None:
        now = time.monotonic()
        if not self.core.on_joy(msg.axes, msg.buttons, now):
            self.get_logger().warning("joy message with non-finite axes refused",
                                      throttle_duration_sec=2.0)
        self._last_input = now

    def on_joint_state(self, msg: JointState) -> None:
        key = tuple(msg.name)
        idx = self._index_cache.get(key)
        if key not in self._index_cache:
            pos = {n: i for i, n in enumerate(key)}
            idx = [pos[n] for n in self.joint_names] if all(n in pos for n in self.joint_names) \
                else None
            self._index_cache[key] = idx
        if idx is None or len(msg.position) != len(msg.name):
            self.bad_states += 1
            self.get_logger().error(
                f"joint_states: need positions for {list(self.joint_names)}, got names "
                f"{list(msg.name)}", throttle_duration_sec=2.0)
            return
        q = np.asarray(msg.position, dtype=float)[idx]
        if np.all(np.isfinite(q)):
            self.core.on_joint_state(q, time.monotonic())

    # -- output -------------------------------------------------------------------------------

    def on_timer(self) -> None:
        out = self.core.command(time.monotonic())
        msg = TeleopCommand()
        msg.stamp_ns = self.get_clock().now().nanoseconds
        msg.action = out.action.tolist()
        msg.deadman = bool(out.deadman)
        msg.episode_mark = int(out.mark)
        self.pub.publish(msg)
        self.published += 1
        log = self.get_logger()
        if out.mark != MARK_NONE:
            log.info(f"episode mark: {MARK_NAMES[out.mark]}")
        if out.deadman != self._deadman:
            if out.deadman:
                log.info("deadman pressed: teleop drives")
            elif out.reason.startswith("input lost"):
                log.warning(f"deadman false: {out.reason}")
            else:
                log.info(f"deadman false: {out.reason}")
        elif (not out.deadman and out.reason.startswith("input lost")
              and not self._reason.startswith("input lost")):
            log.warning(out.reason)
        self._deadman, self._reason = out.deadman, out.reason

    def publish_status(self) -> None:
        c = self.core
        level = "warn" if self._reason.startswith("input lost") or c.missing_axes else "ok"
        age = "" if self._last_input is None else f"{time.monotonic() - self._last_input:.3f}"
        marks = {f"marks_{MARK_NAMES[m]}": n for m, n in c.marks_fired.items()}
        self.diag_pub.publish(status_message(
            self, level, "driving" if self._deadman else (self._reason or "idle"), {
                "role": "teleop", "input": self.m.input, "mapping": self.m.mode,
                "deadman": self._deadman, "reason": self._reason, "published": self.published,
                **marks, "input_losses": c.losses, "input_age_s": age,
                "bad_messages": c.bad_messages, "bad_states": self.bad_states,
                "missing_axes": c.missing_axes}))


def main(args=None) -> int:
    return run_node(TeleopNode, "teleop_node", args)


if __name__ == "__main__":
    sys.exit(main())
