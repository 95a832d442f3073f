"""The task interface: observation, reward and success from the robot's and the scene's state.

Tasks are pure and ROS-free: the PyBullet env calls them with simulated state, the actor node
calls the same functions with a real robot's joint states and a perception/mocap task state, so a
reward in simulation is the reward on the arm.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from robot_rl.config import RobotProfile, TaskConfig
from robot_rl.specs import BoxSpec, concat_names

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


class Task(ABC):
    """A task's definition. Subclasses fix what is observed and what is rewarded."""

    name: str = ""
    has_object: bool = False

    def __init__(self, config: TaskConfig, profile: RobotProfile):
        if config.name != self.name:
            raise ValueError(f"task.name is {config.name!r} but this is the {self.name!r} task")
        self.config = config
        self.profile = profile
        self.observation_spec = self._observation_spec()

    # -- specs ------------------------------------------------------------------------------

    def _robot_bounds(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        lim = self.profile.limits
        n = self.profile.n_joints
        names = concat_names(("q", n), ("dq", n), ("ee", XYZ))
        # Hard bounds of what can physically be observed: the position range plus a little for
        # sensor noise / overshoot, twice the velocity limit, a 2 m box around the base.
        low = np.concatenate([np.asarray(lim.q_min) - 0.3, -2.0 * np.asarray(lim.dq_max), [-2.0] * 3])
        high = np.concatenate([np.asarray(lim.q_max) + 0.3, 2.0 * np.asarray(lim.dq_max), [2.0] * 3])
        return names, low, high

    @abstractmethod
    def _observation_spec(self) -> BoxSpec: ...

    # -- episode set-up --------------------------------------------------------------------

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn uniformly from ``task.goal_box``."""
        box = self.config.goal_box
        return rng.uniform(box.low, box.high).astype(np.float64)

    def sample_object(self, rng: np.random.Generator) -> np.ndarray | None:
        """The object's start position, or None for tasks without an object."""
        return None

    # -- per step ---------------------------------------------------------------------------

    @abstractmethod
    def observation(self, s: TaskSnapshot) -> np.ndarray:
        """The policy's observation (float32, ``observation_spec`` order)."""

    @abstractmethod
    def distance(self, s: TaskSnapshot) -> float:
        """The task's distance to success (m)."""

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

    def describe(self) -> str:
        """One line with what fixes this task's numbers (printed beside every result)."""
        c = self.config
        box = c.goal_box
        return (
            f"task={c.name} reward={c.reward} max_steps={c.max_steps} "
            f"success<{c.success_threshold:g}m goal_box={list(box.low)}..{list(box.high)} "
            f"action_mode={c.action_mode}"
        )
