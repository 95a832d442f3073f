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


class ScriptedPusher(ScriptedReacher):
    """Pushes the cube to the goal with the gripper: a feedback rule on the snapshot (no memory).

    With ``d`` the unit vector from the cube to the goal (table plane) and ``b`` the point
    ``clearance`` behind the cube's face opposite the goal:

    * the hand is behind the cube, on the push line (within ``line_tol``) and at push height:
      push -- velocity along ``d`` plus a P-correction back onto the line, aimed at the goal;
    * otherwise reposition: up to ``hover`` above the table while within reach of the cube
      (never sweep through it), over to ``b``, then down to push height.

    The velocity is limited to ``ee_speed`` and mapped into the env's action space as
    :class:`ScriptedReacher` does. A cube that slides off the line sends the hand back round.
    """

    def __init__(self, mapper: ActionMapper, *, object_size: float, gain: float = 6.0,
                 push_height: float | None = None, hover: float = 0.09, clearance: float = 0.03,
                 line_tol: float = 0.02, kinematics: Kinematics | None = None, profile=None):
        super().__init__(mapper, gain=gain, kinematics=kinematics, profile=profile)
        self.half = float(object_size) / 2.0
        self.push_z = self.half if push_height is None else float(push_height)
        self.hover = float(hover)
        self.clearance = float(clearance)
        self.line_tol = float(line_tol)

    def phase(self, s: TaskSnapshot) -> tuple[str, np.ndarray]:
        """``(phase, target EE velocity)``; phase is ``push``, ``lift``, ``over`` or ``down``."""
        if s.object_pose is None:
            raise ValueError("ScriptedPusher: the snapshot has no object pose (task.name=push)")
        e = np.asarray(s.ee_pos, float)
        o = np.asarray(s.object_pose[:3], float)
        g = np.asarray(s.goal, float)
        d = g[:2] - o[:2]
        dist = float(np.linalg.norm(d))
        d = d / dist if dist > 1e-6 else np.array([1.0, 0.0])
        rel = e[:2] - o[:2]
        along = float(rel @ d)
        lateral = rel - along * d
        behind = -(self.half + self.clearance)
        low = e[2] < self.push_z + 0.03
        aligned = float(np.linalg.norm(lateral)) < self.line_tol and along < -self.half + 0.01
        if aligned and low:
            # push: along d, pulled back onto the line and to push height
            v = np.zeros(3)
            v[:2] = d * self.mapper.ee_speed - self.gain * lateral
            v[2] = self.gain * (self.push_z - e[2])
            return "push", self._limit(v)
        b = np.array([o[0] + behind * d[0], o[1] + behind * d[1]])
        near_b = float(np.linalg.norm(e[:2] - b)) < self.line_tol * 0.75
        if near_b and along < -self.half:
            target = np.array([b[0], b[1], self.push_z])  # down behind the cube
            return "down", self._limit(self.gain * (target - e))
        if low and float(np.linalg.norm(rel)) < self.half + self.clearance + 0.05:
            return "lift", self._limit(np.array([0.0, 0.0, self.gain * (self.hover - e[2])]))
        target = np.array([b[0], b[1], self.hover])
        return "over", self._limit(self.gain * (target - e))

    def _limit(self, v: np.ndarray) -> np.ndarray:
        speed = float(np.linalg.norm(v))
        vmax = self.mapper.ee_speed
        return v * (vmax / speed) if speed > vmax else v

    def target_velocity(self, s: TaskSnapshot) -> np.ndarray:
        return self.phase(s)[1]
