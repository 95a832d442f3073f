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

The logic lives in :mod:`robot_rl.actor`: :class:`~robot_rl.actor.ActorCore` (observation, rewards,
behaviour policy) and :class:`~robot_rl.actor.Actor` (the episode state machine: start, resetting,
homing, running, paused, awaiting mark; policy, demo or intervention actions; the outbox and its
cut; the late-applied fallback), unit-tested without rclpy (tests/unit/test_actor_episodes.py).
This node is msg -> core -> msg: it pairs joint and task states, converts messages, calls the reset
service and publishes what the core hands its :class:`~robot_rl.actor.ActorPort` methods.
"""
from __future__ import annotations

import array
import math
import sys
import time

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from robot_rl import graph
from robot_rl.actor import Actor, ActorCore, Homing, Outbox, TransitionRow, new_session
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

        # -- state: the pairing of joint and task states; the episodes are the core's ---------
        self._js: tuple[np.ndarray, np.ndarray, int] | None = None  # q, dq, stamp_ns
        self._js_wall = 0.0
        self._ts: TaskState | None = None
        self._last_tick: tuple[int, int] | None = None
        self._reset_future = None
        self._reset_reported = True
        self._last_ack = -math.inf
        self.demos = self.mode_param == "demos"
        try:
            homing = (Homing(np.asarray(self.cfg.robot.home, float),
                             np.asarray(self.cfg.robot.limits.dq_max, float),
                             speed=self.homing_speed, tolerance=self.homing_tolerance)
                      if self.reset_mode == "homing" else None)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.actor = Actor(self.core, self, self.outbox, demos=self.demos, homing=homing,
                           applied_timeout=self.applied_timeout,
                           teleop_timeout=self.teleop_timeout)

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
            self.actor.bad_states += 1
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
        self.actor.applied(int(msg.proposal_seq), msg.velocities, int(msg.rules_fired),
                           time.monotonic())

    def on_teleop(self, msg: TeleopCommand) -> None:
        self.actor.teleop(msg.action, bool(msg.deadman), int(msg.episode_mark), time.monotonic())

    def on_ack(self, msg: ReplayAck) -> None:
        if msg.robot_id == self.robot_id and msg.actor_session == self.session:
            now = time.monotonic()
            # acknowledgements again after a silence: a (re)started replay node; send it
            # everything it has not acknowledged now instead of at the backed-off times
            self.actor.ack(int(msg.committed_seq), now, rewind=now - self._last_ack > 3.0)
            self._last_ack = now

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
        self.actor.step(q, dq, stamp, ts.goal, ts.object_pose if len(ts.object_pose) else None,
                        int(ts.episode_id), time.monotonic())

    # -- ActorPort: what the core sends out -------------------------------------------------

    def propose(self, seq: int, stamp_ns: int, velocities: np.ndarray) -> None:
        self.proposal_pub.publish(ActionProposal(seq=seq, stamp_ns=int(stamp_ns),
                                                 velocities=velocities.tolist()))

    def send(self, row: TransitionRow) -> None:
        """Publish a transition ("cannot publish data" when DDS is saturated raises: the core
        counts it and keeps the row in its outbox)."""
        self.transition_pub.publish(Transition(
            observation=_f32(row.observation), action=_f32(row.action),
            next_observation=_f32(row.next_observation), reward=row.reward,
            terminated=row.terminated, truncated=row.truncated, source=row.source,
            robot_id=row.robot_id, actor_session=row.actor_session, seq=row.seq,
            episode_id=row.episode_id, step_index=row.step_index, stamp_ns=row.stamp_ns,
            policy_version=row.policy_version, safety_rules=row.safety_rules))

    def request_reset(self) -> bool:
        if not self.reset_client.service_is_ready():
            return False
        self._reset_future = self.reset_client.call_async(Trigger.Request())
        self._reset_reported = False
        return True

    def log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy ties a call site to one severity
        if level == "error":
            self.get_logger().error(text)
        elif level == "warning":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    # -- housekeeping -----------------------------------------------------------------------

    def on_housekeeping(self) -> None:
        fut = self._reset_future
        if fut is not None and fut.done() and not self._reset_reported:
            self._reset_reported = True
            res = fut.result()
            self.actor.reset_answer(res is not None and bool(res.success),
                                    str(getattr(res, "message", res)), time.monotonic())
        self.actor.housekeeping(time.monotonic())

    def publish_status(self) -> None:
        core, act = self.core, self.actor
        now = time.monotonic()
        rate = (core.env_steps - self._steps_status) / max(now - self._t_status, 1e-9)
        self._t_status, self._steps_status = now, core.env_steps
        level = "warn" if act.mode == "paused" else "ok"
        fmt = (lambda x: "" if math.isnan(x) else f"{x:.4g}")
        self.diag_pub.publish(status_message(self, level, act.mode, {
            "role": "actor", "robot_id": self.robot_id, "env_steps": core.env_steps,
            "env_steps_per_s": f"{rate:.1f}", "episodes": core.episodes,
            "success_rate": fmt(core.success_rate), "episode_return": fmt(core.mean_return),
            "policy_version": core.policy_version, "policies_rejected": core.policies_rejected,
            "sent": act.sent, "outbox": len(self.outbox), "acked_seq": self.outbox.acked,
            "resent": self.outbox.resent, "applied_missing": act.applied_missing,
            "bad_states": act.bad_states, "publish_failures": act.publish_failures,
            "intervention_rate": ("" if math.isnan(act.intervention_rate)
                                  else f"{act.intervention_rate:.3f}"),
            "intervention_steps": act.intervention_steps,
            "demo_episodes_sent": act.demo_episodes_sent,
            "demo_episodes_discarded": act.demo_episodes_discarded,
            "teleop_refused": act.teleop_refused,
            "mode": act.mode,
            "session": f"{self.session:#x}"}))


def main(args=None) -> int:
    return run_node(ActorNode, "actor_node", args)


if __name__ == "__main__":
    sys.exit(main())
