"""Scripted controllers: proof that tasks are solvable, and the seed of the scripted operator.

:class:`ScriptedReacher` is a proportional controller in end-effector velocity space,
``v = clip(gain * (goal - ee), |v| <= ee_speed)``, expressed in whatever action space the env
uses: directly (``ee_velocity`` mode: ``a = v / ee_speed``) or through damped least squares
(``joint`` mode: ``a = DLS(J, v) / (scale * dq_max)``, scaled down uniformly into [-1, 1]).
"""
from __future__ import annotations

import numpy as np

from robot_rl.actions import ActionMapper, dls_joint_velocities
from robot_rl.kinematics import Kinematics
from robot_rl.tasks import TaskSnapshot


class ScriptedReacher:
    """P-control of the end-effector towards the goal."""

    def __init__(self, mapper: ActionMapper, gain: float = 4.0, kinematics: Kinematics | None = None,
                 profile=None):
        if gain <= 0:
            raise ValueError(f"gain must be > 0, got {gain}")
        self.mapper = mapper
        self.gain = float(gain)
        self.kinematics = mapper.kinematics or kinematics
        if self.kinematics is None:
            if profile is None:
                raise ValueError("joint action mode: pass the robot profile (or kinematics)")
            self.kinematics = Kinematics.from_profile(profile)

    def target_velocity(self, s: TaskSnapshot) -> np.ndarray:
        """Desired end-effector velocity (m/s), at most ``ee_speed``."""
        v = self.gain * (np.asarray(s.goal) - np.asarray(s.ee_pos))
        speed = np.linalg.norm(v)
        vmax = self.mapper.ee_speed
        return v * (vmax / speed) if speed > vmax else v

    def __call__(self, s: TaskSnapshot) -> np.ndarray:
        v = self.target_velocity(s)
        if self.mapper.mode == "ee_velocity":
            return np.clip(v / self.mapper.ee_speed, -1.0, 1.0).astype(np.float32)
        jac = self.kinematics.position_jacobian(np.asarray(s.q))
        a = dls_joint_velocities(jac, v, self.mapper.damping) / self.mapper.dq_scale
        peak = np.max(np.abs(a))
        return (a / peak if peak > 1.0 else a).astype(np.float32)
