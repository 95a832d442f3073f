"""robot_rl.kinematics (pinocchio) against PyBullet's own kinematics of the same URDF.

PyBullet loads the profile's URDF with a fixed base at the origin, so its world frame is the
URDF root link's frame, the base frame :class:`~robot_rl.kinematics.Kinematics` uses. For each
of 200 seeded random configurations inside the profile's joint limits:

* ``getLinkState(...)[4]`` (``worldLinkFramePosition``: the URDF link frame; index 0 is the
  centre of mass, i.e. the inertial frame) must match ``ee_position`` / ``frame_position`` to
  1 mm. PyBullet returns index 4 in single precision, so agreement is ~1e-7 m, not 1e-12.
* ``calculateJacobian``'s linear part at the link-frame origin must match
  ``position_jacobian`` to 1e-4. PyBullet's docs say its ``localPosition`` is taken "around the
  centre of mass", but measured on this pybullet build it is the URDF link frame: local point
  (0, 0, 0) is the link origin. ``test_pybullet_jacobian_point_is_the_link_origin`` pins this on
  ``panda_link4``, whose centre of mass is 4 cm off its origin, so a change is caught.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pybullet
import pytest

from robot_rl.config import RobotProfile
from robot_rl.kinematics import Kinematics, resolve_urdf

pytestmark = pytest.mark.sim

N_CONFIGS = 200
FK_TOL_M = 1e-3
JAC_TOL = 1e-4


class _Bullet:
    """One robot loaded in a PyBullet DIRECT client; joints addressed by URDF name."""

    def __init__(self, urdf_path: str) -> None:
        self.cid = pybullet.connect(pybullet.DIRECT)
        self.body = pybullet.loadURDF(urdf_path, useFixedBase=True, physicsClientId=self.cid)
        self.joint_index: dict[str, int] = {}
        self.link_index: dict[str, int] = {}
        movable: list[tuple[int, str]] = []  # (qIndex, joint name)
        for j in range(pybullet.getNumJoints(self.body, physicsClientId=self.cid)):
            info = pybullet.getJointInfo(self.body, j, physicsClientId=self.cid)
            name, jtype, q_index, link = info[1].decode(), info[2], info[3], info[12].decode()
            self.joint_index[name] = j
            self.link_index[link] = j  # a link's index is its parent joint's index
            if jtype != pybullet.JOINT_FIXED:
                movable.append((q_index, name))
        #: Movable joints in the order calculateJacobian expects positions and returns columns.
        self.dof_names = [name for _, name in sorted(movable)]

    def close(self) -> None:
        pybullet.disconnect(physicsClientId=self.cid)

    def set_q(self, urdf_joint_names: tuple[str, ...], q: np.ndarray) -> None:
        for name, value in zip(urdf_joint_names, q, strict=True):
            pybullet.resetJointState(
                self.body, self.joint_index[name], float(value), 0.0, physicsClientId=self.cid
            )

    def link_frame_position(self, link: str) -> np.ndarray:
        state = pybullet.getLinkState(
            self.body, self.link_index[link], computeForwardKinematics=True,
            physicsClientId=self.cid,
        )
        return np.asarray(state[4], dtype=float)  # worldLinkFramePosition (URDF link frame)

    def position_jacobian(
        self, link: str, urdf_joint_names: tuple[str, ...], q: np.ndarray
    ) -> np.ndarray:
        """Linear Jacobian at ``link``'s frame origin, columns in ``urdf_joint_names`` order."""
        idx = self.link_index[link]
        positions = {name: 0.0 for name in self.dof_names}  # unlisted joints (fingers) at 0
        positions.update(zip(urdf_joint_names, (float(v) for v in q), strict=True))
        all_q = [positions[name] for name in self.dof_names]
        zeros = [0.0] * len(all_q)
        linear, _angular = pybullet.calculateJacobian(
            self.body, idx, [0.0, 0.0, 0.0], all_q, zeros, zeros, physicsClientId=self.cid
        )
        linear = np.asarray(linear, dtype=float)
        cols = [self.dof_names.index(name) for name in urdf_joint_names]
        return linear[:, cols]


@pytest.fixture(scope="module", params=["panda", "fr3"])
def setup(request) -> Iterator[tuple[RobotProfile, Kinematics, _Bullet]]:
    profile = RobotProfile(name=request.param)
    kin = Kinematics.from_profile(profile)
    bullet = _Bullet(str(resolve_urdf(profile.urdf)))
    yield profile, kin, bullet
    bullet.close()


def _random_qs(profile: RobotProfile, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo = np.asarray(profile.limits.q_min)
    hi = np.asarray(profile.limits.q_max)
    return rng.uniform(lo, hi, size=(n, profile.n_joints))


@pytest.mark.parametrize("link", ["ee", "panda_link4"])
def test_link_position_matches_pybullet(setup, link):
    profile, kin, bullet = setup
    link_name = profile.ee_link if link == "ee" else link
    errors = []
    for q in _random_qs(profile, N_CONFIGS, seed=0):
        bullet.set_q(profile.urdf_joint_names, q)
        ours = kin.ee_position(q) if link == "ee" else kin.frame_position(q, link_name)
        errors.append(np.linalg.norm(ours - bullet.link_frame_position(link_name)))
    worst = int(np.argmax(errors))
    assert errors[worst] < FK_TOL_M, (
        f"{profile.name} {link_name}: max FK error vs PyBullet {errors[worst]:.3e} m "
        f"(config #{worst}) over {N_CONFIGS} configs; tolerance {FK_TOL_M} m"
    )


def test_position_jacobian_matches_pybullet(setup):
    profile, kin, bullet = setup
    worst = 0.0
    for q in _random_qs(profile, N_CONFIGS, seed=1):
        bullet.set_q(profile.urdf_joint_names, q)
        theirs = bullet.position_jacobian(profile.ee_link, profile.urdf_joint_names, q)
        worst = max(worst, float(np.max(np.abs(kin.position_jacobian(q) - theirs))))
    assert worst < JAC_TOL, (
        f"{profile.name}: max |position_jacobian - pybullet.calculateJacobian| = {worst:.3e} "
        f"over {N_CONFIGS} configs; tolerance {JAC_TOL}"
    )


def test_pybullet_jacobian_point_is_the_link_origin(setup):
    """PyBullet's Jacobian at local point 0 of panda_link4 (centre of mass 4 cm off the link
    origin) is the derivative of the link *origin*: pins the point convention used above."""
    profile, kin, bullet = setup
    q = _random_qs(profile, 1, seed=2)[0]
    h = 1e-4
    theirs = bullet.position_jacobian("panda_link4", profile.urdf_joint_names, q)
    fd = np.empty_like(theirs)
    for j in range(profile.n_joints):
        dq = np.zeros(profile.n_joints)
        dq[j] = h
        fd[:, j] = (kin.frame_position(q + dq, "panda_link4")
                    - kin.frame_position(q - dq, "panda_link4")) / (2 * h)
    np.testing.assert_allclose(theirs, fd, atol=1e-5)
