"""The task interface: observation, reward and success from the robot's and the scene's state.

Tasks are pure and ROS-free: the PyBullet env calls them with simulated state, the actor node
calls the same functions with a real robot's joint states and a perception/mocap task state, so a
reward in simulation is the reward on the arm.

Every task is goal-conditioned in gymnasium-robotics' sense: its distance is a function of an
*achieved goal* (what the robot has brought about: reach's end-effector position, push's cube
position) and the *desired goal*, and the ``compute_*`` methods take batches of both, so a
sampler can recompute rewards for goals other than the episode's (hindsight relabelling)::

    ag, dg = task.achieved_goal(s), task.desired_goal(s)
    task.compute_reward(ag, dg) == task.reward(s)          # exactly, for every snapshot
    # from stored observation rows, without re-running the task:
    sl = task.goal_slices
    r = task.compute_reward(next_obs[:, sl["achieved_goal"]], new_goals)   # shape (B,)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from robot_rl.config import RobotProfile, TaskConfig
from robot_rl.specs import ObservationSpec, ObsField, concat_names

XYZ = ("x", "y", "z")
QUAT = ("qx", "qy", "qz", "qw")


@dataclass(frozen=True)
class TaskSnapshot:
    """Everything a task looks at, at one instant (robot base frame, SI units).

    Attributes:
        q, dq: joint positions (rad) and velocities (rad/s), profile order, shape (n,).
        ee_pos: end-effector position (m), shape (3,).
        goal: goal position (m), shape (3,).
        object_pose: (x, y, z, qx, qy, qz, qw) of the task's object, or None if it has none.
    """

    q: np.ndarray
    dq: np.ndarray
    ee_pos: np.ndarray
    goal: np.ndarray
    object_pose: np.ndarray | None = None


@dataclass(frozen=True)
class ObsPart:
    """One observation field as a task defines it: the field (key, role, element names, bounds)
    and how it is computed from a snapshot.

    A task's observation is its parts (:meth:`Task.observation_parts`) in order: the
    :class:`~robot_rl.specs.ObservationSpec`, the flat vector and every layer below (store arrays,
    networks' input size, the gym space, the actor) follow from them. Adding an observation key
    is adding a part.
    """

    key: str
    role: str
    names: tuple[str, ...]
    low: Any
    high: Any
    value: Callable[[TaskSnapshot], Any]

    def field(self) -> ObsField:
        return ObsField(self.key, (len(self.names),), "float32", self.role, tuple(self.names),
                        np.asarray(self.low, float) * np.ones(len(self.names)),
                        np.asarray(self.high, float) * np.ones(len(self.names)))


class Task(ABC):
    """A task's definition. Subclasses fix what is observed and what is rewarded.

    A subclass defines its observation as named parts (:meth:`observation_parts`: key, role,
    bounds and a value function each -- :class:`ObsPart`), among them one ``achieved_goal`` and one
    ``desired_goal`` field; returns the goals from a snapshot (:meth:`achieved_goal`,
    :meth:`desired_goal`) and defines the distance between the two (:meth:`_goal_distance`);
    rewards and success follow from that distance alone.
    """

    name: str = ""
    has_object: bool = False

    def __init__(self, config: TaskConfig, profile: RobotProfile):
        if config.name != self.name:
            raise ValueError(f"task.name is {config.name!r} but this is the {self.name!r} task")
        self.config = config
        self.profile = profile
        parts = self.observation_parts()
        #: the observation keyed by name (fields, roles, identity hash)
        self.obs_spec = ObservationSpec(tuple(p.field() for p in parts))
        self._values = tuple(p.value for p in parts)
        #: the flat float32 observation vector: the vector fields in order
        self.observation_spec = self.obs_spec.flat
        self._goal_slices = {}
        for role in ("achieved_goal", "desired_goal"):
            fields = self.obs_spec.by_role(role)
            if len(fields) != 1:
                raise ValueError(f"{self.name}: the observation needs exactly one {role} field, "
                                 f"has {[f.key for f in fields]}")
            self._goal_slices[role] = self.obs_spec.slices[fields[0].key]

    @property
    def goal_slices(self) -> dict[str, slice]:
        """Where the goals sit in the flat observation vector: ``{"achieved_goal": slice,
        "desired_goal": slice}``, index ranges into ``observation_spec.names``.

        ``observation(s)[goal_slices["achieved_goal"]]`` is ``achieved_goal(s)`` in float32 (and
        likewise the desired goal), so a stored row can be relabelled with these and
        :meth:`compute_reward` without re-running the task. An env observation clipped into its
        spec (``info["observation_clipped"]``, a physics spike) holds the clipped values.
        """
        return dict(self._goal_slices)

    @property
    def goal_dim(self) -> int:
        """Length of an achieved or desired goal (3 for reach and push: x, y, z in metres)."""
        return self.obs_spec.by_role("desired_goal")[0].size

    # -- specs ------------------------------------------------------------------------------

    def robot_parts(self, ee_role: str = "proprio") -> list[ObsPart]:
        """The robot's own observation: joint positions ``q``, velocities ``dq`` and the
        end-effector position ``ee_pos`` (role ``ee_role``). Hard bounds of what can physically
        be observed: the position range plus a little for sensor noise / overshoot, twice the
        velocity limit, a 2 m box around the base."""
        lim = self.profile.limits
        n = self.profile.n_joints
        return [
            ObsPart("q", "proprio", concat_names(("q", n)), np.asarray(lim.q_min) - 0.3,
                    np.asarray(lim.q_max) + 0.3, lambda s: s.q),
            ObsPart("dq", "proprio", concat_names(("dq", n)), -2.0 * np.asarray(lim.dq_max),
                    2.0 * np.asarray(lim.dq_max), lambda s: s.dq),
            ObsPart("ee_pos", ee_role, concat_names(("ee", XYZ)), -2.0, 2.0, lambda s: s.ee_pos),
        ]

    @abstractmethod
    def observation_parts(self) -> list[ObsPart]:
        """The observation's fields in order, each with the function that computes it."""

    # -- episode set-up --------------------------------------------------------------------

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn uniformly from ``task.goal_box``."""
        box = self.config.goal_box
        return rng.uniform(box.low, box.high).astype(np.float64)

    def sample_object(self, rng: np.random.Generator) -> np.ndarray | None:
        """The object's start position, or None for tasks without an object."""
        return None

    # -- per step ---------------------------------------------------------------------------

    def observation(self, s: TaskSnapshot) -> np.ndarray:
        """The policy's observation: every part's value, in order (float32,
        ``observation_spec`` order)."""
        return np.concatenate([v(s) for v in self._values]).astype(np.float32)

    @abstractmethod
    def achieved_goal(self, s: TaskSnapshot) -> np.ndarray:
        """What the robot has achieved, comparable with :meth:`desired_goal`: shape
        ``(goal_dim,)``, a copy in the snapshot's dtype."""

    def desired_goal(self, s: TaskSnapshot) -> np.ndarray:
        """The goal the episode asks for (``s.goal``): shape ``(goal_dim,)``, a copy in the
        snapshot's dtype."""
        return np.array(s.goal, copy=True)

    @staticmethod
    @abstractmethod
    def _goal_distance(achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Distance(s) (m) between goals of shape ``(..., goal_dim)``; no input checks."""

    def distance(self, s: TaskSnapshot) -> float:
        """The task's distance to success (m): the distance between achieved and desired goal."""
        return float(self._goal_distance(self.achieved_goal(s), self.desired_goal(s)))

    def is_success(self, s: TaskSnapshot) -> bool:
        """Success: ``distance < success_threshold``."""
        return bool(self.distance(s) < self.config.success_threshold)

    def reward(self, s: TaskSnapshot) -> float:
        """dense: ``-distance``; sparse: ``0`` on success, ``-1`` otherwise."""
        return self.reward_from_distance(self.distance(s))

    def reward_from_distance(self, d: float) -> float:
        """The reward for a distance ``d`` already computed (see :meth:`reward`)."""
        if self.config.reward == "dense":
            return float(-d)
        return 0.0 if d < self.config.success_threshold else -1.0

    # -- goal-conditioned, vectorised (gymnasium-robotics' GoalEnv signatures) ---------------

    def compute_distance(self, achieved_goal: Any, desired_goal: Any) -> np.ndarray:
        """The task's distance (m) between goals, vectorised.

        Args:
            achieved_goal, desired_goal: shape ``(..., goal_dim)``; the leading (batch) shapes
                must broadcast together. float32 and float64 are computed in the dtype numpy
                promotes them to, as :meth:`distance` computes a snapshot's; other numbers are
                taken as float64.

        Returns:
            The distances, shape: the broadcast batch shape (``()`` for single goals).

        Raises:
            ValueError: a goal is not numeric, its last dimension is not ``goal_dim``, the batch
                shapes do not broadcast, or a value is not finite.
        """
        ag, dg = self._check_goals(achieved_goal, desired_goal)
        return np.asarray(self._goal_distance(ag, dg))

    def compute_reward(self, achieved_goal: Any, desired_goal: Any,
                       info: Any = None) -> np.ndarray:
        """The reward of reaching ``achieved_goal`` when ``desired_goal`` is asked for, vectorised.

        dense: ``-d``; sparse: ``0`` where ``d < success_threshold``, ``-1`` elsewhere, with ``d``
        = :meth:`compute_distance`. ``compute_reward(achieved_goal(s), desired_goal(s))`` equals
        :meth:`reward` of ``s`` exactly. For goals read from stored float32 observations the
        result is the reward at the float32-rounded positions: within float32 rounding of the
        stored reward (dense), and the same 0/-1 except within rounding of the threshold (sparse).

        Args:
            achieved_goal, desired_goal: shape ``(..., goal_dim)`` (see :meth:`compute_distance`).
            info: accepted for gymnasium-robotics' signature; the reward does not depend on it.

        Returns:
            The rewards, shape: the broadcast batch shape; float dtype of the distance.
        """
        d = self.compute_distance(achieved_goal, desired_goal)
        if self.config.reward == "dense":
            return -d
        return np.where(d < self.config.success_threshold, 0.0, -1.0).astype(d.dtype)

    def compute_success(self, achieved_goal: Any, desired_goal: Any) -> np.ndarray:
        """``d < success_threshold`` (bool), vectorised as :meth:`compute_reward`; equals
        :meth:`is_success` for a snapshot's goals."""
        return np.asarray(self.compute_distance(achieved_goal, desired_goal)
                          < self.config.success_threshold)

    def compute_terminated(self, achieved_goal: Any, desired_goal: Any,
                           info: Any = None) -> np.ndarray:
        """Whether reaching ``achieved_goal`` ends the episode (bool, no bootstrap through it):
        success when ``task.terminate_on_success``, never otherwise. A relabelled transition that
        reaches its new goal is terminal exactly as the env would have made it. (Truncation is
        the time limit, which no goal changes; it stays the stored flag, cleared where this is
        true, as the env never reports both.)"""
        success = self.compute_success(achieved_goal, desired_goal)
        return success if self.config.terminate_on_success else np.zeros_like(success)

    def _check_goals(self, achieved_goal: Any, desired_goal: Any) -> tuple[np.ndarray, np.ndarray]:
        """Both goals as float arrays of shape ``(..., goal_dim)`` with broadcastable batch shapes
        and finite values, or ``ValueError`` naming the argument and what is wrong."""
        n = self.goal_dim
        what = f"(..., goal_dim={n})"
        out = []
        for arg, x in (("achieved_goal", achieved_goal), ("desired_goal", desired_goal)):
            try:
                arr = np.asarray(x)
                if arr.dtype.kind == "c":
                    raise TypeError("complex")
                if arr.dtype.kind != "f":
                    arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{self.name}: {arg} must be real numbers of shape {what}, "
                                 f"got {type(x).__name__}") from None
            if arr.ndim == 0 or arr.shape[-1] != n:
                raise ValueError(f"{self.name}: {arg} must have shape {what}, "
                                 f"got shape {arr.shape}")
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{self.name}: {arg}{list(idx)} is not finite: {arr[idx]}")
            out.append(arr)
        ag, dg = out
        try:
            np.broadcast_shapes(ag.shape[:-1], dg.shape[:-1])
        except ValueError:
            raise ValueError(
                f"{self.name}: the batch shapes of achieved_goal {ag.shape} and desired_goal "
                f"{dg.shape} do not broadcast together") from None
        return ag, dg

    def describe(self) -> str:
        """One line with what fixes this task's numbers (printed beside every result)."""
        c = self.config
        box = c.goal_box
        return (
            f"task={c.name} reward={c.reward} max_steps={c.max_steps} "
            f"success<{c.success_threshold:g}m goal_box={list(box.low)}..{list(box.high)} "
            f"action_mode={c.action_mode}"
        )
