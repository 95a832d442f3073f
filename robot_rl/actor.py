"""The actor's logic, ROS-free: observations, the noisy behaviour policy, episodes, the outbox.

:class:`ActorCore` computes (observation, reward, behaviour action, applied action);
:class:`Actor` owns the episodes (the state machine, demonstrations, interventions, resets, the
outbox) and talks to the world through an :class:`ActorPort`. The actor node
(``robot_rl.ros_nodes.actor_node``) is a thin msg -> core -> msg adapter around them; the
in-process trainer (:mod:`robot_rl.agents.trainer`) is the reference it must agree with: the same
observation (``Task.observation`` of a :class:`~robot_rl.tasks.TaskSnapshot`), the same reward and
success functions, the same behaviour policy (:class:`robot_rl.agents.acting.BehaviourPolicy`:
``clip(pi(s) + eps)`` for a deterministic policy, a sample ``a ~ pi(.|s)`` for a Gaussian one).

One control step ``k`` of robot ``r``::

    state s_k (joint state + task state)  ->  a_k = clip(pi(s_k) + eps_k) or a_k ~ pi(.|s_k)
    (uniform before the first policy)  ->  ActionProposal(seq k, joint velocities)  ->  safety node  ->
    AppliedCommand(seq k, what was sent)  ->  state s_{k+1}  ->  Transition(s_k, applied a_k
    mapped back into the policy's action space, r(s_{k+1}), s_{k+1}, terminated, truncated)

The transition's action is what the robot was actually told to do (DESIGN §3): the safety node's
command for proposal ``k`` mapped back with :meth:`ActionMapper.to_action`; with a safety node at
1 kHz the mean of its commands during the step.

:class:`Outbox` keeps every transition until the replay acknowledges it (``ReplayAck``: "every
seq <= committed_seq of (robot, session) is durable") and re-sends what stays unacknowledged.
"""
from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from robot_rl.config import Config
from robot_rl.tasks import TaskSnapshot, make_task


def expected_policy_architecture(cfg: Config, obs_dim: int, act_dim: int,
                                 observation: Any = None) -> dict[str, Any]:
    """The architecture dict a policy for this config has (what ``export_policy`` writes for a
    learner given the observation spec ``observation``, an
    :class:`~robot_rl.specs.ObservationSpec`)."""
    from robot_rl.agents.config import learner_config

    lc = learner_config(cfg.agent, cfg.replay)
    arch = {"kind": "gaussian" if lc.stochastic_actor else "deterministic",
            "obs_dim": int(obs_dim), "act_dim": int(act_dim),
            "hidden": [int(h) for h in lc.hidden], "obs_normalization": lc.obs_normalization,
            "obs_clip": lc.obs_clip}
    if observation is not None:
        from robot_rl.agents.base import observation_architecture

        arch.update(observation_architecture(observation))
    return arch


def action_limit_mismatch(cfg: Config) -> str | None:
    """Why the safety node will slow down some in-bounds actions, or None if it never needs to.

    The learner learns from the *applied* action; when the policy's action space reaches beyond
    the safety limits, the actions it proposes at the edge of its box are never the ones it sees
    in replay, which slows learning (and a trained policy saturates into the clamp).
    """
    t, s = cfg.task, cfg.safety
    if t.action_mode == "ee_velocity":
        top = math.sqrt(3.0) * t.ee_speed
        if s.ee_speed_max is not None and top > s.ee_speed_max + 1e-12:
            return (f"task.ee_speed {t.ee_speed:g} m/s per axis gives up to {top:.3g} m/s, above "
                    f"safety.ee_speed_max {s.ee_speed_max:g} m/s: the safety node slows such "
                    f"actions; consider task.ee_speed <= {s.ee_speed_max / math.sqrt(3.0):.3g} or "
                    f"safety.ee_speed_max >= {top:.3g}")
        return None
    if t.joint_velocity_scale > s.limit_scale + 1e-12:
        return (f"task.joint_velocity_scale {t.joint_velocity_scale:g} exceeds safety.limit_scale "
                f"{s.limit_scale:g}: actions near +-1 ask for more than the enforced joint speed")
    return None


def new_session() -> int:
    """A random 63-bit actor session id (never 0)."""
    return secrets.randbits(63) | 1


def episode_id_for(session: int, counter: int) -> int:
    """Episode ids unique across restarts: the session's low 40 bits, then a 24-bit counter."""
    return ((session & ((1 << 40) - 1)) << 24) | (counter & ((1 << 24) - 1))


# --------------------------------------------------------------------------- inference


