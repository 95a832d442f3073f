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

**Which proposals count** (every mode). A proposal is the actor's answer to the joint state
stamped ``ActionProposal.stamp_ns``. It is *not an action* -- counted on ``/diagnostics``
(``rejected.*``), logged, and never sent -- when it is **stale** (its state is older than
``watchdog_timeout``), **from the future** (stamped more than ``watchdog_timeout`` after the
node's newest time), or **out of order** (within one stream ``seq`` must increase and the stamp
must not decrease; a new stream -- a restarted actor, whose ``seq`` starts again -- begins once
the previous one has been silent for ``watchdog_timeout``). A proposal whose state has not
arrived yet waits for it (at most ``answer_wait``), so it is judged against the state it answers.
Joint states stamped after their arrival count from their arrival; a state older than the
newest one is ignored (``rejected.old_state``) unless the stream has been silent for
``state_timeout``.

**When a command goes out** (``safety.trigger``). In every mode two commands never leave less
than one output period apart (node's monotonic clock), so a driver that samples once per
period sees at most one change per period: bursts, duplicates and timer catch-ups cannot
multiply the acceleration. ``AppliedCommand.stamp_ns`` is the (ROS clock) time the command was
decided; it is sent right after (the filter's few tens of µs).

* ``timer`` -- every output period (``safety.output_hz``, up to 1 kHz on a real arm), the latest
  proposal held as the target and approached within the limits between policy steps. A tick
  that comes too early (executor latency, rcl timer catch-up) waits for the period if that is
  short (``<= 0.3`` period and ``<= 0.3`` ms), else it is skipped (``skipped_periods``): the
  driver then holds the previous command, and ``safety.missed_period_safe`` keeps that inside
  the jerk limit.
* ``proposal`` (``auto`` without ``output_hz``: the sim) -- one command per proposal, at once
  (the state -> command latency is the actor's and this node's compute, not a timer's phase),
  or as soon as a period has passed since the previous command; the limits evaluated at the
  control period. When proposals stop (or the e-stop latches), a backstop timer (5 checks per
  period) sends a braking command every period once ``watchdog_timeout`` has passed since the
  last accepted proposal arrived.
* lockstep (``sim.clock = lockstep`` with the ``proposal`` trigger: the sim graph) -- the node's
  time is the sim time carried by the joint-state stamps (no ``use_sim_time`` needed): a
  proposal counts for the state it answered, and each state gets at most one command (the sim
  steps once per command); a proposal whose state was already answered is late
  (``rejected.late_proposal``): applied to the next state it would shift every later one. A state that gets no proposal is answered by the backstop once
  ``watchdog_timeout`` wall seconds have passed since the first unanswered state arrived, and
  at once while no proposal has been accepted for ``watchdog_timeout`` (a dead actor is braked
  one state at a time, however fast states stream). Lockstep is for the sim only: on a real
  arm use ``sim.clock: realtime`` (``launch/config/safety.yaml`` and the ``robot`` graph do).

**E-stop.** ``true`` latches at once: the braking command goes out as soon as the output
spacing allows, before anything is written; the file is written by a worker thread and the
service answers once it is on disk (the executor keeps sending commands meanwhile). ``false``
releases only after the released state is on disk. Requests are applied in call order.

Start-up: the first command is sent once a joint state has arrived (the filter starts from the
measured joint velocities, so a restarted node does not step the held command), or after
``startup_wait`` s without one (then from rest, braking on the stale-state rule).
"""
from __future__ import annotations

import json
import math
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.task import Future
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


class _Proposal:
    """An accepted proposal and when it arrived."""

    __slots__ = ("msg", "seq", "stamp_ns", "time", "mono")

    def __init__(self, msg: ActionProposal, time_s: float, mono: float) -> None:
        self.msg = msg
        self.seq = int(msg.seq)
        self.stamp_ns = int(msg.stamp_ns)
        self.time = time_s  # the filter's clock: ROS time of arrival, or (lockstep) sim time
        self.mono = mono  # monotonic arrival (watchdog, streams)


#: Why a proposal or state was not used (keys of the ``rejected.*`` diagnostics).
REJECTIONS = ("stale_proposal", "future_proposal", "out_of_order_proposal", "late_proposal",
              "old_state")


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
        p = self.filter.params
        dt = self.filter.output_dt
        self.dt = dt
        self.wd = p.watchdog_timeout
        self._wd_ns = int(round(p.watchdog_timeout * 1e9))
        self.answer_wait = float(self.declare_parameter(
            "answer_wait", min(0.5 * dt, 0.01), ParameterDescriptor(
                description="s a proposal waits for the joint state it answers to arrive")
        ).value)

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
        self._estop_gen = 0  # requests so far; a release applies only if it is the newest
        self._writes: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="estop-writer",
                                        daemon=True)
        self._writer.start()

        # -- mode ------------------------------------------------------------------------------
        trig = self.cfg.safety.trigger
        if trig == "auto":
            trig = "proposal" if self.cfg.safety.output_hz is None else "timer"
        if trig == "proposal" and abs(1.0 / dt - self.cfg.sim.control_hz) > 1e-9:
            raise ConfigError(
                f"safety.trigger: 'proposal' sends one command per policy step, so the output "
                f"rate is the control rate ({self.cfg.sim.control_hz:g} Hz), but safety.output_hz "
                f"is {1.0 / dt:g}; use trigger 'timer' for a faster output")
        self.trigger = trig
        #: sim time from the joint-state stamps, one command per state (the sim graph)
        self.lockstep = self.cfg.sim.clock == "lockstep" and trig == "proposal"

        # -- inputs ----------------------------------------------------------------------------
        self._accepted: _Proposal | None = None  # newest accepted proposal
        self._pending: _Proposal | None = None  # accepted, not yet handed to the filter
        self._seq = 0  # seq of the proposal the filter holds
        self._state: JointState | None = None
        self._state_ns: int | None = None  # stamp of the newest state (arrival if later)
        self._state_stamp: float | None = None  # the same in s
        self._state_mono = -math.inf  # when it arrived
        self._state_raw_ns = 0  # its header stamp as sent (AppliedCommand.state_stamp_ns)
        self._unanswered_mono: float | None = None  # lockstep: first state since the last output
        self._unanswered = 0  # lockstep: states since the last output
        self.create_subscription(ActionProposal, names["proposal_topic"], self.on_proposal,
                                 COMMAND_QOS)
        self.create_subscription(JointState, names["joint_states_topic"], self.on_joint_state,
                                 STATE_QOS)

        # -- outputs ---------------------------------------------------------------------------
        self.cmd_pub = self.create_publisher(Float64MultiArray, names["command_topic"],
                                             COMMAND_QOS)
        self.applied_pub = self.create_publisher(AppliedCommand, names["applied_topic"], 10)
        self.estop_pub = self.create_publisher(Bool, names["estop_state_topic"], LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, names["diagnostics_topic"], 10)
        self.create_service(SetBool, names["estop_service"], self.on_estop)
        self.publish_estop_state()

        self.counts = {r: 0 for r in RULES}
        self.rejected = {k: 0 for k in REJECTIONS}
        self.outputs = 0
        self.skipped_periods = 0
        self.superseded = 0  # accepted proposals replaced before they went out (bursts)
        self.last_rules = Rule(0)
        self._started = False
        self._t0 = time.monotonic()
        self._last_out_mono = -math.inf  # monotonic decision time of the last command
        self._last_out_ros = -math.inf  # its stamp (ROS clock, s)
        self._last_out_ns: int | None = None  # lockstep: sim time (ns) of the last command
        self._defer_timer = None
        self._defer_at = math.inf
        if trig == "timer":
            self.create_timer(dt, self.on_tick)
        elif self.lockstep:
            self.create_timer(min(dt, self.wd) / 4, self.on_backstop_lockstep)
        else:  # checked 5x per period, so braking starts within watchdog_timeout + dt/5
            self.create_timer(dt / 5, self.on_backstop)
        self.create_timer(1.0, self.publish_diagnostics)
        mode = f"{trig} (lockstep time)" if self.lockstep else trig
        self.get_logger().info(
            f"safety node {self.get_fully_qualified_name()} profile={profile.name} "
            f"output_hz={1.0 / dt:g} trigger={mode} watchdog={p.watchdog_timeout:g}s "
            f"state_timeout={p.state_timeout:g}s command_topic="
            f"{self.resolve_topic_name(names['command_topic'])} estop_file={self.estop_path} "
            f"estop={'latched' if self.estop else 'released'}")
        if self.cfg.sim.clock == "lockstep" and trig == "proposal":
            self.get_logger().warning(
                "sim.clock is 'lockstep': commands follow the sim time in the joint-state "
                "stamps, one per state. That is for the simulator; on a real arm set "
                "sim.clock: realtime (launch/config/safety.yaml does)")

    # -- helpers ------------------------------------------------------------------------------

    def _ros_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _reject(self, kind: str, detail: str) -> None:
        self.rejected[kind] += 1
        self.get_logger().warning(f"{kind.replace('_', ' ')} ignored ({detail}); "
                                  f"{self.rejected[kind]} so far", throttle_duration_sec=1.0)

    def _judge(self, msg: ActionProposal, mono: float) -> str | None:
        """Why ``msg`` is not an action (a rejection key), or None when it is one."""
        stamp = int(msg.stamp_ns)
        ref = self._state_ns if self.lockstep else self._ros_ns()
        if ref is not None:
            if stamp < ref - self._wd_ns:
                self._reject("stale_proposal", f"seq {msg.seq}: its state is "
                             f"{(ref - stamp) * 1e-9:.3g} s old, timeout {self.wd:g} s")
                return "stale_proposal"
            if stamp > ref + self._wd_ns:
                self._reject("future_proposal", f"seq {msg.seq}: stamped "
                             f"{(stamp - ref) * 1e-9:.3g} s ahead of the node's time")
                return "future_proposal"
        if self.lockstep and self._last_out_ns is not None and stamp <= self._last_out_ns:
            # Its state already has its command (the backstop answered it): applying it to the
            # next state would shift every later proposal by one state.
            self._reject("late_proposal", f"seq {msg.seq}: its state was already answered")
            return "late_proposal"
        last = self._accepted
        if last is not None and mono - last.mono <= self.wd:  # the same stream
            if int(msg.seq) <= last.seq or stamp < last.stamp_ns:
                self._reject("out_of_order_proposal", f"seq {msg.seq} stamp {stamp} after "
                             f"seq {last.seq} stamp {last.stamp_ns}")
                return "out_of_order_proposal"
        return None

    def _pending_ready(self, mono: float) -> bool:
        """The pending proposal's state is here (or it waited long enough for it)."""
        p = self._pending
        if p is None:
            return False
        if self._state_ns is not None and p.stamp_ns <= self._state_ns:
            return True
        return not self.lockstep and mono - p.mono >= self.answer_wait

    def _since_out(self) -> float:
        """Seconds since the last command, by its stamp's clock and by the monotonic clock (the
        smaller: the spacing holds in the stamps a log shows and in real time); the monotonic
        one alone when the ROS clock was stepped."""
        mono = time.monotonic() - self._last_out_mono
        ros = self._ros_ns() * 1e-9 - self._last_out_ros
        if ros < 0.0 or ros > mono + 0.1:
            return mono
        return min(ros, mono)

    def _quiet(self, mono: float) -> bool:
        """No proposal accepted within the watchdog timeout (real time: on the filter's clock,
        so that the filter's watchdog has fired by the time this says so)."""
        last = self._accepted
        if last is None:
            return True
        if self.lockstep:
            return mono - last.mono > self.wd
        return self._ros_ns() * 1e-9 - last.time > self.wd

    def _schedule(self, at_mono: float) -> None:
        """Run :meth:`_try_output` again at ``at_mono`` (one pending one-shot, the earliest)."""
        if self._defer_timer is not None:
            if self._defer_at <= at_mono:
                return
            self.destroy_timer(self._defer_timer)
        self._defer_at = at_mono
        self._defer_timer = self.create_timer(max(at_mono - time.monotonic(), 1e-5),
                                              self._on_deferred)

    def _on_deferred(self) -> None:
        if self._defer_timer is not None:
            self.destroy_timer(self._defer_timer)
            self._defer_timer = None
            self._defer_at = math.inf
        self._try_output()

    # -- callbacks ----------------------------------------------------------------------------

    def on_proposal(self, msg: ActionProposal) -> None:
        mono = time.monotonic()
        if self._judge(msg, mono) is not None:
            return
        t = int(msg.stamp_ns) * 1e-9 if self.lockstep else self._ros_ns() * 1e-9
        if self._pending is not None and self.trigger != "timer":
            self.superseded += 1
        self._pending = self._accepted = _Proposal(msg, t, mono)
        if self.trigger != "timer":
            self._try_output()

    def on_joint_state(self, msg: JointState) -> None:
        mono = time.monotonic()
        stamp = _ns(msg.header.stamp)
        if not self.lockstep:
            # Real time: a stamp after the arrival (or none) counts from the arrival.
            now = self._ros_ns()
            stamp = now if (not stamp or stamp > now) else stamp
        if (self._state_ns is not None and stamp <= self._state_ns
                and mono - self._state_mono <= self.filter.params.state_timeout):
            if stamp < self._state_ns:
                self._reject("old_state", f"stamp {stamp} before the newest {self._state_ns}")
            return
        self._state = msg
        self._state_raw_ns = _ns(msg.header.stamp)
        self._state_ns = stamp
        self._state_stamp = stamp * 1e-9
        self._state_mono = mono
        if self.lockstep:
            if self._unanswered_mono is None:
                self._unanswered_mono = mono
            self._unanswered += 1
            if self._pending_ready(mono) or self._streaming_unanswered(mono):
                self._try_output()
        elif self._pending is not None and self.trigger != "timer" and self._pending_ready(mono):
            self._try_output()

    def _try_output(self) -> None:
        """trigger=proposal: send a command now if the spacing and the inputs allow it."""
        mono = time.monotonic()
        if self.lockstep:
            st = self._state_ns
            if st is None or (self._last_out_ns is not None and st <= self._last_out_ns):
                return  # this state has its command; the pending proposal waits for the next
            self._output(take=self._pending_ready(mono))
            return
        if self._pending is not None and not self._pending_ready(mono):
            self._schedule(self._pending.mono + self.answer_wait)
            return
        since = self._since_out()
        if since < self.dt:
            self._schedule(mono + self.dt - since)
            return
        self._output(take=True)

    def on_backstop(self) -> None:
        """trigger=proposal, real time: brake every period once proposals stop (or e-stop)."""
        mono = time.monotonic()
        if self._pending is not None and self._pending_ready(mono):
            self._try_output()
        elif (self._quiet(mono) or self.estop) and self._since_out() >= self.dt:
            self._output(take=True)

    def _streaming_unanswered(self, mono: float) -> bool:
        """Lockstep: states keep coming although no proposal answers them (a dead actor beside a
        driver that streams: brake one state at a time, without waiting)."""
        return self._unanswered >= 2 and self._quiet(mono)

    def on_backstop_lockstep(self) -> None:
        """Lockstep: answer a new state that got no proposal in time."""
        st = self._state_ns
        if st is None or (self._last_out_ns is not None and st <= self._last_out_ns):
            return
        mono = time.monotonic()
        waited = mono - (self._unanswered_mono if self._unanswered_mono is not None else mono)
        if waited >= self.wd or self._streaming_unanswered(mono):
            self._output(take=self._pending_ready(mono))

    def on_tick(self) -> None:
        """trigger=timer: one command per output period, never two within one."""
        early = self.dt - self._since_out()
        if early > 0.0:
            if early > min(0.3 * self.dt, 3e-4):
                self.skipped_periods += 1
                return
            while self._since_out() < self.dt:
                pass  # a short wait keeps the period (a skip would cost a whole one)
        mono = time.monotonic()
        self._output(take=self._pending_ready(mono))

    async def on_estop(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        latched = bool(req.data)
        self._estop_gen += 1
        gen = self._estop_gen
        if latched:  # brake first; the file follows
            self.estop = True
            self.publish_estop_state()
            if self.trigger != "timer" and not self.lockstep:
                self._try_output()
        reason = "latched by service call" if latched else "released by service call"
        done = Future()
        self._writes.put((latched, reason, done))
        err = await done
        if err is not None:
            resp.success = False
            resp.message = (f"cannot write {self.estop_path}: {err}; e-stop "
                            f"{'latched (not persisted)' if latched else 'stays latched'}")
            self.get_logger().error(resp.message)
            return resp
        if not latched and gen == self._estop_gen:
            self.estop = False
            self.publish_estop_state()
        elif not latched:
            resp.success = False
            resp.message = "a newer e-stop request came first; e-stop stays latched"
            return resp
        resp.success = True
        resp.message = f"e-stop {'latched' if latched else 'released'} ({self.estop_path})"
        if latched:
            self.get_logger().warning(resp.message)
        else:
            self.get_logger().info(resp.message)
        return resp

    def _write_loop(self) -> None:
        """The e-stop file writer (a thread: an fsync must never delay a command)."""
        while True:
            item = self._writes.get()
            if item is None:
                return
            latched, reason, done = item
            err = None
            try:
                write_estop(self.estop_path, latched, reason)
            except OSError as e:
                err = str(e)
            done.set_result(err)

    def destroy_node(self) -> None:
        writer = getattr(self, "_writer", None)  # (absent when the config was refused)
        if writer is not None:
            self._writes.put(None)
            writer.join(timeout=10.0)  # a latch being written reaches the disk
        super().destroy_node()

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

    def _output(self, take: bool) -> None:
        """One command: the filter's step on the newest inputs (``take``: with the pending
        proposal, else with the one the filter holds)."""
        if not self._started:
            if self._state is None and time.monotonic() - self._t0 < self.startup_wait:
                return  # the controller keeps what it holds until we know the arm's state
            self._start()
        stamp_ns = self._ros_ns()
        self._last_out_mono = time.monotonic()
        self._last_out_ros = stamp_ns * 1e-9
        if self.lockstep:
            stamp_ns = self._state_ns if self._state_ns is not None else (self._last_out_ns or 0)
            self._last_out_ns = stamp_ns
            self._unanswered_mono = None
            self._unanswered = 0
        now = stamp_ns * 1e-9
        prop = self._pending if take else None
        if take:
            self._pending = None
        st = self._state
        try:
            cmd, report = self.filter.step(
                now, None if prop is None else np.asarray(prop.msg.velocities, dtype=float),
                q=None if st is None else np.asarray(st.position, dtype=float),
                state_names=None if st is None else list(st.name),
                state_stamp=self._state_stamp, estop=self.estop,
                proposal_time=None if prop is None else min(prop.time, now))
        except Exception as e:  # noqa: BLE001 - the only command source must not die silently
            # Unexpected input the core refused: brake as for the e-stop (this period only).
            self.get_logger().error(f"safety step failed ({type(e).__name__}: {e}); braking",
                                    throttle_duration_sec=1.0)
            cmd, report = self.filter.step(now, None, estop=True)
        if prop is not None:
            self._seq = prop.seq
        self.publish_command(stamp_ns, cmd, report.rules)

    def publish_command(self, stamp_ns: int, cmd: np.ndarray, rules: Rule) -> None:
        data = cmd.tolist()
        self.cmd_pub.publish(Float64MultiArray(data=data))
        self.applied_pub.publish(AppliedCommand(
            proposal_seq=self._seq, stamp_ns=stamp_ns, state_stamp_ns=self._state_raw_ns,
            velocities=data, rules_fired=int(rules)))
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
                     KeyValue(key="last_rules", value=str(int(self.last_rules))),
                     KeyValue(key="skipped_periods", value=str(self.skipped_periods)),
                     KeyValue(key="superseded_proposals", value=str(self.superseded))]
        st.values += [KeyValue(key=f"count.{r.name}", value=str(n))
                      for r, n in self.counts.items()]
        st.values += [KeyValue(key=f"rejected.{k}", value=str(n))
                      for k, n in self.rejected.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)


def main(args=None) -> int:
    return run_node(SafetyNode, "safety_node", args)


if __name__ == "__main__":
    sys.exit(main())
