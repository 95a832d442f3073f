"""reach: bring the end-effector to a goal point sampled in a box.

Observation (20 for a 7-joint arm): ``q (7), dq (7), ee_pos (3), goal (3)``.
Distance: ``||ee_pos - goal||``; success below ``task.success_threshold`` (5 cm by default).
Goals: achieved = ``ee_pos`` (observation elements 14-16 for 7 joints), desired = ``goal``
(17-19); ``goal_dim`` 3.
"""
from __future__ import annotations

import numpy as np

from robot_rl.specs import concat_names
from robot_rl.tasks.base import XYZ, ObsPart, Task, TaskSnapshot


def reach_distance(ee_pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Euclidean distance(s) between end-effector and goal; works on (3,) or (B, 3)."""
    return np.linalg.norm(np.asarray(ee_pos) - np.asarray(goal), axis=-1)


class ReachTask(Task):
    name = "reach"

    def observation_parts(self) -> list[ObsPart]:
        return self.robot_parts(ee_role="achieved_goal") + [
            ObsPart("goal", "desired_goal", concat_names(("goal", XYZ)), -2.0, 2.0,
                    lambda s: s.goal)]

    def achieved_goal(self, s: TaskSnapshot) -> np.ndarray:
        """The end-effector position ``s.ee_pos`` (m), shape (3,)."""
        return np.array(s.ee_pos, copy=True)

    @staticmethod
    def _goal_distance(achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        return reach_distance(achieved_goal, desired_goal)
