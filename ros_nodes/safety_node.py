"""safety_node: the one node that publishes robot commands (DESIGN §2, §5). One per robot.

Run it in the robot's namespace (``--ros-args -r __ns:=/robot_0``; the root namespace for a
single robot). All names are relative, so they resolve under that namespace:

* subscribes ``rl/action_proposal`` (``robot_rl_interfaces/ActionProposal``: joint velocities in
  the profile's joint order) and ``joint_states`` (``sensor_msgs/JointState``; matched by name);
* publishes, every output period (``safety.output_hz``, default the control rate
  ``sim.control_hz``; up to 1 kHz on a real arm), the command on ``command_topic``
  (default ``joint_velocity_controller/commands``, ``std_msgs/Float64MultiArray``) and what was
  sent on ``safety/applied`` (``AppliedCommand``: proposal seq, stamp, velocities, rules fired);
* ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``, 1 Hz): counts per rule, e-stop and
  watchdog state; ``safety/estop_state`` (``std_msgs/Bool``, latched);
* serves ``safety/estop`` (``std_srvs/SetBool``): ``true`` latches the e-stop (brake to zero at
  the hard limits), only ``false`` releases it.

The e-stop state persists in a small JSON file (``safety.estop_file``, default
``~/.robot_rl/estop/<namespace>.json``: per robot, not per run, so a new run cannot silently
release a latched arm), written atomically (temp file, fsync, rename, fsync of the directory).
A missing or unreadable file at start means **latched** (fail safe); the log says how to release.

All the safety maths lives in :class:`robot_rl.safety.SafetyFilter`; each output period is
messages -> numpy -> one ``SafetyFilter.step`` -> messages. The watchdog, stale-state and e-stop
braking are the filter's: the node only passes the latest proposal (or None) and state.

**When a command goes out** (``safety.trigger``):

* ``timer`` -- every output period (``safety.output_hz``, up to 1 kHz on a real arm), the latest
  proposal held as the target and approached within the limits between policy steps;
* ``proposal`` (``auto`` without ``output_hz``: the sim) -- one command per proposal, at once
  (the state -> command latency is the actor's and this node's compute, not a timer's phase),
  the limits evaluated at the control period. When proposals stop, a backstop timer takes over
  once ``watchdog_timeout`` has passed and brakes one output per period. With
  ``sim.clock = lockstep`` the node's time is the sim time carried by the joint-state stamps (no
  ``use_sim_time`` needed): a proposal counts for the state it answered (``ActionProposal.stamp_ns``),
  and when none arrives for a new state within ``watchdog_timeout`` wall seconds the node sends
  the backstop command for that state, so the sim never waits on a dead actor for ever.

Start-up: the first command is sent once a joint state has arrived (the filter starts from the
measured joint velocities, so a restarted node does not step the held command), or after
``startup_wait`` s without one (then from rest, braking on the stale-state rule).
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool

from robot_rl.config import ConfigError
from robot_rl.ros_nodes.common import COMMAND_QOS, LATCHED_QOS, STATE_QOS, run_node
from robot_rl.ros_nodes.params import declare_config
from robot_rl.safety import RULES, Rule, SafetyFilter
from robot_rl_interfaces.msg import ActionProposal, AppliedCommand

#: Topic/service names (relative: under the node's namespace) and their descriptions.
TOPICS = {
    "proposal_topic": ("rl/action_proposal", "action proposals from the actor"),
    "joint_states_topic": ("joint_states", "robot joint states"),
    "command_topic": ("joint_velocity_controller/commands",
                      "the controller's command topic; this node is its only publisher"),
    "applied_topic": ("safety/applied", "what was sent each output period, and why"),
    "estop_service": ("safety/estop", "std_srvs/SetBool: true latches, false releases"),
    "estop_state_topic": ("safety/estop_state", "latched e-stop state (std_msgs/Bool)"),
    "diagnostics_topic": ("/diagnostics", "diagnostic_msgs/DiagnosticArray, 1 Hz"),
}


def default_estop_file(namespace: str) -> Path:
    """``~/.robot_rl/estop/<namespace>.json`` (``root.json`` for the root namespace)."""
    ns = namespace.strip("/").replace("/", "__") or "root"
    return Path.home() / ".robot_rl" / "estop" / f"{ns}.json"


def read_estop(path: Path) -> tuple[bool, str]:
    """``(latched, why)``; a missing or unreadable file is latched (fail safe)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return True, f"no e-stop state file {path}"
    except (OSError, ValueError) as e:
        return True, f"unreadable e-stop state file {path} ({e})"
    latched = data.get("latched") if isinstance(data, dict) else None
    if not isinstance(latched, bool):
        return True, f"e-stop state file {path} has no boolean 'latched' field"
    return latched, f"e-stop state file {path}"


