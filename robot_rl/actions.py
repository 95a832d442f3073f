"""The policy's action space and its map to joint velocities (and back).

Two modes (``task.action_mode``):

* ``joint``: ``a in [-1, 1]^n``; ``dq = a * joint_velocity_scale * dq_max`` (rad/s).
  Inverse: ``a = dq / (joint_velocity_scale * dq_max)``.
* ``ee_velocity``: ``a in [-1, 1]^3``; Cartesian velocity ``v = a * ee_speed`` (m/s), mapped to
  joints by damped least squares ``dq = J^T (J J^T + lambda^2 I)^-1 v`` with ``J`` the 3 x n
  position Jacobian, then scaled down uniformly (direction kept) if any joint would exceed
  ``joint_velocity_scale * dq_max``. Inverse: ``a = (J dq) / ee_speed``.

The inverse maps are how an actor records what the robot actually did (the safety node's applied
command) in the policy's action space. Actions are validated, never silently clipped: a wrong
shape, NaN or a value outside [-1, 1] raises ``ValueError`` naming ``action``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from robot_rl.config import RobotProfile, TaskConfig
from robot_rl.specs import BoxSpec, concat_names

if TYPE_CHECKING:
    from robot_rl.kinematics import Kinematics


def dls_joint_velocities(jac: np.ndarray, v: np.ndarray, damping: float) -> np.ndarray:
    """``J^T (J J^T + damping^2 I)^-1 v`` — damped least-squares inverse kinematics."""
    m = jac.shape[0]
    return jac.T @ np.linalg.solve(jac @ jac.T + (damping**2) * np.eye(m), v)


class ActionMapper:
    """Maps policy actions to joint velocity commands and applied commands back to actions."""

    def __init__(
        self,
        task: TaskConfig,
        profile: RobotProfile,
        kinematics: Kinematics | None = None,
    ):
        self.mode = task.action_mode
        self.n_joints = profile.n_joints
        self.dq_scale = task.joint_velocity_scale * np.asarray(profile.limits.dq_max, dtype=np.float64)
        self.ee_speed = float(task.ee_speed)
        self.damping = float(task.dls_damping)
        if self.mode == "joint":
            names = concat_names(("dq", self.n_joints))
        else:
            if kinematics is None:
                from robot_rl.kinematics import Kinematics

                kinematics = Kinematics.from_profile(profile)
            names = concat_names(("v", ("x", "y", "z")))
        self.kinematics = kinematics
        self.spec = BoxSpec("action", names, -np.ones(len(names)), np.ones(len(names)))

    def _check_q(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.n_joints,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q: expected {self.n_joints} finite joint positions, got {q!r}")
        return q

    def to_joint_velocities(self, action: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """Joint velocities (rad/s, float64) for ``action``; ``q`` is needed in ee_velocity mode."""
        a = self.spec.validate(action).astype(np.float64)
        if self.mode == "joint":
            return a * self.dq_scale
        if q is None:
            raise ValueError("q: the ee_velocity action mode needs the joint positions")
        q = self._check_q(q)
        v = a * self.ee_speed
        dq = dls_joint_velocities(self.kinematics.position_jacobian(q), v, self.damping)
        ratio = np.max(np.abs(dq) / self.dq_scale)
        if ratio > 1.0:
            dq = dq / ratio
        return dq

    def to_action(self, dq: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """The policy-space action (float32) that a joint velocity command corresponds to.

        Used for the applied (possibly safety-modified) command. The result can lie slightly
        outside [-1, 1] only if the command did; it is returned as is so nothing is hidden.
        """
        dq = np.asarray(dq, dtype=np.float64)
        if dq.shape != (self.n_joints,) or not np.all(np.isfinite(dq)):
            raise ValueError(f"dq: expected {self.n_joints} finite joint velocities, got {dq!r}")
        if self.mode == "joint":
            return (dq / self.dq_scale).astype(np.float32)
        if q is None:
            raise ValueError("q: the ee_velocity action mode needs the joint positions")
        q = self._check_q(q)
        v = self.kinematics.position_jacobian(q) @ dq
        return (v / self.ee_speed).astype(np.float32)
