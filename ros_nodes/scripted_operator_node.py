"""scripted_operator_node: a scripted person at a SpaceMouse or gamepad (CI's stand-in for a human).

It publishes exactly what the device driver would, so the teleop node downstream runs for real:

* ``teleop.input: spacenav``: ``geometry_msgs/Twist`` on ``twist_topic`` (default
  ``/spacenav/twist``) and ``sensor_msgs/Joy`` on ``joy_topic`` (default ``/spacenav/joy``: the
  six normalised axes and the buttons), as the spacenav driver does;
* ``teleop.input: joy``: ``sensor_msgs/Joy`` on ``joy_topic`` (default ``/joy``), laid out like
  joy's ``game_controller_node``.

It reads one robot (run it in the robot's namespace): ``joint_states`` (end-effector position by
forward kinematics, :mod:`robot_rl.kinematics`) and ``task_state`` (the goal; a new
``episode_id`` starts a new operator episode). The behaviour -- reaction delay, noisy
P-control, saturation, hesitation, overshoot, deadman, episode marks -- is
:class:`robot_rl.sim.operator.ScriptedOperator`; ``seed`` makes it repeatable.

When it acts (``trigger``): ``state`` -- once per new state (joint state + task state with the
same stamp; the sim publishes both once per control period, in real time and in lockstep);
``timer`` -- every control period with the newest state. Between steps it re-publishes its last
device state every ``1 / publish_hz`` s, as the spacenav driver does while the puck is still, so
the teleop node sees a live device. Stopping this node is a person walking away: the device
goes silent and the teleop node reports the input lost (deadman false).

It starts its first episode once something reads its device topic (the teleop node) and
something reads the teleop node's output (the actor), and it does not reset episodes: the actor
does that (or the test that drives it). With ``max_episodes`` >= 0 it keeps that many
episodes (marked success or failure) and then takes its hands off the device for good, so a
recording with several robots stores exactly the number asked for (``robot-rl up --demos
--scripted-operator --max-demo-episodes N`` splits N over the robots' operators).
"""
from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy

from robot_rl import graph
from robot_rl.config import ConfigError
from robot_rl.kinematics import Kinematics
from robot_rl.ros_nodes.common import STATE_QOS, run_node
from robot_rl.ros_nodes.params import declare_config
from robot_rl.ros_nodes.teleop_node import DEFAULT_JOY_TOPIC, DEVICE_QOS
from robot_rl.sim.operator import DeviceCommand, OperatorParams, ScriptedOperator
from robot_rl.teleop import MARK_FAILURE, MARK_NAMES, MARK_NONE, MARK_SUCCESS
from robot_rl_interfaces.msg import TaskState


class ScriptedOperatorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("scripted_operator_node", **kwargs)
        self.cfg = declare_config(self, ("robot", "task", "sim", "teleop", "run"))
        P = self._param
        inp = self.cfg.teleop.input
        seed = int(P("seed", -1, "operator seed (-1: run.seed)"))
        self.trigger = P("trigger", "state", "act on each new 'state' or on a 'timer'")
        publish_hz = float(P("publish_hz", 33.0, "re-publish the device state at this rate "
                             "(spacenav: about every 30 ms while still)"))
        time_limit = int(P("time_limit", -1, "steps until the operator gives up and marks "
                           "failure (-1: task.max_steps)"))
        discard_prob = float(P("discard_prob", OperatorParams.discard_prob,
                               "probability per episode of discarding it mid-way"))
        self.max_episodes = int(P("max_episodes", -1, "episodes to keep (marked success or "
                                  "failure; discarded ones do not count), then hands off the "
                                  "device for good (-1: no limit)"))
        twist_topic = P("twist_topic", "/spacenav/twist", "spacenav: Twist output")
        joy_topic = P("joy_topic", "", "Joy output ('' = /spacenav/joy for spacenav, /joy for "
                      "joy)") or DEFAULT_JOY_TOPIC[inp]
        js_topic = P("joint_states_topic", graph.JOINT_STATES_TOPIC, "robot joint states")
        ts_topic = P("task_state_topic", graph.TASK_STATE_TOPIC, "task state (goal, episode)")
        self.teleop_topic = P("teleop_topic", graph.TELEOP_TOPIC, "the teleop node's output: "
                              "the first episode waits for its reader (the actor)")
        if self.trigger not in ("state", "timer"):
            raise ConfigError(f"trigger: expected 'state' or 'timer', got {self.trigger!r}")
        if publish_hz <= 0:
            raise ConfigError(f"publish_hz: expected > 0, got {publish_hz}")
        if not 0.0 <= discard_prob <= 1.0:
            raise ConfigError(f"discard_prob: expected 0..1, got {discard_prob}")
        if self.max_episodes < -1:
            raise ConfigError(f"max_episodes: expected >= 0 or -1 (no limit), got "
                              f"{self.max_episodes}")
        params = OperatorParams(time_limit=None if time_limit < 0 else time_limit,
                                discard_prob=discard_prob)
        self.seed = seed if seed >= 0 else self.cfg.run.seed
        try:
            self.op = ScriptedOperator(self.cfg, seed=self.seed, params=params)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.kin = Kinematics.from_profile(self.cfg.robot)
        self.joint_names = tuple(self.cfg.robot.joint_names)
        self._index_cache: dict[tuple, list[int] | None] = {}
        self.spacenav = inp == "spacenav"

        self._q: np.ndarray | None = None
        self._q_stamp = -1
        self._ts: TaskState | None = None
        self._episode: int | None = None
        self._last_key = None
        self._last: DeviceCommand | None = None
        self._waiting_logged = False
        self.steps = 0
        self.marks = {m: 0 for m in MARK_NAMES if m != MARK_NONE}
        self.retired = False  # kept max_episodes episodes: hands off the device

        self.twist_pub = self.create_publisher(Twist, twist_topic, DEVICE_QOS) \
            if self.spacenav else None
        self.joy_pub = self.create_publisher(Joy, joy_topic, DEVICE_QOS)
        self.create_subscription(JointState, js_topic, self.on_joint_state, STATE_QOS)
        self.create_subscription(TaskState, ts_topic, self.on_task_state, STATE_QOS)
        if self.trigger == "timer":
            self.create_timer(self.cfg.sim.control_dt, self.on_timer)
        self.create_timer(1.0 / publish_hz, self.republish)
        outs = f"{twist_topic} + {joy_topic}" if self.spacenav else joy_topic
        self.get_logger().info(
            f"scripted operator {self.get_fully_qualified_name()} input={inp} -> {outs} "
            f"seed={self.seed} trigger={self.trigger} time_limit={self.op.time_limit} steps "
            f"mapping: {self.op.mapping.describe()}")

    def _param(self, name, default, doc):
        return self.declare_parameter(name, default, ParameterDescriptor(description=doc)).value

    # -- inputs -------------------------------------------------------------------------------

    def on_joint_state(self, msg: JointState) -> None:
        key = tuple(msg.name)
        if key not in self._index_cache:
            pos = {n: i for i, n in enumerate(key)}
            self._index_cache[key] = ([pos[n] for n in self.joint_names]
                                      if all(n in pos for n in self.joint_names) else None)
        idx = self._index_cache[key]
        if idx is None or len(msg.position) != len(msg.name):
            return
        self._q = np.asarray(msg.position, dtype=float)[idx]
        self._q_stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if self.trigger == "state":
            self._maybe_step()

    def on_task_state(self, msg: TaskState) -> None:
        self._ts = msg
        if self.trigger == "state":
            self._maybe_step()

    def _maybe_step(self) -> None:
        if self._q is None or self._ts is None or not graph.task_state_matches(
                self._q_stamp, self._ts.stamp_ns, len(self._ts.object_pose) > 0):
            return  # wait for the other half of this state
        key = (int(self._ts.episode_id), self._q_stamp)
        if key == self._last_key:
            return
        self._last_key = key
        self.step()

    def on_timer(self) -> None:
        if self._q is not None and self._ts is not None:
            self.step()

    # -- the operator -------------------------------------------------------------------------

    def step(self) -> None:
        ts = self._ts
        if len(ts.goal) != 3 or not np.all(np.isfinite(self._q)):
            return
        if self._episode is None and (self.joy_pub.get_subscription_count() == 0
                                      or self.count_subscribers(self.teleop_topic) == 0):
            # Nobody reads the device yet, or nobody acts on it (the teleop node or the actor
            # is starting or not discovered): a person would not start an episode with the
            # device unplugged, and an episode marked before the actor is up is never stored
            # (it would count against max_episodes).
            if not self._waiting_logged:
                self.get_logger().info(f"waiting for a reader of {self.joy_pub.topic_name} and "
                                       f"of {self.resolve_topic_name(self.teleop_topic)}")
                self._waiting_logged = True
            return
        ep = int(ts.episode_id)
        if ep != self._episode:
            self._episode = ep
            kept = self.marks[MARK_SUCCESS] + self.marks[MARK_FAILURE]
            if 0 <= self.max_episodes <= kept and not self.retired:
                self.retired = True
                self.get_logger().info(f"kept {kept} episode(s) (max_episodes "
                                       f"{self.max_episodes}): hands off the device")
            if not self.retired:
                self.op.reset(np.asarray(ts.goal, dtype=float))
        if self.retired:
            # A person who has recorded their share: the device stays live but untouched, so
            # the arm holds still and the episode it is in never gets a mark (never stored).
            self._last = self.op.idle()
            self.publish(self._last)
            return
        before = self.op.done
        cmd = self.op.step(self.kin.ee_position(self._q))
        self.steps += 1
        if cmd.mark != MARK_NONE and (self._last is None or self._last.mark != cmd.mark):
            self.marks[cmd.mark] += 1
            self.get_logger().info(f"episode {ep}: pressing {MARK_NAMES[cmd.mark]} after "
                                   f"{self.op.ep.t} steps")
        if self.op.done and not before:
            self.get_logger().info(f"episode {ep}: deadman released; waiting for a new episode")
        self._last = cmd
        self.publish(cmd)

    def publish(self, cmd: DeviceCommand) -> None:
        stamp = self.get_clock().now().to_msg()
        joy = Joy()
        joy.header.stamp = stamp
        joy.axes = [float(x) for x in cmd.axes]
        joy.buttons = [int(b) for b in cmd.buttons]
        if self.spacenav:
            a = cmd.axes
            tw = Twist()
            tw.linear.x, tw.linear.y, tw.linear.z = float(a[0]), float(a[1]), float(a[2])
            tw.angular.x, tw.angular.y, tw.angular.z = float(a[3]), float(a[4]), float(a[5])
            self.twist_pub.publish(tw)
        self.joy_pub.publish(joy)

    def republish(self) -> None:
        if self._last is not None:
            self.publish(self._last)


def main(args=None) -> int:
    return run_node(ScriptedOperatorNode, "scripted_operator_node", args)


if __name__ == "__main__":
    sys.exit(main())
