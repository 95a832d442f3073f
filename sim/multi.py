"""Several simulated robots behind the interface of a real cell (no ROS here).

:class:`SimRobots` is the logic of the sim node (``robot_rl.ros_nodes.sim_robot_node``): one
PyBullet world holding every sim robot, commands handled like ros2_control's
``JointGroupVelocityController`` (a command is held until the next one; a command of the wrong
length or with non-finite values is refused and the previous one stays), per-robot episodes
(home pose with seeded noise, goal and object from the task), and the lockstep bookkeeping
(DESIGN §2: advance one control period when every robot's command for the step has arrived or a
timeout passed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.config import Config
from robot_rl.sim.panda import PandaWorld
from robot_rl.tasks import Task, TaskSnapshot, make_task


class EpisodeStarts:
    """Where new episodes start: joints, goal and object, drawn from a seeded generator.

    Joints: home + U(-sim.home_noise, sim.home_noise), kept 0.05 rad inside the position limits.
    The draw order (joints, goal, object) is fixed so a seed means the same episode everywhere
    (the gym env and the sim node share this).
    """

    MARGIN = 0.05

    def __init__(self, config: Config, task: Task):
        lim = config.robot.limits
        self.task = task
        self.noise = config.sim.home_noise
        self.home = np.asarray(config.robot.home, dtype=np.float64)
        self.q_lo = np.asarray(lim.q_min) + self.MARGIN
        self.q_hi = np.asarray(lim.q_max) - self.MARGIN

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        q0 = np.clip(self.home + rng.uniform(-self.noise, self.noise, size=self.home.shape),
                     self.q_lo, self.q_hi)
        goal = self.task.sample_goal(rng)
        obj = self.task.sample_object(rng)
        return q0, goal, obj


@dataclass(frozen=True)
class RobotState:
    """One robot's state at the current sim step (its base frame, SI units)."""

    q: np.ndarray
    dq: np.ndarray
    ee_pos: np.ndarray
    goal: np.ndarray
    object_pose: np.ndarray | None
    episode: int

    def snapshot(self) -> TaskSnapshot:
        return TaskSnapshot(q=self.q, dq=self.dq, ee_pos=self.ee_pos, goal=self.goal,
                            object_pose=self.object_pose)


class SimRobots:
    """``num_robots`` Pandas in one world, stepped together one control period at a time."""

    def __init__(self, config: Config, num_robots: int | None = None):
        self.config = config
        self.num_robots = num_robots if num_robots is not None else config.sim.num_robots
        self.task = make_task(config.task, config.robot)
        self.world = PandaWorld(
            config.sim, config.robot, num_robots=self.num_robots,
            with_objects=self.task.has_object, object_size=config.task.object_size,
        )
        n = config.robot.n_joints
        self.n_joints = n
        self._starts = EpisodeStarts(config, self.task)
        # One independent, seeded stream per robot: robot i's episodes don't depend on others.
        self._rngs = [np.random.default_rng([config.run.seed, i]) for i in range(self.num_robots)]
        self._commands = np.zeros((self.num_robots, n))
        self._arrived = np.zeros(self.num_robots, dtype=bool)
        self._goals = np.zeros((self.num_robots, 3))
        self._episodes = np.zeros(self.num_robots, dtype=np.int64)
        self.steps = 0
        self.rejected_commands = 0
        self.control_period_ns = int(round(1e9 / config.sim.control_hz))
        for i in range(self.num_robots):
            self.reset(i)
        self._episodes[:] = 0

    # -- commands ---------------------------------------------------------------------------

    def set_command(self, i: int, velocities) -> None:
        """Hold joint velocities (rad/s, profile order) for robot ``i`` from the next step on.

        Raises ``ValueError`` (and keeps the previous command) for a wrong length or a
        non-finite value, as the velocity controller refuses such a command.
        """
        self._check_index(i)
        v = np.asarray(velocities, dtype=np.float64)
        if v.shape != (self.n_joints,):
            self.rejected_commands += 1
            raise ValueError(
                f"command for robot {i}: expected {self.n_joints} joint velocities, got {v.size}"
            )
        if not np.all(np.isfinite(v)):
            self.rejected_commands += 1
            raise ValueError(f"command for robot {i}: non-finite value in {v.tolist()}")
        self._commands[i] = v
        self._arrived[i] = True

    def all_arrived(self) -> bool:
        """Lockstep: has every robot sent a command since the last step?"""
        return bool(self._arrived.all())

    def missing(self) -> list[int]:
        """Robots whose command for this step has not arrived."""
        return [int(i) for i in np.flatnonzero(~self._arrived)]

    def step(self) -> None:
        """Advance one control period with the held commands."""
        for i in range(self.num_robots):
            self.world.set_joint_velocities(i, self._commands[i])
        self.world.step()
        self.steps += 1
        self._arrived[:] = False

    @property
    def sim_time_ns(self) -> int:
        return self.steps * self.control_period_ns

    # -- episodes ---------------------------------------------------------------------------

    def reset(self, i: int) -> RobotState:
        """New episode for robot ``i``: home pose + seeded noise, new goal (and object), at rest."""
        self._check_index(i)
        q0, goal, obj = self._starts.sample(self._rngs[i])
        self.world.reset_robot(i, q0)
        if obj is not None:
            self.world.set_object_pose(i, obj)
        self._goals[i] = goal
        self._commands[i] = 0.0
        self._episodes[i] += 1
        return self.state(i)

    def state(self, i: int) -> RobotState:
        self._check_index(i)
        q, dq = self.world.joint_state(i)
        return RobotState(q=q, dq=dq, ee_pos=self.world.ee_position(i),
                          goal=self._goals[i].copy(), object_pose=self.world.object_pose(i),
                          episode=int(self._episodes[i]))

    def _check_index(self, i: int) -> None:
        if not 0 <= i < self.num_robots:
            raise ValueError(f"robot index {i} out of range (0..{self.num_robots - 1})")

    def close(self) -> None:
        self.world.close()
