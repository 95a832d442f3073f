"""actor_node: one robot's noisy DPG behaviour policy, its episodes and its transition stream.

Run it in the robot's namespace (``--ros-args -r __ns:=/robot_0``; root for a single robot).
Per-robot names are relative, shared names absolute (robot_rl.graph):

* subscribes ``joint_states`` (matched by joint name, profile order), ``task_state``
  (``TaskState``: goal, object, the sim's episode counter), ``safety/applied``
  (``AppliedCommand``: what the safety node really sent for each proposal), ``/rl/policy``
  (``PolicyWeights``, latched: the newest policy at once, also after a restart), ``/rl/replay_ack``;
* publishes ``rl/action_proposal`` (``ActionProposal``: seq, the state's stamp, joint
  velocities) -- never a robot command: only the safety node talks to the controller --,
  ``/rl/transitions`` (``Transition``) and its status on ``/diagnostics``;
* calls ``reset_episode`` (``std_srvs/Trigger``, the sim) at the end of an episode, or
  (``reset_mode: homing``, a real arm) proposes a homing move to ``robot.home`` through the
  safety node.

When it acts (``trigger``): ``state`` -- on every new joint state, with the task state that goes
with it (``robot_rl.graph.task_state_matches``: the same stamp for a task with an object, else
the newest one stamped at or before it; the sim publishes joint states once per control period,
in real time and in lockstep, and an object-free task's state when it changes); ``timer``
-- every control period with the newest state (a real arm's 1 kHz joint states).

Every transition stays in an outbox until a ``ReplayAck`` covers it and is re-sent when none
does within ``resend_after`` s (a replay restart loses nothing). When ``outbox_capacity``
transitions wait, the actor cuts its episode (the last transition is marked truncated), stops
proposing -- the safety node's watchdog brakes the arm -- and says so; it resumes with a new
episode once the replay has caught up. New weights are swapped in between control steps; weights
of another architecture, a malformed blob or an older version are refused with a log line.

The logic (observation, rewards, behaviour policy, outbox) lives in :mod:`robot_rl.actor`.
"""
from __future__ import annotations

import array
import math
import sys
import time
from collections import OrderedDict, deque

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from robot_rl import graph
from robot_rl.actor import ActorCore, Outbox, PendingStep, new_session
from robot_rl.config import ConfigError
from robot_rl.ros_nodes.common import (
    ACK_QOS,
    COMMAND_QOS,
    LATCHED_QOS,
    STATE_QOS,
    TRANSITION_QOS,
    run_node,
    status_message,
)
from robot_rl.ros_nodes.params import declare_config
from robot_rl_interfaces.msg import (
    ActionProposal,
    AppliedCommand,
    PolicyWeights,
    ReplayAck,
    TaskState,
    TeleopCommand,
    Transition,
)
from diagnostic_msgs.msg import DiagnosticArray

TOPICS = {
    "joint_states_topic": (graph.JOINT_STATES_TOPIC, "robot joint states"),
    "task_state_topic": (graph.TASK_STATE_TOPIC, "task state (goal, object pose)"),
    "proposal_topic": (graph.PROPOSAL_TOPIC, "action proposals to the safety node"),
    "applied_topic": (graph.APPLIED_TOPIC, "what the safety node sent"),
    "transitions_topic": (graph.TRANSITIONS_TOPIC, "transitions to the replay"),
    "ack_topic": (graph.REPLAY_ACK_TOPIC, "replay acknowledgements"),
    "policy_topic": (graph.POLICY_TOPIC, "policy weights (latched)"),
    "reset_service": (graph.RESET_SERVICE, "sim episode reset service (reset_mode: service)"),
    "teleop_topic": (graph.TELEOP_TOPIC, "operator commands (TeleopCommand)"),
    "diagnostics_topic": (graph.DIAGNOSTICS_TOPIC, "status, 1 Hz"),
}


def _f32(a: np.ndarray) -> array.array:
    return array.array("f", np.ascontiguousarray(a, dtype=np.float32).tobytes())


class ActorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("actor_node", **kwargs)
        self.cfg = declare_config(self, ("robot", "task", "sim", "agent", "run"))
        P = self._param
        names = {k: P(k, v, doc) for k, (v, doc) in TOPICS.items()}
        self.robot_id = int(P("robot_id", 0, "this robot's index (Transition.robot_id)"))
        self.trigger = P("trigger", "state", "act on each new 'state' or on a 'timer'")
        self.reset_mode = P("reset_mode", "service", "'service' (sim) or 'homing' (real arm)")
        cap = int(P("outbox_capacity", 20000, "unacknowledged transitions before pausing"))
        resend = float(P("resend_after", 2.0, "s before an unacknowledged transition is re-sent"))
        self.applied_timeout = float(P("applied_timeout", 1.0,
                                       "s to wait for the safety node's AppliedCommand"))
        self.homing_tolerance = float(P("homing_tolerance", 0.02, "homing: done within (rad)"))
        self.homing_speed = float(P("homing_speed", 0.25, "homing: fraction of dq_max"))
        seed = int(P("seed", -1, "noise seed (-1: run.seed * 1000 + robot_id)"))
        self.mode_param = P("mode", "train", "'train': the policy acts, a held deadman takes over "
                            "(source=intervention); 'demos': the operator drives, episodes are "
                            "held until marked and sent whole (source=demo)")
        self.teleop_timeout = float(P("teleop_timeout", 0.25,
                                      "s after which a teleop command no longer counts"))
        if self.mode_param not in ("train", "demos"):
            raise ConfigError(f"mode: expected 'train' or 'demos', got {self.mode_param!r}")
        if self.trigger not in ("state", "timer"):
            raise ConfigError(f"trigger: expected 'state' or 'timer', got {self.trigger!r}")
        if self.reset_mode not in ("service", "homing"):
            raise ConfigError(f"reset_mode: expected 'service' or 'homing', got {self.reset_mode!r}")
        if not 0 <= self.robot_id < 65536:
            raise ConfigError(f"robot_id: expected 0..65535, got {self.robot_id}")
        try:
            self.outbox = Outbox(cap, resend_after=resend)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.session = new_session()
        self.core = ActorCore(self.cfg, self.robot_id, self.session,
                              seed=seed if seed >= 0 else self.cfg.run.seed * 1000 + self.robot_id)
        self.joint_names = tuple(self.cfg.robot.joint_names)
        self._index_cache: dict[tuple, list[int] | None] = {}
        self.dt = self.cfg.sim.control_dt

        import torch

        torch.set_num_threads(1)  # inference of a small MLP; leave the cores to the control loop

        # -- state --------------------------------------------------------------------------
        self._js: tuple[np.ndarray, np.ndarray, int] | None = None  # q, dq, stamp_ns
        self._js_wall = 0.0
        self._ts: TaskState | None = None
        self._last_tick: tuple[int, int] | None = None
        self.pending: PendingStep | None = None
        self.awaiting: OrderedDict[int, PendingStep] = OrderedDict()
        self.proposal_seq = 0
        self.mode = "start"  # start | running | resetting | homing | paused
        self._reset_from_episode: int | None = None
        self._reset_future = None
        self._reset_sent = 0.0
        self._last_applied: np.ndarray | None = None
        self.applied_missing = 0
        self.sent = 0
        self.bad_states = 0
        self.publish_failures = 0
        self._last_ack = -math.inf
        # -- teleop: takeover (train) and demonstrations (demos) -----------------------------
        self.demos = self.mode_param == "demos"
        self._teleop: TeleopCommand | None = None
        self._teleop_wall = -math.inf
        self._marks: deque[int] = deque()
        self.teleop_refused = 0
        self.recent_intervention: deque[int] = deque(maxlen=200)
        self.intervention_steps = 0
        self.demo_steps: list[PendingStep] = []  # completed steps of the held demo episode
        self._demo_mark: int | None = None  # success/failure decided: send when complete
        self._demo_discard: set[int] = set()  # episode ids whose steps are dropped
        self.demo_episodes_sent = 0
        self.demo_episodes_discarded = 0
        self._paused_logged = False

        # -- ROS ----------------------------------------------------------------------------
        self.proposal_pub = self.create_publisher(ActionProposal, names["proposal_topic"],
                                                  COMMAND_QOS)
        self.transition_pub = self.create_publisher(Transition, names["transitions_topic"],
                                                    TRANSITION_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, names["diagnostics_topic"], 10)
        self.create_subscription(JointState, names["joint_states_topic"], self.on_joint_state,
                                 STATE_QOS)
        self.create_subscription(TaskState, names["task_state_topic"], self.on_task_state,
                                 STATE_QOS)
        self.create_subscription(AppliedCommand, names["applied_topic"], self.on_applied, 50)
        self.create_subscription(ReplayAck, names["ack_topic"], self.on_ack, ACK_QOS)
        self.create_subscription(PolicyWeights, names["policy_topic"], self.on_policy,
                                 LATCHED_QOS)
        from robot_rl.ros_nodes.teleop_node import TELEOP_QOS

        self.create_subscription(TeleopCommand, names["teleop_topic"], self.on_teleop,
                                 TELEOP_QOS)
        self.reset_client = self.create_client(Trigger, names["reset_service"])
        if self.trigger == "timer":
            self.create_timer(self.dt, self.on_timer)
        self.create_timer(0.25, self.on_housekeeping)
        self.create_timer(1.0, self.publish_status)
        self._t_status = time.monotonic()
        self._steps_status = 0
        self.get_logger().info(
            f"actor {self.get_fully_qualified_name()} robot_id={self.robot_id} "
            f"session={self.session:#x} task={self.cfg.task.name}/{self.cfg.task.reward} "
            f"action_mode={self.cfg.task.action_mode} trigger={self.trigger} "
            f"reset={self.reset_mode} outbox_capacity={cap} policy_hash={self.core.config_hash}")

        from robot_rl.actor import action_limit_mismatch

        why = action_limit_mismatch(self.cfg)
        if why:
            self.get_logger().warning(why)

    def _param(self, name, default, doc):
        return self.declare_parameter(name, default, ParameterDescriptor(description=doc)).value

    # -- inputs -----------------------------------------------------------------------------

    def _order(self, names) -> list[int] | None:
        key = tuple(names)
        idx = self._index_cache.get(key)
        if idx is None and key not in self._index_cache:
            pos = {n: i for i, n in enumerate(key)}
            idx = [pos[n] for n in self.joint_names] if all(n in pos for n in self.joint_names) \
                else None
            self._index_cache[key] = idx
        return idx

    def on_joint_state(self, msg: JointState) -> None:
        idx = self._order(msg.name)
        if idx is None or len(msg.position) != len(msg.name) or len(msg.velocity) != len(msg.name):
            self.bad_states += 1
            self.get_logger().error(
                f"joint_states: need positions and velocities for {list(self.joint_names)}, got "
                f"names {list(msg.name)} ({len(msg.position)} positions, {len(msg.velocity)} "
                "velocities); not acting on it", throttle_duration_sec=2.0)
            return
        pos, vel = np.asarray(msg.position, float), np.asarray(msg.velocity, float)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self._js = (pos[idx], vel[idx], stamp)
        self._js_wall = time.monotonic()
        if self.trigger == "state":
            self._maybe_tick()

    def on_task_state(self, msg: TaskState) -> None:
        self._ts = msg
        if self.trigger == "state":
            self._maybe_tick()

    def _maybe_tick(self) -> None:
        js, ts = self._js, self._ts
        if js is None or ts is None or not graph.task_state_matches(js[2], ts.stamp_ns,
                                                                    len(ts.object_pose) > 0):
            return  # wait for the other half of this state
        key = (int(ts.episode_id), js[2])
        if key == self._last_tick:
            return
        self._last_tick = key
        self.tick()

    def on_timer(self) -> None:
        if self._js is None or self._ts is None:
            return
        if time.monotonic() - self._js_wall > self.cfg.safety.state_timeout:
            return  # stale: propose nothing, the safety node brakes
        self.tick()

    def on_applied(self, msg: AppliedCommand) -> None:
        v = np.asarray(msg.velocities, dtype=float)
        if v.shape != (len(self.joint_names),):
            return
        self._last_applied = v
        seq = int(msg.proposal_seq)
        step = self.awaiting.get(seq)
        if step is None and self.pending is not None and self.pending.seq == seq:
            step = self.pending
        if step is None:
            return
        step.applied.append(v)
        step.rules |= int(msg.rules_fired)
        if step is not self.pending:
            self._finalize_ready()

    def on_teleop(self, msg: TeleopCommand) -> None:
        from robot_rl.teleop import MARK_NONE

        a = np.asarray(msg.action, dtype=np.float32)
        if msg.deadman and (a.shape != (self.core.act_spec.dim,) or not np.all(np.isfinite(a))):
            self.teleop_refused += 1
            self.get_logger().error(
                f"teleop command refused: action {a.tolist()} is not "
                f"{self.core.act_spec.dim} finite values", throttle_duration_sec=2.0)
            return
        self._teleop = msg
        self._teleop_wall = time.monotonic()
        if msg.episode_mark != MARK_NONE:
            self._marks.append(int(msg.episode_mark))

    def _teleop_action(self) -> np.ndarray | None:
        """The operator's action while the deadman is held and the command fresh, else None."""
        t = self._teleop
        if t is None or not t.deadman or time.monotonic() - self._teleop_wall > self.teleop_timeout:
            return None
        return np.clip(np.asarray(t.action, dtype=np.float32), self.core.low, self.core.high)

    def on_ack(self, msg: ReplayAck) -> None:
        if msg.robot_id == self.robot_id and msg.actor_session == self.session:
            now = time.monotonic()
            if now - self._last_ack > 3.0 and len(self.outbox):
                # acknowledgements again after a silence: a (re)started replay node; send it
                # everything it has not acknowledged now instead of at the backed-off times
                self.outbox.rewind()
            self._last_ack = now
            self.outbox.ack(int(msg.committed_seq))

    def on_policy(self, msg: PolicyWeights) -> None:
        try:
            v = self.core.load_policy(bytes(msg.safetensors), int(msg.version), msg.config_hash)
        except Exception as e:  # noqa: BLE001 - a bad message must never stop the actor
            self.core.policies_rejected += 1
            self.get_logger().error(f"policy version {msg.version} rejected: {e}; keeping "
                                    f"version {self.core.policy_version}")
            return
        self.get_logger().info(f"policy version {v} in use ({len(msg.safetensors)} bytes)",
                               throttle_duration_sec=10.0)

    # -- the control step -------------------------------------------------------------------

    def tick(self) -> None:
        q, dq, stamp = self._js
        ts = self._ts
        try:
            snap = self.core.snapshot(q, dq, np.asarray(ts.goal, float),
                                      np.asarray(ts.object_pose, float) if len(ts.object_pose)
                                      else None)
            obs, dist = self.core.observe(snap)
        except ValueError as e:
            self.bad_states += 1
            self.get_logger().error(f"state refused ({e}); proposing nothing",
                                    throttle_duration_sec=2.0)
            return
        core = self.core
        completed = False
        mark = self._marks.popleft() if self._marks else None
        if mark is not None and self.demos:
            if self._on_mark(mark):
                return
        elif mark is not None:
            self.get_logger().info("episode marks are for demonstrations (mode: demos); "
                                   "ignored while training", throttle_duration_sec=30.0)
        if self.pending is not None:  # this state is the outcome of the pending step
            p, self.pending = self.pending, None
            reward, term, trunc, success = core.outcome(dist, p.step_index)
            if self.demos:
                # demos: the operator ends the episode with a mark; the task's success or time
                # limit only stops the arm until the mark comes
                if self._demo_mark is not None and not term:
                    trunc = True
            # This transition would fill the outbox: end the episode with it (truncated).
            cut = (len(self.outbox) + len(self.awaiting) + 1 >= self.outbox.capacity
                   and not term and not trunc)
            if cut:
                trunc = True
            p.next_observation, p.reward, p.terminated, p.truncated = obs, reward, term, trunc
            core.episode_return += reward
            core.env_steps += 1
            p.completed_at = time.monotonic()
            self.awaiting[p.seq] = p
            completed = True
            if term or trunc:
                core.end_episode(success)
                if self.demos:
                    self._finalize_ready()
                    if self._demo_mark is None:
                        self.mode = "awaiting mark"
                        self.get_logger().info(
                            f"demo episode {p.episode_id:#x}: {p.step_index + 1} steps, "
                            f"{'success' if success else 'no success'} by the task; waiting for "
                            "the operator's mark (success / failure / discard)")
                    else:
                        self._demo_maybe_send()
                    return
                if cut:
                    self.mode = "paused"
                    self.get_logger().warning(
                        f"outbox full: {len(self.outbox) + len(self.awaiting)} transitions "
                        f"unacknowledged (oldest {self.outbox.oldest_age(time.monotonic()):.1f} "
                        "s); episode cut, not proposing (the safety node brakes) until the "
                        "replay acknowledges them")
                else:
                    self._start_reset()
                self._finalize_ready()
                return
        try:
            self._act(obs, q, dq, stamp, ts)
        finally:
            # The previous step's transition goes out after this step's proposal: its
            # bookkeeping is not on the path from joint state to command.
            if completed:
                self._finalize_ready()

    def _act(self, obs, q, dq, stamp, ts) -> None:
        core = self.core
        if self.mode == "start":
            self._start_reset()
            return
        if self.mode == "awaiting mark":
            self._propose(np.zeros(len(self.joint_names)), stamp)  # hold the arm still
            return
        if self.mode == "paused":
            if len(self.outbox) >= self.outbox.resume_below:
                return
            self.get_logger().info(f"outbox down to {len(self.outbox)}; resuming")
            self._start_reset()
            return
        if self.mode == "resetting":
            if self._reset_future is None:
                return  # the request has not gone out yet (service not available)
            if (self._reset_from_episode is not None
                    and int(ts.episode_id) == self._reset_from_episode):
                return  # the sim has not reset yet (its new state proves the reset)
            self.mode = "running"
            core.new_episode()
        elif self.mode == "homing":
            self._homing_step(q, dq, stamp)
            return
        if self.mode != "running":
            return
        if len(self.outbox) + len(self.awaiting) >= self.outbox.capacity:
            # the cut above prevents this; never propose with a full outbox
            self.mode = "paused"
            core.end_episode(False)
            self.get_logger().warning(f"outbox full: {len(self.outbox)} transitions "
                                      "unacknowledged; not proposing")
            return
        from robot_rl.replay.schema import Source

        teleop = self._teleop_action()
        if self.demos:
            # the operator drives; a released deadman stops the arm (zero action)
            a = teleop if teleop is not None else np.zeros(core.act_spec.dim, np.float32)
            source = Source.DEMO
        elif teleop is not None:
            a, source = teleop, Source.INTERVENTION  # the human takes over
        else:
            a, source = core.act(obs), Source.POLICY
        if not self.demos:
            self.recent_intervention.append(int(source == Source.INTERVENTION))
            self.intervention_steps += int(source == Source.INTERVENTION)
        dq_cmd = core.mapper.to_joint_velocities(a, q)
        seq = self._propose(dq_cmd, stamp)
        self.pending = PendingStep(seq, obs, a, q, core.episode_id, core.step_index, int(stamp),
                                   core.policy_version, source=int(source))
        core.step_index += 1

    def _propose(self, dq_cmd: np.ndarray, stamp: int) -> int:
        seq = self.proposal_seq
        self.proposal_seq += 1
        self.proposal_pub.publish(ActionProposal(seq=seq, stamp_ns=int(stamp),
                                                 velocities=np.asarray(dq_cmd).tolist()))
        return seq

    # -- demonstrations ---------------------------------------------------------------------

    def _on_mark(self, mark: int) -> bool:
        """An operator's episode mark in demos mode; True if the tick is over."""
        from robot_rl.teleop import MARK_DISCARD, MARK_NAMES

        name = MARK_NAMES.get(mark, str(mark))
        if self.mode not in ("running", "awaiting mark"):
            self.get_logger().warning(f"mark '{name}' outside an episode ({self.mode}); ignored")
            return False
        if mark == MARK_DISCARD:
            self._demo_discard.add(self.core.episode_id)
            n = len(self.demo_steps) + len(self.awaiting) + (self.pending is not None)
            self.demo_steps.clear()
            self._demo_mark = None
            self.pending = None
            self.demo_episodes_discarded += 1
            self.get_logger().info(f"demo episode {self.core.episode_id:#x} discarded ({n} "
                                   "steps never reach the replay)")
            if self.mode == "running":
                self.core.end_episode(False)
            self._start_reset()
            return True
        self._demo_mark = mark
        if self.mode == "awaiting mark":
            self._demo_maybe_send()
            return True
        return False  # running: the pending step becomes the episode's last (truncated)

    def _complete(self, p: PendingStep) -> None:
        """A step with its outcome and applied command: stream it, or hold it (demos)."""
        if p.source == 1:  # Source.DEMO: held until the operator's mark
            if p.episode_id not in self._demo_discard:
                self.demo_steps.append(p)
                self._demo_maybe_send()
            return
        self._emit(p)

    def _demo_maybe_send(self) -> None:
        """Send the held demo episode once it is marked and every step is complete."""
        from robot_rl.teleop import MARK_NAMES

        if self._demo_mark is None or self.awaiting or self.pending is not None:
            return
        steps = sorted(self.demo_steps, key=lambda p: p.step_index)
        if steps and not (steps[-1].terminated or steps[-1].truncated):
            steps[-1].truncated = True  # marked before the task ended it
        for p in steps:
            self._emit(p)
        self.get_logger().info(
            f"demo episode {self.core.episode_id:#x} marked {MARK_NAMES[self._demo_mark]}: "
            f"{len(steps)} transitions sent as one episode (source=demo)")
        self.demo_steps.clear()
        self._demo_mark = None
        self.demo_episodes_sent += 1
        self._start_reset()

    def _finalize_ready(self, now: float | None = None) -> None:
        """Publish, in order, every awaiting step whose applied command is known."""
        while self.awaiting:
            seq, p = next(iter(self.awaiting.items()))
            if not p.applied:
                if now is None or now - p.completed_at < self.applied_timeout:
                    return
                # The safety node did not report this proposal: the controller kept the last
                # command it had. Record that (or zero if none was ever seen).
                self.applied_missing += 1
                p.applied.append(self._last_applied if self._last_applied is not None
                                 else np.zeros(len(self.joint_names)))
                self.get_logger().warning(
                    f"no AppliedCommand for proposal {seq} within {self.applied_timeout:g} s; "
                    "recording the last command the safety node sent", throttle_duration_sec=5.0)
            del self.awaiting[seq]
            self._complete(p)

    def _emit(self, p: PendingStep) -> None:
        core = self.core
        action = core.stored_action(p)
        msg = Transition(
            observation=_f32(p.observation), action=_f32(action),
            next_observation=_f32(p.next_observation), reward=float(p.reward),
            terminated=bool(p.terminated), truncated=bool(p.truncated), source=p.source,
            robot_id=self.robot_id, actor_session=self.session, seq=core.seq,
            episode_id=p.episode_id, step_index=p.step_index, stamp_ns=p.stamp_ns,
            policy_version=p.policy_version, safety_rules=p.rules)
        core.seq += 1
        self.outbox.add(msg.seq, msg, time.monotonic())  # kept until acknowledged, sent or not
        self.sent += 1
        self._publish_transition(msg)

    def _publish_transition(self, msg: Transition) -> None:
        try:
            self.transition_pub.publish(msg)
        except Exception as e:  # noqa: BLE001 - "cannot publish data" when DDS is saturated
            self.publish_failures += 1
            self.get_logger().warning(f"transition {msg.seq} not sent ({e}); it stays in the "
                                      "outbox and is re-sent", throttle_duration_sec=5.0)

    # -- episodes ---------------------------------------------------------------------------

    def _start_reset(self) -> None:
        if self.reset_mode == "homing":
            self.mode = "homing"
            return
        if not self.reset_client.service_is_ready():
            self.mode = "resetting"
            self._reset_from_episode = None
            self._reset_future = None
            self.get_logger().warning(
                f"reset service {self.reset_client.srv_name} not available; waiting",
                throttle_duration_sec=5.0)
            self._reset_sent = -math.inf
            return
        self._reset_from_episode = int(self._ts.episode_id) if self._ts is not None else None
        self._reset_future = self.reset_client.call_async(Trigger.Request())
        self._reset_sent = time.monotonic()
        self.mode = "resetting"

    def _homing_step(self, q, dq, stamp) -> None:
        home = np.asarray(self.cfg.robot.home, float)
        err = home - q
        vmax = self.homing_speed * np.asarray(self.cfg.robot.limits.dq_max, float)
        if np.max(np.abs(err)) < self.homing_tolerance and np.max(np.abs(dq)) < 0.05:
            self.mode = "running"
            self.core.new_episode()
            return
        cmd = np.clip(2.0 * err, -vmax, vmax)
        seq = self.proposal_seq
        self.proposal_seq += 1
        self.proposal_pub.publish(ActionProposal(seq=seq, stamp_ns=int(stamp),
                                                 velocities=cmd.tolist()))

    # -- housekeeping -----------------------------------------------------------------------

    def on_housekeeping(self) -> None:
        now = time.monotonic()
        self._finalize_ready(now)
        for msg in self.outbox.due(now, limit=5000):
            self._publish_transition(msg)
        if self.mode == "resetting":
            fut = self._reset_future
            if fut is None:
                if self.reset_client.service_is_ready():
                    self._start_reset()
            elif fut.done():
                res = fut.result()
                if res is None or not res.success:
                    self.get_logger().error(f"reset failed: {getattr(res, 'message', res)}; "
                                            "retrying")
                    self._start_reset()
            elif now - self._reset_sent > 5.0:
                self.get_logger().warning("reset service did not answer in 5 s; retrying")
                self._start_reset()

    def publish_status(self) -> None:
        core = self.core
        now = time.monotonic()
        rate = (core.env_steps - self._steps_status) / max(now - self._t_status, 1e-9)
        self._t_status, self._steps_status = now, core.env_steps
        level = "warn" if self.mode == "paused" else "ok"
        fmt = (lambda x: "" if math.isnan(x) else f"{x:.4g}")
        self.diag_pub.publish(status_message(self, level, self.mode, {
            "role": "actor", "robot_id": self.robot_id, "env_steps": core.env_steps,
            "env_steps_per_s": f"{rate:.1f}", "episodes": core.episodes,
            "success_rate": fmt(core.success_rate), "episode_return": fmt(core.mean_return),
            "policy_version": core.policy_version, "policies_rejected": core.policies_rejected,
            "sent": self.sent, "outbox": len(self.outbox), "acked_seq": self.outbox.acked,
            "resent": self.outbox.resent, "applied_missing": self.applied_missing,
            "bad_states": self.bad_states, "publish_failures": self.publish_failures,
            "intervention_rate": (f"{np.mean(self.recent_intervention):.3f}"
                                  if self.recent_intervention else ""),
            "intervention_steps": self.intervention_steps,
            "demo_episodes_sent": self.demo_episodes_sent,
            "demo_episodes_discarded": self.demo_episodes_discarded,
            "teleop_refused": self.teleop_refused,
            "mode": self.mode,
            "session": f"{self.session:#x}"}))


def main(args=None) -> int:
    return run_node(ActorNode, "actor_node", args)


if __name__ == "__main__":
    sys.exit(main())
