"""A PyBullet world with one or several Franka Pandas under joint-velocity control.

DIRECT mode (headless), ``pybullet_data``'s ``franka_panda/panda.urdf`` (or the profile's URDF),
robots ``sim.robot_spacing`` apart along y, each with its own base frame: every position this
module reports is in that robot's base frame, as the real robot's would be. One control period
(``1 / sim.control_hz``) is ``sim.substeps`` physics steps. Joint velocities are commanded like
ros2_control's ``JointGroupVelocityController``: the value is held until the next command.

Deterministic: the same sequence of calls gives bit-identical states (no wall clock, no
randomness inside; callers pass their seeded generators' draws in).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data

from robot_rl.config import RobotProfile, SimConfig
from robot_rl.kinematics import resolve_urdf

# Commanded joint motors get the URDF's effort limits (Nm); Panda: 87 for joints 1-4, 12 for 5-7.
_FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")
_FLOAT64 = np.dtype(np.float64)  # numpy's native float64 descriptor (an identity test is cheap)


@dataclass
class _Robot:
    body: int
    base: np.ndarray  # world position of the base (identity orientation)
    joints: list[int]  # PyBullet joint indices, profile order
    forces: list[float]
    ee_link: int
    fingers: list[int]
    obj: int | None = None
    pose_offset: np.ndarray | None = None  # (base, 0, 0, 0, 0): subtracted from a cube pose


class PandaWorld:
    """Several Pandas (and optional cubes) in one PyBullet DIRECT world."""

    def __init__(
        self,
        sim: SimConfig,
        profile: RobotProfile,
        *,
        num_robots: int | None = None,
        with_objects: bool = False,
        object_size: float = 0.05,
        table: bool = True,
    ):
        self.sim = sim
        self.profile = profile
        self.n_joints = profile.n_joints
        self.num_robots = num_robots if num_robots is not None else sim.num_robots
        if self.num_robots < 1:
            raise ValueError(f"num_robots must be >= 1, got {self.num_robots}")
        self.cid = p.connect(p.DIRECT)
        if self.cid < 0:
            raise RuntimeError("could not start a PyBullet DIRECT physics server")
        self._closed = False
        p.setGravity(0, 0, -9.81, physicsClientId=self.cid)
        p.setTimeStep(sim.physics_dt, physicsClientId=self.cid)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=self.cid)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.cid)
        self.plane = (
            p.loadURDF("plane.urdf", physicsClientId=self.cid) if table else None
        )
        urdf = str(resolve_urdf(profile.urdf))
        self.robots: list[_Robot] = []
        for i in range(self.num_robots):
            base = np.array([0.0, i * sim.robot_spacing, 0.0])
            body = p.loadURDF(
                urdf, base.tolist(), useFixedBase=True,
                flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=self.cid,
            )
            self.robots.append(self._index_robot(body, base, with_objects, object_size))
        self.object_size = object_size

    # -- construction ---------------------------------------------------------------------

    def _index_robot(self, body: int, base: np.ndarray, with_object: bool, size: float) -> _Robot:
        by_name: dict[str, int] = {}
        links: dict[str, int] = {}
        forces: dict[str, float] = {}
        for j in range(p.getNumJoints(body, physicsClientId=self.cid)):
            info = p.getJointInfo(body, j, physicsClientId=self.cid)
            name = info[1].decode()
            by_name[name] = j
            forces[name] = float(info[10]) if info[10] > 0 else 87.0
            links[info[12].decode()] = j
        missing = [n for n in self.profile.urdf_joint_names if n not in by_name]
        if missing:
            raise ValueError(
                f"robot.urdf_joint_names: {missing} not in the URDF {self.profile.urdf!r} "
                f"(it has {sorted(by_name)})"
            )
        if self.profile.ee_link not in links:
            raise ValueError(
                f"robot.ee_link: no link {self.profile.ee_link!r} in the URDF (it has {sorted(links)})"
            )
        joints = [by_name[n] for n in self.profile.urdf_joint_names]
        fingers = [by_name[n] for n in _FINGER_JOINTS if n in by_name]
        robot = _Robot(
            body=body, base=base, joints=joints,
            forces=[forces[n] for n in self.profile.urdf_joint_names],
            ee_link=links[self.profile.ee_link], fingers=fingers,
            pose_offset=np.concatenate([base, np.zeros(4)]),
        )
        if with_object:
            half = size / 2.0
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[half] * 3, physicsClientId=self.cid)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[half] * 3, rgbaColor=[0.9, 0.3, 0.2, 1],
                                      physicsClientId=self.cid)
            robot.obj = p.createMultiBody(
                baseMass=0.1, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                basePosition=(base + [0.5, 0.0, half]).tolist(), physicsClientId=self.cid,
            )
            p.changeDynamics(robot.obj, -1, lateralFriction=0.5, physicsClientId=self.cid)
        return robot

    def _robot(self, i: int) -> _Robot:
        if not 0 <= i < self.num_robots:
            raise ValueError(f"robot index {i} out of range (0..{self.num_robots - 1})")
        return self.robots[i]

    # -- commands ---------------------------------------------------------------------------

    def reset_robot(self, i: int, q: np.ndarray) -> None:
        """Teleport robot ``i`` to ``q`` (profile order) at rest; its command becomes zero."""
        r = self._robot(i)
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.n_joints,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q: expected {self.n_joints} finite joint positions, got {q!r}")
        for j, qj in zip(r.joints, q):
            p.resetJointState(r.body, j, float(qj), 0.0, physicsClientId=self.cid)
        for j in r.fingers:
            p.resetJointState(r.body, j, 0.0, 0.0, physicsClientId=self.cid)
            p.setJointMotorControl2(r.body, j, p.POSITION_CONTROL, targetPosition=0.0, force=20.0,
                                    physicsClientId=self.cid)
        self.set_joint_velocities(i, np.zeros(self.n_joints))

    def set_object_pose(self, i: int, pos: np.ndarray, quat=(0.0, 0.0, 0.0, 1.0)) -> None:
        """Place robot ``i``'s cube at ``pos`` (its base frame), at rest."""
        r = self._robot(i)
        if r.obj is None:
            raise ValueError("this world was built without objects (with_objects=False)")
        world = (r.base + np.asarray(pos, dtype=np.float64)).tolist()
        p.resetBasePositionAndOrientation(r.obj, world, list(quat), physicsClientId=self.cid)
        p.resetBaseVelocity(r.obj, [0, 0, 0], [0, 0, 0], physicsClientId=self.cid)

    def set_joint_velocities(self, i: int, dq: np.ndarray) -> None:
        """Command joint velocities (rad/s, profile order); held until the next command."""
        r = self._robot(i)
        if type(dq) is np.ndarray and dq.dtype is _FLOAT64 and dq.ndim == 1:
            targets = dq.tolist()  # the same Python floats as below, in one call (the env's case)
        else:
            targets = [float(v) for v in dq]
        p.setJointMotorControlArray(
            r.body, r.joints, p.VELOCITY_CONTROL,
            targetVelocities=targets, forces=r.forces, physicsClientId=self.cid,
        )

    def step(self) -> None:
        """Advance one control period (``sim.substeps`` physics steps)."""
        step_simulation, cid = p.stepSimulation, self.cid
        for _ in range(self.sim.substeps):
            step_simulation(physicsClientId=cid)

    # -- state ------------------------------------------------------------------------------

    def joint_state(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (rad) and velocities (rad/s), profile order."""
        r = self._robot(i)
        q, dq, _, _ = zip(*p.getJointStates(r.body, r.joints, physicsClientId=self.cid))
        return np.array(q), np.array(dq)

    def ee_position(self, i: int) -> np.ndarray:
        """End-effector link frame position (m) in robot ``i``'s base frame."""
        r = self._robot(i)
        st = p.getLinkState(r.body, r.ee_link, computeForwardKinematics=True, physicsClientId=self.cid)
        return np.subtract(st[4], r.base)

    def object_pose(self, i: int) -> np.ndarray | None:
        """Cube pose (x, y, z, qx, qy, qz, qw) in robot ``i``'s base frame, or None."""
        r = self._robot(i)
        if r.obj is None:
            return None
        pos, quat = p.getBasePositionAndOrientation(r.obj, physicsClientId=self.cid)
        return np.subtract(pos + quat, r.pose_offset)  # x - 0.0 is x, bit for bit

    def render(self, i: int = 0, width: int = 320, height: int = 240) -> np.ndarray:
        """An RGB image (H, W, 3, uint8) of robot ``i`` from a fixed camera (TinyRenderer)."""
        r = self._robot(i)
        target = (r.base + [0.45, 0.0, 0.25]).tolist()
        view = p.computeViewMatrixFromYawPitchRoll(target, 1.4, 45, -30, 0, 2, physicsClientId=self.cid)
        proj = p.computeProjectionMatrixFOV(60, width / height, 0.05, 5.0, physicsClientId=self.cid)
        _, _, rgba, _, _ = p.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER,
                                            physicsClientId=self.cid)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                p.disconnect(physicsClientId=self.cid)
            except p.error:
                pass

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