class NumpyPolicy:
    """A :class:`~robot_rl.agents.checkpoint.LoadedPolicy` in numpy (an
    :class:`~robot_rl.agents.acting.ActingPolicy`).

    ``__call__``: the deterministic action ``scale * tanh(MLP(clip((s - shift) * inv_std))) +
    bias`` (for a Gaussian actor: ``scale * tanh(mu) + bias``, ``mu`` the first half of the last
    layer), float32 throughout like torch's CPU kernels. One control step of a 256x256 actor
    costs about 30 us here instead of about 250 us through torch's per-op overhead: that time
    sits between a joint state and the command it causes. It agrees with the torch module to
    float32 rounding (tests/unit/test_actor.py).

    A Gaussian actor (``stochastic``) also gives :meth:`dist` -- ``mu`` and ``sigma``, with
    ``log sigma = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) * (tanh(h) + 1) / 2`` from the second
    half ``h`` -- and :meth:`sample`, ``scale * tanh(mu + sigma * xi) + bias`` for a standard
    normal draw ``xi``: :class:`~robot_rl.agents.networks.GaussianActor`'s sample
    (tests/unit/test_agents_acting.py).
    """

    def __init__(self, loaded: Any) -> None:
        sd = {k: v.detach().cpu().numpy() for k, v in loaded.actor.state_dict().items()}
        arch = loaded.architecture
        self.version = loaded.version
        self.obs_dim, self.act_dim = int(arch["obs_dim"]), int(arch["act_dim"])
        self.normalize = bool(arch["obs_normalization"])
        self.clip = np.float32(arch["obs_clip"])
        self.shift = sd["normalizer.shift"].astype(np.float32)
        self.inv_std = sd["normalizer.inv_std"].astype(np.float32)
        n = len(arch["hidden"]) + 1
        self.W = [np.ascontiguousarray(sd[f"net.layers.{i}.weight"].T, dtype=np.float32)
                  for i in range(n)]
        self.b = [sd[f"net.layers.{i}.bias"].astype(np.float32) for i in range(n)]
        self.gaussian = self.stochastic = arch["kind"] == "gaussian"
        self.scale = sd["action_scale"].astype(np.float32)
        self.bias = sd["action_bias"].astype(np.float32)
        if self.gaussian:
            from robot_rl.agents.networks import LOG_STD_MAX, LOG_STD_MIN

            self.log_std_min = np.float32(LOG_STD_MIN)
            self.log_std_half_range = np.float32(0.5 * (LOG_STD_MAX - LOG_STD_MIN))

    def _last_layer(self, observation: Any) -> np.ndarray:
        x = np.asarray(observation, dtype=np.float32)
        if x.shape != (self.obs_dim,):
            raise ValueError(f"observation: expected shape ({self.obs_dim},), got {x.shape}")
        if self.normalize:
            x = np.clip((x - self.shift) * self.inv_std, -self.clip, self.clip)
        W, b = self.W, self.b
        for i in range(len(W) - 1):
            x = x @ W[i]
            x += b[i]
            np.maximum(x, 0.0, out=x)
        return x @ W[-1] + b[-1]

    def __call__(self, observation: Any) -> np.ndarray:
        u = self._last_layer(observation)
        if self.gaussian:
            u = u[: self.act_dim]
        return (np.tanh(u) * self.scale + self.bias).astype(np.float32)

    def dist(self, observation: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of a Gaussian actor's pre-squash distribution at ``observation``."""
        if not self.gaussian:
            raise ValueError("dist: this policy is deterministic (architecture kind "
                             "'deterministic'), it has no distribution")
        out = self._last_layer(observation)
        mu, h = out[: self.act_dim], out[self.act_dim:]
        log_std = self.log_std_min + self.log_std_half_range * (np.tanh(h) + np.float32(1.0))
        return mu, np.exp(log_std).astype(np.float32)

    def sample(self, observation: Any, xi: Any) -> np.ndarray:
        """``scale * tanh(mu + sigma * xi) + bias`` for a standard normal draw ``xi``."""
        xi = np.asarray(xi, dtype=np.float32)
        if xi.shape != (self.act_dim,):
            raise ValueError(f"xi: expected shape ({self.act_dim},), got {xi.shape}")
        mu, sigma = self.dist(observation)
        return (np.tanh(mu + sigma * xi) * self.scale + self.bias).astype(np.float32)


# --------------------------------------------------------------------------- outbox


@dataclass
class _Entry:
    item: Any
    sent_at: float
    tries: int = 0


class Outbox:
    """Transitions sent but not yet acknowledged, in seq order.

    ``add`` a transition when it is first sent; ``ack(committed_seq)`` drops everything up to
    it; ``due(now)`` lists what has waited without an acknowledgement (and marks it re-sent):
    ``resend_after`` seconds after the first send, then twice as long after each re-send, up to
    ``max_backoff`` times -- a replay that is down for a while does not turn the outbox into a
    storm of re-sends. ``rewind()`` makes everything due at once (the replay is back: an
    acknowledgement came after a silence). ``full`` once ``capacity`` transitions wait: the
    actor then stops starting steps until acknowledgements make room (``resume_below``).
    """

    def __init__(self, capacity: int, resend_after: float = 2.0, resume_fraction: float = 0.9,
                 max_backoff: int = 16):
        if capacity < 1:
            raise ValueError(f"outbox_capacity: expected >= 1, got {capacity}")
        self.capacity = capacity
        self.resend_after = resend_after
        self.resume_below = max(1, int(capacity * resume_fraction))
        self.max_backoff = max_backoff
        self._q: OrderedDict[int, _Entry] = OrderedDict()
        self.acked = -1
        self.resent = 0

    def __len__(self) -> int:
        return len(self._q)

    @property
    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def add(self, seq: int, item: Any, now: float) -> None:
        if seq <= self.acked:
            return  # already durable (a late duplicate of our own)
        self._q[seq] = _Entry(item, now)

    def ack(self, committed_seq: int) -> int:
        """Drop every seq <= ``committed_seq``; returns how many were dropped."""
        if committed_seq <= self.acked:
            return 0
        self.acked = committed_seq
        n = 0
        q = self._q
        while q:
            seq = next(iter(q))
            if seq > committed_seq:
                break
            del q[seq]
            n += 1
        return n

    def due(self, now: float, limit: int = 10_000) -> list[Any]:
        """Items waiting ``resend_after`` s or more (oldest first, at most ``limit``)."""
        out = []
        base, cap = self.resend_after, self.max_backoff
        for e in self._q.values():  # seq order; a re-sent entry is young again, so scan all
            if now - e.sent_at >= base * min(1 << e.tries, cap):
                out.append(e)
                if len(out) >= limit:
                    break
        for e in out:
            e.sent_at = now
            e.tries += 1
        self.resent += len(out)
        return [e.item for e in out]

    def rewind(self) -> None:
        """Make every waiting transition due now (and reset its back-off)."""
        for e in self._q.values():
            e.sent_at = -math.inf
            e.tries = 0

    def oldest_age(self, now: float) -> float:
        if not self._q:
            return 0.0
        return now - next(iter(self._q.values())).sent_at


# --------------------------------------------------------------------------- steps


@dataclass
class PendingStep:
    """A step whose proposal went out and whose outcome (next state, applied command) is open."""

    seq: int
    observation: np.ndarray
    action: np.ndarray  # policy-space action proposed
    q: np.ndarray  # joint positions when acting (ee_velocity inverse map)
    episode_id: int
    step_index: int
    stamp_ns: int
    policy_version: int
    source: int = 0
    applied: list[np.ndarray] = field(default_factory=list)
    rules: int = 0
    next_observation: np.ndarray | None = None
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    completed_at: float = 0.0  # monotonic time the next state arrived


class ActorCore:
    """Observation, behaviour policy and episode bookkeeping of one robot's actor.

    Args:
        cfg: the run config (task, robot, agent, sim, run).
        robot_id: this robot's index.
        session: the actor session (random per start, :func:`new_session`).
        seed: seeds the exploration noise (``seed``), the warm-up actions and the Gaussian
            policy's draws (``seed + 1``).
    """

    def __init__(self, cfg: Config, robot_id: int, session: int, seed: int) -> None:
        from robot_rl.actions import ActionMapper
        from robot_rl.agents.acting import BehaviourPolicy
        from robot_rl.kinematics import Kinematics

        self.cfg = cfg
        self.robot_id = robot_id
        self.session = session
        self.task = make_task(cfg.task, cfg.robot)
        self.kin = Kinematics.from_profile(cfg.robot)
        self.mapper = ActionMapper(cfg.task, cfg.robot, kinematics=self.kin)
        self.obs_spec = self.task.observation_spec
        self.act_spec = self.mapper.spec
        self.low = self.act_spec.low.astype(np.float32)
        self.high = self.act_spec.high.astype(np.float32)
        self.architecture = expected_policy_architecture(cfg, self.obs_spec.dim, self.act_spec.dim,
                                                         self.task.obs_spec)
        from robot_rl.agents.config import config_hash

        self.config_hash = config_hash(self.architecture)
        # warmup=0: the graph's warm-up is the learner's, which publishes no policy before it
        self.behaviour = BehaviourPolicy(cfg.agent, self.low, self.high, seed=seed, warmup=0)
        self.policy: Any = None
        self.policy_version = 0
        self.policies_rejected = 0
        self.seq = 0
        self.env_steps = 0
        self.episodes = 0
        self.episode_counter = 0
        self.episode_id = episode_id_for(session, 0)
        self.step_index = 0
        self.episode_return = 0.0
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.recent_success: deque[float] = deque(maxlen=20)

    # -- policy ---------------------------------------------------------------------------

    def load_policy(self, blob: bytes, version: int, config_hash: str) -> int:
        """Swap in new weights; ``ValueError`` (keeping the current policy) when they don't fit.

        Refused: another architecture (config hash), a blob that is not a robot_rl policy, or a
        version not newer than the current one.
        """
        from robot_rl.agents.checkpoint import load_policy

        if config_hash != self.config_hash:
            raise ValueError(f"config_hash {config_hash!r} does not match this actor's "
                             f"{self.config_hash!r} (architecture {json.dumps(self.architecture)})")
        if version <= self.policy_version and self.policy is not None:
            raise ValueError(f"version {version} is not newer than the current {self.policy_version}")
        pol = NumpyPolicy(load_policy(blob, expect_hash=self.config_hash))
        probe = pol(np.zeros(self.obs_spec.dim, np.float32))
        if probe.shape != (self.act_spec.dim,) or not np.all(np.isfinite(probe)):
            raise ValueError(f"the policy's output {probe!r} is not {self.act_spec.dim} finite values")
        self.policy = pol
        self.policy_version = int(version)
        return self.policy_version

    # -- per step -------------------------------------------------------------------------

    def snapshot(self, q: np.ndarray, dq: np.ndarray, goal: np.ndarray,
                 object_pose: np.ndarray | None) -> TaskSnapshot:
        return TaskSnapshot(q=q, dq=dq, ee_pos=self.kin.ee_position(q), goal=goal,
                            object_pose=object_pose)

    def observe(self, s: TaskSnapshot) -> tuple[np.ndarray, float]:
        """``(observation, distance)`` of a snapshot; ``ValueError`` if outside the spec."""
        obs = self.task.observation(s)
        self.obs_spec.validate(obs)
        return obs, self.task.distance(s)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The behaviour action (:class:`~robot_rl.agents.acting.BehaviourPolicy`):
        ``clip(pi(s) + eps)``, or a sample of a Gaussian policy; uniform in the bounds before a
        policy arrived."""
        return self.behaviour(obs, self.policy, self.env_steps)

    def outcome(self, distance: float, step_index: int) -> tuple[float, bool, bool, bool]:
        """``(reward, terminated, truncated, success)`` of reaching a state at ``distance`` after
        ``step_index + 1`` steps (the same rules as the gym env)."""
        c = self.cfg.task
        success = distance < c.success_threshold
        terminated = bool(success and c.terminate_on_success)
        truncated = bool(step_index + 1 >= c.max_steps and not terminated)
        return self.task.reward_from_distance(distance), terminated, truncated, bool(success)

    def stored_action(self, step: PendingStep) -> np.ndarray:
        """The action a step's transition carries: the applied command (:meth:`applied_action`),
        or for a policy row with ``replay.policy_action: proposed`` the action proposed."""
        if self.cfg.replay.policy_action == "proposed" and step.source == 0:  # Source.POLICY
            return np.asarray(step.action, dtype=np.float32)
        return self.applied_action(step)

    def applied_action(self, step: PendingStep) -> np.ndarray:
        """The applied command(s) of a step mapped into the policy's action space.

        Clipped to the action box: mapping back through the Jacobian is not the exact inverse of
        the damped least-squares map, so an action at the edge of the box can come back a few
        percent outside it; the nearest action the policy could have proposed is recorded.
        """
        dq = np.mean(step.applied, axis=0) if step.applied else None
        if dq is None:
            raise ValueError("no applied command")
        return np.clip(self.mapper.to_action(dq, step.q), self.low, self.high)

    def new_episode(self) -> int:
        self.episode_counter += 1
        self.episode_id = episode_id_for(self.session, self.episode_counter)
        self.step_index = 0
        self.episode_return = 0.0
        self.behaviour.reset()
        return self.episode_id

    def end_episode(self, success: bool) -> None:
        self.episodes += 1
        self.recent_returns.append(self.episode_return)
        self.recent_success.append(float(success))

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.recent_success)) if self.recent_success else math.nan

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class TransitionRow:
    """One transition as the actor sends it (the fields of a ``Transition`` message)."""

    observation: np.ndarray
    action: np.ndarray
    next_observation: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    source: int
    robot_id: int
    actor_session: int
    seq: int
    episode_id: int
    step_index: int
    stamp_ns: int
    policy_version: int
    safety_rules: int


class ActorPort(Protocol):
    """What the episode machine (:class:`Actor`) asks of the outside world (the actor node, or
    a test's recorder). None of these may block."""

    def propose(self, seq: int, stamp_ns: int, velocities: np.ndarray) -> None:
        """Send an action proposal (joint velocities) to the safety node."""

    def send(self, row: TransitionRow) -> None:
        """Send (or re-send) a transition to the replay; may raise if the transport refuses."""

    def request_reset(self) -> bool:
        """Ask the sim to reset the episode; False when no reset service is available yet."""

    def log(self, level: str, text: str) -> None:
        """A log line (``level``: info, warning, error); the core throttles repeats itself."""


@dataclass(frozen=True)
class Homing:
    """A real arm's episode reset: a proportional move to ``robot.home`` through the safety node.

    ``command(q, dq)`` is ``clip(gain * (home - q), +-speed * dq_max)``, or None once every joint
    is within ``tolerance`` rad of home and slower than ``settle_speed`` rad/s (home, at rest).
    """

    home: np.ndarray
    dq_max: np.ndarray
    speed: float = 0.25
    tolerance: float = 0.02
    gain: float = 2.0
    settle_speed: float = 0.05

    def __post_init__(self) -> None:
        for name in ("speed", "tolerance", "gain", "settle_speed"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"homing_{name}: expected a positive number, got {v!r}")
        if self.speed > 1.0:
            raise ValueError(f"homing_speed: a fraction of dq_max in (0, 1], got {self.speed!r}")

    def command(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray | None:
        err = np.asarray(self.home, float) - q
        if np.max(np.abs(err)) < self.tolerance and np.max(np.abs(dq)) < self.settle_speed:
            return None
        vmax = self.speed * np.asarray(self.dq_max, float)
        return np.clip(self.gain * err, -vmax, vmax)


#: The actor's modes (:attr:`Actor.mode`).
MODES = ("start", "running", "resetting", "homing", "paused", "awaiting mark")


class Actor:
    """One robot's episodes, ROS-free: the state machine the actor node is an adapter of.

    Inputs, each with the caller's monotonic time ``now`` (seconds):

    * :meth:`step` -- a new state (joint state + task state): completes the pending step's
      transition and proposes the next action (policy, operator, or nothing);
    * :meth:`applied` -- the safety node's ``AppliedCommand`` for a proposal;
    * :meth:`teleop` -- an operator command (deadman, action, episode mark);
    * :meth:`ack` -- a ``ReplayAck``; :meth:`reset_answer` -- the reset service's answer;
    * :meth:`housekeeping` -- every 0.25 s: late applied commands, re-sends, reset retries.

    Outputs go through the :class:`ActorPort`. Modes (:data:`MODES`): ``start`` (nothing yet)
    -> ``resetting`` (the sim's reset service called; running again once the task state's episode
    counter moved on) or ``homing`` (``reset_mode: homing``: a move to home through the safety
    node) -> ``running`` -> at the end of an episode back to ``resetting``/``homing``. ``paused``:
    the outbox is full; nothing is proposed (the safety node's watchdog brakes) until the replay
    acknowledges enough. ``awaiting mark`` (``demos``): a demonstration episode is over (the
    task's success or time limit) or marked and not yet complete; the arm is held still (zero
    velocity proposals) until the operator's mark and every step's applied command are in, then
    the episode goes out whole (success / failure) or not at all (discard).

    A demonstration episode is held until the operator marks it: success or failure sends every
    step (source ``demo``; the last one truncated unless the task terminated it), discard drops
    them. A mark that arrives while the episode runs ends it at the step in flight; a mark that
    arrives on the same state as the task's time limit ends it once (the mark is the episode's
    mark, not the next one's).

    Args:
        core: observation, policy and bookkeeping (:class:`ActorCore`).
        port: the outside world (:class:`ActorPort`).
        outbox: transitions kept until acknowledged.
        demos: the operator drives and marks episodes (``mode: demos``); else the policy acts
            and a held deadman takes over (source ``intervention``).
        homing: reset by a homing move (a real arm) instead of the reset service.
        applied_timeout: s to wait for a proposal's ``AppliedCommand`` before recording the last
            command the safety node sent.
        teleop_timeout: s after which an operator command no longer counts.
        reset_timeout: s to wait for the reset service's answer before asking again.
    """

    def __init__(self, core: ActorCore, port: ActorPort, outbox: Outbox, *, demos: bool = False,
                 homing: Homing | None = None, applied_timeout: float = 1.0,
                 teleop_timeout: float = 0.25, reset_timeout: float = 5.0) -> None:
        self.core = core
        self.port = port
        self.outbox = outbox
        self.demos = demos
        self.homing = homing
        self.applied_timeout = applied_timeout
        self.teleop_timeout = teleop_timeout
        self.reset_timeout = reset_timeout
        self.n_joints = core.cfg.robot.n_joints
        self.mode = "start"
        self.pending: PendingStep | None = None
        self.awaiting: OrderedDict[int, PendingStep] = OrderedDict()
        self.proposal_seq = 0
        self.sim_episode: int | None = None  # the task state's episode counter, last seen
        self._reset_requested = False
        self._reset_answered = False
        self._reset_from_episode: int | None = None
        self._reset_sent = -math.inf
        self._last_applied: np.ndarray | None = None
        # operator
        self._teleop_action: np.ndarray | None = None
        self._teleop_deadman = False
        self._teleop_at = -math.inf
        self._marks: deque[int] = deque()
        self.recent_intervention: deque[int] = deque(maxlen=200)
        # demonstrations
        self.demo_steps: list[PendingStep] = []  # completed steps of the held demo episode
        self._demo_mark: int | None = None  # success/failure decided: send once complete
        self._demo_discard: set[int] = set()  # episode ids whose steps are dropped
        # counters (the node's /diagnostics)
        self.applied_missing = 0
        self.sent = 0
        self.bad_states = 0
        self.publish_failures = 0
        self.teleop_refused = 0
        self.intervention_steps = 0
        self.demo_episodes_sent = 0
        self.demo_episodes_discarded = 0
        self._logged: dict[str, float] = {}

    # -- inputs -----------------------------------------------------------------------------

    def teleop(self, action: Any, deadman: bool, mark: int, now: float) -> bool:
        """An operator command; False (counted, nothing changed) if a held deadman comes with
        an action that is not ``act_dim`` finite values."""
        from robot_rl.teleop import MARK_NONE

        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if deadman and (a.shape != (self.core.act_spec.dim,) or not np.all(np.isfinite(a))):
            self.teleop_refused += 1
            self._log("error", f"teleop command refused: action {a.tolist()} is not "
                          f"{self.core.act_spec.dim} finite values", 2.0)
            return False
        self._teleop_action, self._teleop_deadman, self._teleop_at = a, bool(deadman), now
        if mark != MARK_NONE:
            self._marks.append(int(mark))
        return True

    def operator_action(self, now: float) -> np.ndarray | None:
        """The operator's action while the deadman is held and the command fresh, else None."""
        if not self._teleop_deadman or now - self._teleop_at > self.teleop_timeout:
            return None
        return np.clip(self._teleop_action, self.core.low, self.core.high)

    def applied(self, seq: int, velocities: Any, rules: int, now: float) -> None:
        """The safety node's command for proposal ``seq`` (called for every one it sends)."""
        v = np.asarray(velocities, dtype=float)
        if v.shape != (self.n_joints,):
            return
        self._last_applied = v
        step = self.awaiting.get(seq)
        if step is None and self.pending is not None and self.pending.seq == seq:
            step = self.pending
        if step is None:
            return
        step.applied.append(v)
        step.rules |= int(rules)
        if step is not self.pending:
            self._finalize_ready(now)

    def ack(self, committed_seq: int, now: float, *, rewind: bool = False) -> None:
        """A ``ReplayAck`` for this session; ``rewind``: re-send everything unacknowledged now
        (acknowledgements again after a silence: a restarted replay node)."""
        if rewind and len(self.outbox):
            self.outbox.rewind()
        self.outbox.ack(int(committed_seq))

    def reset_answer(self, ok: bool, message: str, now: float) -> None:
        """The reset service answered; a failure asks again."""
        if self.mode != "resetting":
            return
        self._reset_answered = True
        if not ok:
            self._log("error", f"reset failed: {message}; retrying")
            self._start_reset(now)

    def housekeeping(self, now: float) -> None:
        """Late applied commands, re-sends of unacknowledged transitions, reset retries."""
        self._finalize_ready(now, overdue=True)
        for row in self.outbox.due(now, limit=5000):
            self._send(row)
        if self.mode == "resetting":
            if not self._reset_requested:
                self._start_reset(now)
            elif not self._reset_answered and now - self._reset_sent > self.reset_timeout:
                self._log("warning", f"reset service did not answer in "
                              f"{self.reset_timeout:g} s; retrying")
                self._start_reset(now)

    # -- the control step -------------------------------------------------------------------

    def step(self, q: np.ndarray, dq: np.ndarray, stamp_ns: int, goal: Any,
             object_pose: Any | None, sim_episode: int, now: float) -> None:
        """A new state: complete the pending step, then act on the state."""
        core = self.core
        self.sim_episode = int(sim_episode)
        try:
            snap = core.snapshot(q, dq, np.asarray(goal, float),
                                 None if object_pose is None else np.asarray(object_pose, float))
            obs, dist = core.observe(snap)
        except ValueError as e:
            self.bad_states += 1
            self._log("error", f"state refused ({e}); proposing nothing", 2.0)
            return
        mark = self._marks.popleft() if self._marks else None
        if mark is not None and self.demos:
            if self._on_mark(mark, now):
                return
        elif mark is not None:
            self._log("info", "episode marks are for demonstrations (mode: demos); ignored "
                          "while training", 30.0)
        completed = False
        if self.pending is not None:  # this state is the outcome of the pending step
            p, self.pending = self.pending, None
            reward, term, trunc, success = core.outcome(dist, p.step_index)
            if self.demos and self._demo_mark is not None and not term:
                trunc = True  # the operator's mark ends the episode at this step
            # This transition would fill the outbox: end the episode with it (truncated).
            cut = (len(self.outbox) + len(self.awaiting) + 1 >= self.outbox.capacity
                   and not term and not trunc)
            trunc = trunc or cut
            p.next_observation, p.reward, p.terminated, p.truncated = obs, reward, term, trunc
            core.episode_return += reward
            core.env_steps += 1
            p.completed_at = now
            self.awaiting[p.seq] = p
            completed = True
            if term or trunc:
                core.end_episode(success)
                if self.demos:
                    self._demo_episode_over(p, success, now)
                    return
                if cut:
                    self.mode = "paused"
                    self._log(
                        "warning", f"outbox full: {len(self.outbox) + len(self.awaiting)} "
                        f"transitions unacknowledged (oldest {self.outbox.oldest_age(now):.1f} "
                        "s); episode cut, not proposing (the safety node brakes) until the "
                        "replay acknowledges them")
                else:
                    self._start_reset(now)
                self._finalize_ready(now)
                return
        try:
            self._act(obs, q, dq, stamp_ns, now)
        finally:
            # The previous step's transition goes out after this step's proposal: its
            # bookkeeping is not on the path from joint state to command.
            if completed:
                self._finalize_ready(now)

    def _act(self, obs: np.ndarray, q: np.ndarray, dq: np.ndarray, stamp: int,
             now: float) -> None:
        core = self.core
        if self.mode == "start":
            self._start_reset(now)
            return
        if self.mode == "awaiting mark":
            self._propose(np.zeros(self.n_joints), stamp)  # hold the arm still
            return
        if self.mode == "paused":
            if len(self.outbox) >= self.outbox.resume_below:
                return
            self._log("info", f"outbox down to {len(self.outbox)}; resuming")
            self._start_reset(now)
            return
        if self.mode == "resetting":
            if not self._reset_requested:
                return  # the request has not gone out yet (service not available)
            if self._reset_from_episode is not None and self.sim_episode == self._reset_from_episode:
                return  # the sim has not reset yet (its new state proves the reset)
            self.mode = "running"
            core.new_episode()
        elif self.mode == "homing":
            cmd = self.homing.command(q, dq)
            if cmd is not None:
                self._propose(cmd, stamp)
                return
            self.mode = "running"
            core.new_episode()
            return
        if self.mode != "running":
            return
        if len(self.outbox) + len(self.awaiting) >= self.outbox.capacity:
            # the cut above prevents this; never propose with a full outbox
            self.mode = "paused"
            core.end_episode(False)
            self._log("warning", f"outbox full: {len(self.outbox)} transitions "
                          "unacknowledged; not proposing")
            return
        from robot_rl.replay.schema import Source

        operator = self.operator_action(now)
        if self.demos:
            # the operator drives; a released deadman stops the arm (zero action)
            a = operator if operator is not None else np.zeros(core.act_spec.dim, np.float32)
            source = Source.DEMO
        elif operator is not None:
            a, source = operator, Source.INTERVENTION  # the human takes over
        else:
            a, source = core.act(obs), Source.POLICY
        if not self.demos:
            self.recent_intervention.append(int(source == Source.INTERVENTION))
            self.intervention_steps += int(source == Source.INTERVENTION)
        seq = self._propose(core.mapper.to_joint_velocities(a, q), stamp)
        self.pending = PendingStep(seq, obs, a, q, core.episode_id, core.step_index, int(stamp),
                                   core.policy_version, source=int(source))
        core.step_index += 1

    def _propose(self, dq_cmd: np.ndarray, stamp: int) -> int:
        seq = self.proposal_seq
        self.proposal_seq += 1
        self.port.propose(seq, int(stamp), np.asarray(dq_cmd, dtype=float))
        return seq

    # -- episodes ---------------------------------------------------------------------------

    def _start_reset(self, now: float) -> None:
        if self.homing is not None:
            self.mode = "homing"
            return
        self.mode = "resetting"
        self._reset_from_episode = self.sim_episode
        self._reset_answered = False
        self._reset_requested = self.port.request_reset()
        self._reset_sent = now
        if not self._reset_requested:
            self._reset_from_episode = None
            self._log("warning", "reset service not available; waiting", 5.0)

    # -- demonstrations ---------------------------------------------------------------------

    def _on_mark(self, mark: int, now: float) -> bool:
        """An operator's episode mark in demos mode; True if the step is over."""
        from robot_rl.teleop import MARK_DISCARD, MARK_NAMES

        name = MARK_NAMES.get(mark, str(mark))
        if self.mode not in ("running", "awaiting mark"):
            self._log("warning", f"mark '{name}' outside an episode ({self.mode}); ignored")
            return False
        if mark == MARK_DISCARD:
            eid = self.core.episode_id
            self._demo_discard.add(eid)
            n = len(self.demo_steps) + len(self.awaiting) + (self.pending is not None)
            self.demo_steps.clear()
            self._demo_mark = None
            self.pending = None
            self.demo_episodes_discarded += 1
            self._log("info", f"demo episode {eid:#x} discarded ({n} steps never reach the "
                          "replay)")
            if self.mode == "running":
                self.core.end_episode(False)
            self._start_reset(now)
            return True
        self._demo_mark = mark
        if self.mode == "awaiting mark":
            self._demo_maybe_send(now)
            return True
        return False  # running: the pending step becomes the episode's last (truncated)

    def _demo_episode_over(self, last: PendingStep, success: bool, now: float) -> None:
        """The held demo episode's last step is in: hold the arm until it is marked and sent."""
        self.mode = "awaiting mark"
        if self._demo_mark is None:
            self._log(
                "info", f"demo episode {last.episode_id:#x}: {last.step_index + 1} steps, "
                f"{'success' if success else 'no success'} by the task; waiting for the "
                "operator's mark (success / failure / discard)")
        self._finalize_ready(now)  # sends it now if it is marked and every step is complete

    def _complete(self, p: PendingStep, now: float) -> None:
        """A step with its outcome and applied command: stream it, or hold it (demos)."""
        if p.source == 1:  # Source.DEMO: held until the operator's mark
            if p.episode_id not in self._demo_discard:
                self.demo_steps.append(p)
                self._demo_maybe_send(now)
            return
        self._emit(p, now)

    def _demo_maybe_send(self, now: float) -> None:
        """Send the held demo episode once it is over, marked and every step is complete."""
        from robot_rl.teleop import MARK_NAMES

        if (self.mode != "awaiting mark" or self._demo_mark is None or self.awaiting
                or self.pending is not None):
            return
        steps = sorted(self.demo_steps, key=lambda p: p.step_index)
        if steps and not (steps[-1].terminated or steps[-1].truncated):
            steps[-1].truncated = True  # marked before the task ended it
        for p in steps:
            self._emit(p, now)
        eid = steps[0].episode_id if steps else self.core.episode_id
        self._log("info", f"demo episode {eid:#x} marked {MARK_NAMES[self._demo_mark]}: "
                      f"{len(steps)} transitions sent as one episode (source=demo)")
        self.demo_steps.clear()
        self._demo_mark = None
        self.demo_episodes_sent += int(bool(steps))
        self._start_reset(now)

    # -- transitions ------------------------------------------------------------------------

    def _finalize_ready(self, now: float, overdue: bool = False) -> None:
        """Complete, in order, every awaiting step whose applied command is known; with
        ``overdue`` also those whose command is ``applied_timeout`` s late."""
        while self.awaiting:
            seq, p = next(iter(self.awaiting.items()))
            if not p.applied:
                if not overdue or now - p.completed_at < self.applied_timeout:
                    return
                # The safety node did not report this proposal: the controller kept the last
                # command it had. Record that (or zero if none was ever seen).
                self.applied_missing += 1
                p.applied.append(self._last_applied if self._last_applied is not None
                                 else np.zeros(self.n_joints))
                self._log("warning", f"no AppliedCommand for proposal {seq} within "
                              f"{self.applied_timeout:g} s; recording the last command the "
                              "safety node sent", 5.0)
            del self.awaiting[seq]
            self._complete(p, now)

    def _emit(self, p: PendingStep, now: float) -> None:
        core = self.core
        row = TransitionRow(
            observation=p.observation, action=core.stored_action(p),
            next_observation=p.next_observation, reward=float(p.reward),
            terminated=bool(p.terminated), truncated=bool(p.truncated), source=int(p.source),
            robot_id=core.robot_id, actor_session=core.session, seq=core.seq,
            episode_id=p.episode_id, step_index=p.step_index, stamp_ns=p.stamp_ns,
            policy_version=p.policy_version, safety_rules=p.rules)
        core.seq += 1
        self.outbox.add(row.seq, row, now)  # kept until acknowledged, sent or not
        self.sent += 1
        self._send(row)

    def _send(self, row: TransitionRow) -> None:
        try:
            self.port.send(row)
        except Exception as e:  # noqa: BLE001 - "cannot publish data" when DDS is saturated
            self.publish_failures += 1
            self._log("warning", f"transition {row.seq} not sent ({e}); it stays in the "
                          "outbox and is re-sent", 5.0)

    def _log(self, level: str, text: str, throttle: float = 0.0) -> None:
        """Log through the port; with ``throttle``, a line of the same kind (its text up to the
        first digit) at most once every ``throttle`` s."""
        if throttle > 0:
            kind = re.split(r"[0-9]", text, maxsplit=1)[0]
            t = time.monotonic()
            if t - self._logged.get(kind, -math.inf) < throttle:
                return
            self._logged[kind] = t
        self.port.log(level, text)

    # -- status -----------------------------------------------------------------------------

    @property
    def intervention_rate(self) -> float:
        return float(np.mean(self.recent_intervention)) if self.recent_intervention else math.nan
