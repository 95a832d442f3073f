"""sim_robot_node: every simulated Panda behind franka_ros2-style topics, and the one /clock.

Per robot ``i`` under its namespace (``robot_namespaces``; the root namespace for one robot):

* publishes ``joint_states`` (``sensor_msgs/JointState``, profile joint order, reliable) every
  state, and ``task_state`` (``robot_rl_interfaces/TaskState``: goal, object pose, episode):
  every state for a task with an object (its pose moves), else when it changes (a reset: new
  episode, new goal) and at least every ``task_state_period`` s -- within an episode an
  object-free task's state is constant, so this spares every actor one reception per step
  (0-8 % less graph CPU per env step, docs/benchmarks.md). ``stamp_ns`` is the stamp of
  the joint state it goes with (published after it); consumers pair a
  joint state with the newest task state stamped at or before it (``robot_rl.graph.
  task_state_matches``). Each of a robot's states has its own stamp: the sim time, or, for a
  reset's state in lockstep (sim time has not moved since the step before it), 1 ns after
  the robot's previous state;
* subscribes ``joint_velocity_controller/commands`` (``std_msgs/Float64MultiArray``, one value
  per joint), handled like ros2_control's ``JointGroupVelocityController``: held until the next
  command, a wrong-length or non-finite command is refused with a log line;
* serves ``reset_episode`` (``std_srvs/Trigger``): home pose + seeded noise, new goal/object.

and ``/clock`` (``rosgraph_msgs/Clock``) for all. ``sim.clock`` picks the pacing:
``realtime`` steps on a wall timer at ``sim.control_hz``; ``lockstep`` steps as soon as every
robot's command for the step has arrived, or after ``sim.lockstep_timeout`` seconds.

**Learner gate** (``learner_gate``, lockstep only; the sim graph turns it on when it has a
learner): the learner publishes how many more env steps (all robots together) it can take
beyond the rows it has seen without falling behind its update-to-data ratio (``std_msgs/UInt64``
on ``allowance_topic``, default ``/rl/env_step_allowance``). The sim adds that margin to the
steps it has made itself when the message arrives and does not advance past the sum (a margin,
so a sim and a learner that start at different times -- a resumed run, a restarted learner --
agree without sharing a counter): on a small machine the physics,
actors and replay would otherwise take the CPU from the learner, and the run's UTD ratio would
be whatever the scheduler made of it, not the configured one. If no allowance has arrived for
``gate_timeout`` s (no learner yet, or a dead one), the sim advances ungated and says so.

The logic lives in :class:`robot_rl.sim.multi.SimRobots`; this file only adapts it to ROS.
"""
from __future__ import annotations

import array
import sys
import time

from rclpy.node import Node
from rcl_interfaces.msg import ParameterDescriptor
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, UInt64
from std_srvs.srv import Trigger

from robot_rl.config import ConfigError
from robot_rl.ros_nodes.common import COMMAND_QOS, STATE_QOS, qualify, run_node
from robot_rl.ros_nodes.params import declare_config
from robot_rl.sim.multi import SimRobots
from robot_rl_interfaces.msg import TaskState

class SimRobotNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_robot_node", **kwargs)
        self.cfg = declare_config(self, ("robot", "task", "sim", "run"))
        n = self.cfg.sim.num_robots
        default_ns = [""] if n == 1 else [f"robot_{i}" for i in range(n)]
        d = ParameterDescriptor(description="namespace of each sim robot ('' = root namespace)",
                                dynamic_typing=True)
        namespaces = list(self.declare_parameter("robot_namespaces", default_ns, d).value)
        if len(namespaces) != n:
            raise ConfigError(
                f"robot_namespaces: {len(namespaces)} names for sim.num_robots = {n} robots"
            )
        topics = {
            "joint_states_topic": ("joint_states", "per-robot joint state topic"),
            "command_topic": ("joint_velocity_controller/commands", "per-robot command topic"),
            "task_state_topic": ("task_state", "per-robot task state topic"),
            "reset_service": ("reset_episode", "per-robot episode reset service"),
        }
        names = {k: self.declare_parameter(k, v, ParameterDescriptor(description=doc)).value
                 for k, (v, doc) in topics.items()}
        self.learner_gate = bool(self.declare_parameter(
            "learner_gate", False, ParameterDescriptor(
                description="lockstep: do not run ahead of the learner's env-step allowance")
        ).value)
        allowance_topic = self.declare_parameter(
            "allowance_topic", "/rl/env_step_allowance",
            ParameterDescriptor(description="the learner's env-step allowance (std_msgs/UInt64)")
        ).value
        self.task_state_period = float(self.declare_parameter(
            "task_state_period", 0.5, ParameterDescriptor(
                description="object-free tasks: republish an unchanged task state after this "
                            "many s (0: with every joint state, as for tasks with an object)")
        ).value)
        if self.task_state_period < 0:
            raise ConfigError(f"task_state_period: expected >= 0 s, got {self.task_state_period}")
        self._ts_sent: dict[int, tuple[tuple, float]] = {}  # robot -> (content, wall time)
        self.gate_timeout = float(self.declare_parameter(
            "gate_timeout", 10.0, ParameterDescriptor(
                description="s without an allowance before the gate opens (and says so)")
        ).value)
        self.sim = SimRobots(self.cfg, num_robots=n)
        self.namespaces = namespaces
        self.joint_names = list(self.cfg.robot.joint_names)
        self._js_msgs: dict[int, JointState] = {}
        self._last_stamp_ns: dict[int, int] = {}  # robot -> stamp of its last published state
        self.lockstep = self.cfg.sim.clock == "lockstep"

        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.state_pubs, self.task_pubs = [], []
        for i, ns in enumerate(namespaces):
            self.state_pubs.append(self.create_publisher(
                JointState, qualify(ns, names["joint_states_topic"]), STATE_QOS))
            self.task_pubs.append(self.create_publisher(
                TaskState, qualify(ns, names["task_state_topic"]), STATE_QOS))
            self.create_subscription(
                Float64MultiArray, qualify(ns, names["command_topic"]),
                lambda msg, i=i: self.on_command(i, msg), COMMAND_QOS)
            self.create_service(Trigger, qualify(ns, names["reset_service"]),
                                lambda req, resp, i=i: self.on_reset(i, req, resp))

        period = self.cfg.sim.control_dt
        self._last_step = time.monotonic()
        if self.lockstep:
            # Check the lockstep timeout a few times per timeout interval.
            self.create_timer(min(period, self.cfg.sim.lockstep_timeout / 4), self.on_lockstep_timer)
        else:
            self.create_timer(period, self.on_realtime_tick)
        self.timeouts = 0
        self.task_states_sent = 0
        self.commanded_steps = 0  # steps for which every robot's command arrived
        self.allowance: int | None = None
        self._allowance_wall = time.monotonic()
        self._gate_open_logged = False
        self.gated_s = 0.0  # wall time spent waiting for the learner
        self._gated_since: float | None = None
        if self.lockstep and self.learner_gate:
            self.create_subscription(UInt64, allowance_topic, self.on_allowance, 10)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_mark = (time.monotonic(), 0)
        self.create_timer(1.0, self.publish_diagnostics)
        self.publish_states()
        self.get_logger().info(
            f"{n} sim robot(s) {namespaces} task={self.cfg.task.name} clock={self.cfg.sim.clock} "
            f"control_hz={self.cfg.sim.control_hz:g} substeps={self.cfg.sim.substeps}"
        )

    # -- callbacks --------------------------------------------------------------------------

    def on_command(self, i: int, msg: Float64MultiArray) -> None:
        try:
            self.sim.set_command(i, msg.data)
        except ValueError as e:
            self.get_logger().error(f"{e}; keeping the previous command",
                                    throttle_duration_sec=1.0)
            return
        if self.lockstep and self.sim.all_arrived():
            self._advance_if_allowed()

    def on_allowance(self, msg: UInt64) -> None:
        # a margin beyond the rows the learner has seen -> a limit on this sim's own count
        self.allowance = self.commanded_steps * self.sim.num_robots + int(msg.data)
        self._allowance_wall = time.monotonic()
        if self._gate_open_logged:
            self.get_logger().info("learner allowance back; gating again")
            self._gate_open_logged = False
        if self.sim.all_arrived():
            self._advance_if_allowed()

    def _gated(self) -> bool:
        """True while the learner gate holds the sim back."""
        if not (self.lockstep and self.learner_gate):
            return False
        if time.monotonic() - self._allowance_wall > self.gate_timeout:
            if not self._gate_open_logged:
                self.get_logger().warning(
                    f"no env-step allowance from the learner for {self.gate_timeout:g} s; "
                    "advancing without waiting for it")
                self._gate_open_logged = True
            return False
        steps = (self.commanded_steps + 1) * self.sim.num_robots
        return self.allowance is None or steps > self.allowance

    def _advance_if_allowed(self) -> None:
        if self._gated():
            if self._gated_since is None:
                self._gated_since = time.monotonic()
            return
        if self._gated_since is not None:
            self.gated_s += time.monotonic() - self._gated_since
            self._gated_since = None
        self.commanded_steps += 1
        self.advance()

    def on_lockstep_timer(self) -> None:
        if self.sim.all_arrived():
            self._advance_if_allowed()  # a gate that opened since the last command
            return
        if self._gated_since is not None:
            return  # waiting for the learner, not for a command
        if time.monotonic() - self._last_step >= self.cfg.sim.lockstep_timeout:
            self.timeouts += 1
            missing = [self.namespaces[i] or "/" for i in self.sim.missing()]
            self.get_logger().warn(
                f"lockstep: no command from {missing} within {self.cfg.sim.lockstep_timeout:g} s; "
                "advancing with the held commands", throttle_duration_sec=5.0)
            self.advance()

    def on_realtime_tick(self) -> None:
        self.advance()

    def on_reset(self, i: int, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        st = self.sim.reset(i)
        self.publish_robot(i)
        resp.success = True
        resp.message = f"episode {st.episode}: goal {[round(float(g), 4) for g in st.goal]}"
        return resp

    # -- stepping and publishing ------------------------------------------------------------

    def advance(self) -> None:
        self.sim.step()
        self._last_step = time.monotonic()
        self.publish_states()

    def _stamp(self):
        if self.lockstep:
            t = self.sim.sim_time_ns
            from builtin_interfaces.msg import Time

            return Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
        return self.get_clock().now().to_msg()

    def publish_states(self) -> None:
        clock = Clock()
        clock.clock = self._stamp()
        for i in range(self.sim.num_robots):
            self.publish_robot(i, clock.clock)
        # /clock last: the control path (joint state -> actor -> safety node) does not wait for
        # it; nodes on sim time get the same stamp a fraction of a millisecond later
        self.clock_pub.publish(clock)

    def publish_robot(self, i: int, stamp=None) -> None:
        stamp = stamp or self._stamp()
        # Every state of a robot gets its own stamp, strictly later than the one before: a
        # reset between two lockstep steps would otherwise carry the stamp of the step before
        # it (sim time has not moved), and a consumer could not tell the reset's joint state
        # from the one it replaces (1 ns later; the next step is a control period later).
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        last = self._last_stamp_ns.get(i)
        if last is not None and ns <= last:
            from builtin_interfaces.msg import Time

            ns = last + 1
            stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        self._last_stamp_ns[i] = ns
        st = self.sim.state(i)
        js = self._js_msgs.get(i)
        if js is None:  # one message per robot, names set once (published by value)
            js = self._js_msgs[i] = JointState()
            js.name = self.joint_names
        js.header.stamp = stamp
        js.position = array.array("d", st.q.astype(float).tobytes())
        js.velocity = array.array("d", st.dq.astype(float).tobytes())
        self.state_pubs[i].publish(js)
        # the task state after the joint state, stamped like it (actors pair the two by stamp)
        content = (st.episode, tuple(st.goal.tolist()))
        sent = self._ts_sent.get(i)
        now = time.monotonic()
        if (st.object_pose is not None or sent is None or sent[0] != content
                or now - sent[1] >= self.task_state_period):
            ts = TaskState()
            ts.stamp_ns = ns
            ts.task_name = self.cfg.task.name
            ts.goal = list(content[1])
            ts.object_pose = [] if st.object_pose is None else st.object_pose.tolist()
            ts.episode_id = st.episode
            self.task_pubs[i].publish(ts)
            self._ts_sent[i] = (content, now)
            self.task_states_sent += 1

    def publish_diagnostics(self) -> None:
        from robot_rl.ros_nodes.common import status_message

        now = time.monotonic()
        t0, n0 = self._diag_mark
        rate = (self.sim.steps - n0) / max(now - t0, 1e-9)
        self._diag_mark = (now, self.sim.steps)
        gated = self.gated_s + (now - self._gated_since if self._gated_since else 0.0)
        msg = ("waiting for the learner" if self._gated_since is not None else
               "lockstep" if self.lockstep else "realtime")
        self.diag_pub.publish(status_message(self, "ok", msg, {
            "role": "sim", "robots": self.sim.num_robots, "steps": self.sim.steps,
            "steps_per_s": f"{rate:.1f}", "sim_time_s": f"{self.sim.sim_time_ns * 1e-9:.2f}",
            "lockstep_timeouts": self.timeouts, "task_states_sent": self.task_states_sent,
            "learner_gated_s": f"{gated:.1f}",
            "allowance": "" if self.allowance is None else self.allowance,
            "rejected_commands": self.sim.rejected_commands}))

    def destroy_node(self):
        self.sim.close()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(SimRobotNode, "sim_robot_node", args)


if __name__ == "__main__":
    sys.exit(main())