def write_estop(path: Path, latched: bool, reason: str) -> None:
    """Write the state atomically: temp file in the same directory, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"latched": latched, "time": time.time(), "reason": reason}) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _ns(t) -> int:
    return t.sec * 1_000_000_000 + t.nanosec


class SafetyNode(Node):
    def __init__(self, **kwargs):
        super().__init__("safety_node", **kwargs)
        self.cfg = declare_config(self, ("robot", "sim", "safety"))
        names = {k: self.declare_parameter(k, v, ParameterDescriptor(description=doc)).value
                 for k, (v, doc) in TOPICS.items()}
        self.startup_wait = float(self.declare_parameter(
            "startup_wait", 1.0, ParameterDescriptor(
                description="s to wait for a first joint state before commanding from rest")
        ).value)
        profile = self.cfg.robot
        try:
            self.filter = SafetyFilter(profile, self.cfg.safety, control_hz=self.cfg.sim.control_hz)
        except ValueError as e:
            raise ConfigError(f"safety: {e}") from None
        self.joint_names = tuple(profile.joint_names)
        self._index = {n: i for i, n in enumerate(self.joint_names)}

        # -- e-stop state (persisted; missing/unreadable = latched) -------------------------
        self.estop_path = Path(os.path.expanduser(
            self.cfg.safety.estop_file or str(default_estop_file(self.get_namespace()))))
        self.estop_srv_name = self.resolve_service_name(names["estop_service"])
        self.estop, why = read_estop(self.estop_path)
        if self.estop:
            self.get_logger().error(
                f"e-stop LATCHED ({why}); release with: ros2 service call {self.estop_srv_name} "
                'std_srvs/srv/SetBool "{data: false}"')
            try:  # make the latched state explicit on disk (a missing file becomes a record)
                write_estop(self.estop_path, True, why)
            except OSError as e:
                self.get_logger().error(f"cannot write {self.estop_path}: {e}")
        else:
            self.get_logger().info(f"e-stop released ({why})")

        # -- inputs --------------------------------------------------------------------------
        self._proposal: ActionProposal | None = None  # arrived since the last output
        self._proposal_time = 0.0  # when it arrived (node clock, s)
        self._seq = 0  # seq of the proposal the filter holds
        self._state: JointState | None = None
        self._state_stamp: float | None = None
        self.create_subscription(ActionProposal, names["proposal_topic"], self.on_proposal,
                                 COMMAND_QOS)
        self.create_subscription(JointState, names["joint_states_topic"], self.on_joint_state,
                                 STATE_QOS)

        # -- outputs -------------------------------------------------------------------------
        self.cmd_pub = self.create_publisher(Float64MultiArray, names["command_topic"],
                                             COMMAND_QOS)
        self.applied_pub = self.create_publisher(AppliedCommand, names["applied_topic"], 10)
        self.estop_pub = self.create_publisher(Bool, names["estop_state_topic"], LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, names["diagnostics_topic"], 10)
        self.create_service(SetBool, names["estop_service"], self.on_estop)
        self.publish_estop_state()

        self.counts = {r: 0 for r in RULES}
        self.outputs = 0
        self.last_rules = Rule(0)
        self._started = False
        self._t0 = time.monotonic()
        dt = self.filter.output_dt
        trig = self.cfg.safety.trigger
        if trig == "auto":
            trig = "proposal" if self.cfg.safety.output_hz is None else "timer"
        if trig == "proposal" and abs(1.0 / dt - self.cfg.sim.control_hz) > 1e-9:
            raise ConfigError(
                f"safety.trigger: 'proposal' sends one command per policy step, so the output "
                f"rate is the control rate ({self.cfg.sim.control_hz:g} Hz), but safety.output_hz "
                f"is {1.0 / dt:g}; use trigger 'timer' for a faster output")
        self.trigger = trig
        self.lockstep = self.cfg.sim.clock == "lockstep"
        self._last_out_wall = -math.inf  # node clock (s) of the last output
        self._last_out_stamp: float | None = None  # lockstep: state stamp of the last output
        self._state_wall = 0.0  # lockstep: wall time the newest state arrived
        self._prop_wall = -math.inf  # wall time of the newest proposal
        if trig == "timer":
            self.create_timer(dt, self.on_output)
        elif self.lockstep:
            self.create_timer(min(dt, self.filter.params.watchdog_timeout) / 2,
                              self.on_backstop_lockstep)
        else:  # checked 5x per period, so braking starts within watchdog_timeout + dt/5
            self.create_timer(dt / 5, self.on_backstop)
        self.create_timer(1.0, self.publish_diagnostics)
        p = self.filter.params
        self.get_logger().info(
            f"safety node {self.get_fully_qualified_name()} profile={profile.name} "
            f"output_hz={1.0 / dt:g} trigger={trig}{' (lockstep time)' if self.lockstep and trig == 'proposal' else ''} watchdog={p.watchdog_timeout:g}s "
            f"state_timeout={p.state_timeout:g}s command_topic="
            f"{self.resolve_topic_name(names['command_topic'])} estop_file={self.estop_path} "
            f"estop={'latched' if self.estop else 'released'}")

    # -- callbacks ----------------------------------------------------------------------------

    def on_proposal(self, msg: ActionProposal) -> None:
        self._proposal = msg
        # The watchdog counts from arrival, not from the output tick that uses it.
        self._proposal_time = self.get_clock().now().nanoseconds * 1e-9
        if self.trigger == "proposal":
            self._prop_wall = self._proposal_time
            if self.lockstep:
                # Sim time: the proposal answers the state stamped stamp_ns.
                self._proposal_time = msg.stamp_ns * 1e-9 if msg.stamp_ns > 0 else (
                    self._state_stamp or 0.0)
                if self._state_stamp is not None and msg.stamp_ns > round(
                        self._state_stamp * 1e9):
                    # The state it answers is still on its way (another topic): check the
                    # proposal against that state, not the previous one (on_joint_state).
                    return
            self.on_output()

    def on_joint_state(self, msg: JointState) -> None:
        self._state = msg
        stamp = _ns(msg.header.stamp)
        # An unstamped state counts as measured when it arrived (in lockstep, 0 is sim time 0).
        if not stamp and not (self.lockstep and self.trigger == "proposal"):
            stamp = self.get_clock().now().nanoseconds
        self._state_stamp = stamp * 1e-9
        self._state_wall = time.monotonic()
        p = self._proposal
        if (p is not None and self.lockstep and self.trigger == "proposal"
                and p.stamp_ns <= stamp):
            self.on_output()  # a proposal that waited for this state

    def on_backstop(self) -> None:
        """trigger=proposal, real time: brake (one output per period) once proposals stop."""
        now = self.get_clock().now().nanoseconds * 1e-9
        if (now - self._prop_wall >= self.filter.params.watchdog_timeout - 1e-6
                and now - self._last_out_wall >= 0.999 * self.filter.output_dt):
            self.on_output()

    def on_backstop_lockstep(self) -> None:
        """trigger=proposal, lockstep: answer a new state that got no proposal in time."""
        st = self._state_stamp
        if st is None or (self._last_out_stamp is not None and st <= self._last_out_stamp):
            return
        if time.monotonic() - self._state_wall >= self.filter.params.watchdog_timeout:
            self.on_output()

    def on_estop(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        latched = bool(req.data)
        reason = "latched by service call" if latched else "released by service call"
        try:
            write_estop(self.estop_path, latched, reason)
        except OSError as e:
            if latched:  # latch anyway; say that it will not survive a restart
                self.estop = True
                self.publish_estop_state()
            resp.success = False
            resp.message = (f"cannot write {self.estop_path}: {e}; e-stop "
                            f"{'latched (not persisted)' if latched else 'stays latched'}")
            self.get_logger().error(resp.message)
            return resp
        self.estop = latched
        self.publish_estop_state()
        resp.success = True
        resp.message = f"e-stop {'latched' if latched else 'released'} ({self.estop_path})"
        if latched:  #
            self.get_logger().warning(resp.message)
        else:
            self.get_logger().info(resp.message)
        return resp

    def _measured_velocity(self) -> np.ndarray | None:
        """The latest joint velocities in profile order, or None when they cannot be matched."""
        st = self._state
        if st is None or len(st.velocity) != len(st.name):
            return None
        pos = [self._index.get(n) for n in st.name]
        if sorted(p for p in pos if p is not None) != list(range(len(self.joint_names))):
            return None
        v = np.zeros(len(self.joint_names))
        for p, x in zip(pos, st.velocity):
            if p is not None:
                v[p] = x
        return v

    def _start(self) -> None:
        v0 = self._measured_velocity()
        try:
            self.filter.reset(v0)
            how = ("from rest" if v0 is None
                   else f"from the measured velocities {v0.round(4).tolist()}")
        except ValueError as e:
            self.filter.reset()
            how = f"from rest (measured velocities refused: {e})"
        self.get_logger().info(f"commanding {how}")
        self._started = True

    def on_output(self) -> None:
        if not self._started:
            if self._state is None and time.monotonic() - self._t0 < self.startup_wait:
                return  # the controller keeps what it holds until we know the arm's state
            self._start()
        now_msg = self.get_clock().now()
        now = now_msg.nanoseconds * 1e-9
        self._last_out_wall = now
        stamp_ns = now_msg.nanoseconds
        if self.lockstep and self.trigger == "proposal":
            # Sim time from the stamps: the newest state's, or the proposal's if it is newer.
            now = max(self._state_stamp or 0.0, self._proposal_time if self._proposal else 0.0,
                      self._last_out_stamp or 0.0)
            self._last_out_stamp = now
            stamp_ns = int(round(now * 1e9))
        msg, self._proposal = self._proposal, None
        st = self._state
        try:
            cmd, report = self.filter.step(
                now, None if msg is None else np.asarray(msg.velocities, dtype=float),
                q=None if st is None else np.asarray(st.position, dtype=float),
                state_names=None if st is None else list(st.name),
                state_stamp=self._state_stamp, estop=self.estop,
                proposal_time=None if msg is None else min(self._proposal_time, now))
        except Exception as e:  # noqa: BLE001 - the only command source must not die silently
            # Unexpected input the core refused: brake as for the e-stop (this period only).
            self.get_logger().error(f"safety step failed ({type(e).__name__}: {e}); braking",
                                    throttle_duration_sec=1.0)
            cmd, report = self.filter.step(now, None, estop=True)
        if msg is not None:
            self._seq = msg.seq
        if not (self.lockstep and self.trigger == "proposal"):
            # AppliedCommand.stamp_ns: when the command left (after the filter's work), so that
            # stamp minus the state's stamp is the whole state -> command latency.
            stamp_ns = self.get_clock().now().nanoseconds
        self.publish_command(stamp_ns, cmd, report.rules)

    def publish_command(self, stamp_ns: int, cmd: np.ndarray, rules: Rule) -> None:
        data = cmd.tolist()
        self.cmd_pub.publish(Float64MultiArray(data=data))
        self.applied_pub.publish(AppliedCommand(
            proposal_seq=self._seq, stamp_ns=stamp_ns, velocities=data, rules_fired=int(rules)))
        self.outputs += 1
        for r in RULES:
            if r in rules:
                self.counts[r] += 1
        if (rules & Rule.WATCHDOG) and not (self.last_rules & Rule.WATCHDOG):
            self.get_logger().warning("watchdog: no fresh proposal; braking to zero",
                                      throttle_duration_sec=1.0)
        self.last_rules = rules

    def publish_estop_state(self) -> None:
        self.estop_pub.publish(Bool(data=self.estop))

    def publish_diagnostics(self) -> None:
        st = DiagnosticStatus()
        st.name = f"{self.get_fully_qualified_name()}: safety"
        st.hardware_id = self.get_namespace()
        watchdog = bool(self.last_rules & Rule.WATCHDOG)
        if self.estop:
            st.level, st.message = DiagnosticStatus.ERROR, "e-stop latched"
        elif watchdog or (self.last_rules & Rule.STALE_STATE):
            st.level, st.message = DiagnosticStatus.WARN, "braking: " + str(self.last_rules.name)
        else:
            st.level, st.message = DiagnosticStatus.OK, "ok"
        st.values = [KeyValue(key="estop_latched", value=str(self.estop).lower()),
                     KeyValue(key="watchdog_active", value=str(watchdog).lower()),
                     KeyValue(key="outputs", value=str(self.outputs)),
                     KeyValue(key="last_rules", value=str(int(self.last_rules)))]
        st.values += [KeyValue(key=f"count.{r.name}", value=str(n))
                      for r, n in self.counts.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)


def main(args=None) -> int:
    return run_node(SafetyNode, "safety_node", args)


if __name__ == "__main__":
    sys.exit(main())
