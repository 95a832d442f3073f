"""Tasks: observation, reward and success functions shared by simulation and real robots."""
from __future__ import annotations

from robot_rl.config import RobotProfile, TaskConfig
from robot_rl.tasks.base import Task, TaskSnapshot
from robot_rl.tasks.push import PushTask, push_distance
from robot_rl.tasks.reach import ReachTask, reach_distance

TASKS: dict[str, type[Task]] = {"reach": ReachTask, "push": PushTask}


def make_task(config: TaskConfig, profile: RobotProfile) -> Task:
    """The task named by ``config.name``."""
    try:
        cls = TASKS[config.name]
    except KeyError:
        raise ValueError(f"task.name: unknown task {config.name!r}; expected one of {sorted(TASKS)}") from None
    return cls(config, profile)


__all__ = ["Task", "TaskSnapshot", "ReachTask", "PushTask", "make_task", "reach_distance",
           "push_distance", "TASKS"]
