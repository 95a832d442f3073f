"""Robot profiles: joint names and the manufacturer's published limits, which belong together.

Numbers are Franka's "control parameters" tables:

* ``panda`` — Franka Emika Panda (``panda_joint1..7``; PyBullet URDF, multipanda_ros2).
* ``fr3`` — Franka Research 3 (``fr3_joint1..7``; franka_ros2). Its joint ranges, velocity,
  acceleration and jerk limits differ from the Panda's (e.g. joint 6 range, 10 rad/s² on every
  joint).

A configured profile may tighten these limits (labs run with a margin) but never loosen them,
and its joint names must be its family's: :func:`check_profile_consistency` refuses anything else.
The FR3 has the Panda's kinematic chain, so the Panda URDF serves its kinematics unless a lab
points the profile at its own ``fr3.urdf``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_JOINTS = 7


@dataclass(frozen=True)
class PublishedLimits:
    """A robot family's published joint limits (per joint, profile order)."""

    q_min: tuple[float, ...]
    q_max: tuple[float, ...]
    dq_max: tuple[float, ...]
    ddq_max: tuple[float, ...]
    dddq_max: tuple[float, ...]
    #: Cartesian translational speed limit of the flange (m/s).
    ee_speed_max: float


@dataclass(frozen=True)
class Family:
    """What a robot family is: its joint names, limits, URDF and a home pose."""

    name: str
    joint_names: tuple[str, ...]
    limits: PublishedLimits
    #: URDF used for kinematics and simulation; ``pybullet_data:`` means pybullet_data's folder.
    urdf: str
    #: The URDF's names for the profile's joints, in profile order.
    urdf_joint_names: tuple[str, ...]
    ee_link: str
    home: tuple[float, ...]


PANDA = Family(
    name="panda",
    joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)),
    limits=PublishedLimits(
        q_min=(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
        q_max=(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
        dq_max=(2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100),
        ddq_max=(15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0),
        dddq_max=(7500.0, 3750.0, 5000.0, 6250.0, 7500.0, 10000.0, 10000.0),
        ee_speed_max=1.7,
    ),
    urdf="pybullet_data:franka_panda/panda.urdf",
    urdf_joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)),
    ee_link="panda_grasptarget",
    home=(0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854),
)

FR3 = Family(
    name="fr3",
    joint_names=tuple(f"fr3_joint{i}" for i in range(1, 8)),
    limits=PublishedLimits(
        q_min=(-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
        q_max=(2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
        dq_max=(2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26),
        ddq_max=(10.0,) * 7,
        dddq_max=(5000.0,) * 7,
        ee_speed_max=3.0,
    ),
    # Same kinematic chain as the Panda; a lab may point this at franka_description's fr3.urdf.
    urdf="pybullet_data:franka_panda/panda.urdf",
    urdf_joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)),
    ee_link="panda_grasptarget",
    home=(0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854),
)

FAMILIES: dict[str, Family] = {f.name: f for f in (PANDA, FR3)}


def family(name: str) -> Family:
    """The built-in family called ``name``; a clear error lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown robot profile {name!r}; expected one of {sorted(FAMILIES)}"
        ) from None


def check_profile_consistency(
    name: str,
    joint_names: tuple[str, ...],
    q_min: tuple[float, ...],
    q_max: tuple[float, ...],
    dq_max: tuple[float, ...],
    ddq_max: tuple[float, ...],
    dddq_max: tuple[float, ...],
) -> None:
    """Refuse a profile whose joint names and limits don't belong together.

    The joint names must be exactly the family's (in order), and every limit must lie within the
    family's published one: position ranges inside ``[q_min, q_max]``, rate limits ``<=``.
    Raises ``ValueError`` naming the first offending field and joint.
    """
    fam = family(name)
    if tuple(joint_names) != fam.joint_names:
        raise ValueError(
            f"joint_names {list(joint_names)} do not belong to the {name!r} profile; "
            f"expected {list(fam.joint_names)}"
        )
    pub = fam.limits
    for field, lo_ok in (("q_min", True), ("q_max", False)):
        mine = np.asarray(q_min if lo_ok else q_max, dtype=float)
        ref = np.asarray(getattr(pub, field), dtype=float)
        bad = mine < ref - 1e-9 if lo_ok else mine > ref + 1e-9
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"limits.{field}[{j}] ({joint_names[j]}) = {mine[j]} lies outside the {name!r} "
                f"published range ({field} = {ref[j]}); limits may be tightened, never widened "
                f"(are these another robot's limits?)"
            )
    for field, mine in (("dq_max", dq_max), ("ddq_max", ddq_max), ("dddq_max", dddq_max)):
        mine_a = np.asarray(mine, dtype=float)
        ref = np.asarray(getattr(pub, field), dtype=float)
        bad = mine_a > ref + 1e-9
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"limits.{field}[{j}] ({joint_names[j]}) = {mine_a[j]} exceeds the {name!r} "
                f"published limit {ref[j]}; limits may be tightened, never widened "
                f"(are these another robot's limits?)"
            )
