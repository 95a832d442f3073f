"""The actor's logic, ROS-free: observations, the noisy behaviour policy, episodes, the outbox.

The actor node (``robot_rl.ros_nodes.actor_node``) is a thin adapter around this module; the
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
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.config import Config
from robot_rl.tasks import TaskSnapshot, make_task


def expected_policy_architecture(cfg: Config, obs_dim: int, act_dim: int) -> dict[str, Any]:
    """The architecture dict a policy for this config has (what ``export_policy`` writes)."""
    from robot_rl.agents.config import learner_config

    lc = learner_config(cfg.agent, cfg.replay)
    return {"kind": "gaussian" if lc.stochastic_actor else "deterministic",
            "obs_dim": int(obs_dim), "act_dim": int(act_dim),
            "hidden": [int(h) for h in lc.hidden], "obs_normalization": lc.obs_normalization,
            "obs_clip": lc.obs_clip}


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
        self.architecture = expected_policy_architecture(cfg, self.obs_spec.dim, self.act_spec.dim)
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
