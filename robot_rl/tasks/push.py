"""push: push a cube lying on the table to a goal position on the table.

Observation (27 for a 7-joint arm): ``q (7), dq (7), ee_pos (3), object pose (x, y, z, qx, qy,
qz, qw) (7), goal (3)``. Distance: the cube's horizontal (x, y) distance to the goal; success below
``task.success_threshold``. Goals and starts lie on the table plane (z = half the cube's edge).
Goals: achieved = the cube's position ``obj_x, obj_y, obj_z`` (observation elements 17-19 for 7
joints), desired = ``goal`` (24-26); ``goal_dim`` 3, of which the distance reads x and y only (a
goal's z is ignored, as is the cube's height).
"""
from __future__ import annotations

import numpy as np

from robot_rl.specs import concat_names
from robot_rl.tasks.base import QUAT, XYZ, ObsPart, Task, TaskSnapshot


def push_distance(object_pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Horizontal distance(s) between the object and the goal; (3,) or (B, 3) inputs."""
    d = np.asarray(object_pos)[..., :2] - np.asarray(goal)[..., :2]
    return np.linalg.norm(d, axis=-1)


class PushTask(Task):
    name = "push"
    has_object = True

    def observation_parts(self) -> list[ObsPart]:
        return self.robot_parts() + [
            ObsPart("object_pos", "achieved_goal", concat_names(("obj", XYZ)), -2.0, 2.0,
                    lambda s: _object_pose(s)[:3]),
            ObsPart("object_quat", "task", concat_names(("obj", QUAT)), -1.0, 1.0,
                    lambda s: _object_pose(s)[3:]),
            ObsPart("goal", "desired_goal", concat_names(("goal", XYZ)), -2.0, 2.0,
                    lambda s: s.goal)]

    def _on_table(self, xy: np.ndarray) -> np.ndarray:
        return np.array([xy[0], xy[1], self.config.object_size / 2.0])

    def describe(self) -> str:
        """As every task's, but with what push draws: goal and cube (x, y) on the table."""
        c = self.config
        g, o = c.goal_box, c.object_box
        return (
            f"task={c.name} reward={c.reward} max_steps={c.max_steps} "
            f"success<{c.success_threshold:g}m (cube to goal) "
            f"goal_xy={list(g.low[:2])}..{list(g.high[:2])} "
            f"cube_xy={list(o.low[:2])}..{list(o.high[:2])} on the table "
            f"action_mode={c.action_mode}"
        )

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        box = self.config.goal_box
        return self._on_table(rng.uniform(box.low[:2], box.high[:2]))

    def sample_object(self, rng: np.random.Generator) -> np.ndarray:
        box = self.config.object_box
        return self._on_table(rng.uniform(box.low[:2], box.high[:2]))

    def achieved_goal(self, s: TaskSnapshot) -> np.ndarray:
        """The cube's position ``s.object_pose[:3]`` (m), shape (3,); its orientation is no goal."""
        return np.array(_object_pose(s)[:3], copy=True)

    @staticmethod
    def _goal_distance(achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        return push_distance(achieved_goal, desired_goal)


def _object_pose(s: TaskSnapshot) -> np.ndarray:
    if s.object_pose is None or len(s.object_pose) != 7:
        raise ValueError("push: object_pose is required (x, y, z, qx, qy, qz, qw)")
    return np.asarray(s.object_pose)
