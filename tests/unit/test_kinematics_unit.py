"""Unit tests of robot_rl.kinematics: written-out poses, Jacobian vs finite differences, errors.

The Panda URDF comes from the ``pybullet_data`` folder (a data module shipped with pybullet; the
simulator itself is never imported here). Expected values at q = 0 follow from the URDF by hand:
the arm stands straight up (z = 0.333 + 0.316 + 0.384 = 1.033 at joint 6), joint 7 sits 0.088
forward, and the flange (0.107) and grasp target (0.105) point straight down:
grasptarget = (0.088, 0, 1.033 - 0.212) = (0.088, 0, 0.821).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from robot_rl.config import RobotProfile
from robot_rl.kinematics import Kinematics, resolve_urdf

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
S = np.sqrt(0.5)

# (profile, q, link, expected position in the base frame (m)); tolerance 1e-6.
EXPECTED_POSITIONS = [
    ("panda", [0, 0, 0, 0, 0, 0, 0], "panda_grasptarget", [0.088, 0.0, 0.821]),
    ("panda", [0, 0, 0, 0, 0, 0, 0], "panda_link8", [0.088, 0.0, 0.926]),  # flange
    ("panda", [0, 0, 0, 0, 0, 0, 0], "panda_link4", [0.0825, 0.0, 0.649]),
    ("panda", [0, 0, 0, 0, 0, 0, 0], "panda_link0", [0.0, 0.0, 0.0]),
    # home pose (0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4) to 4 decimals: gripper down in front.
    (
        "panda",
        [0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854],
        "panda_grasptarget",
        [0.306890352108, 0.0, 0.485280338551],
    ),
    # joint 1 at +90 deg swings the upright arm's x offset onto +y.
    ("panda", [np.pi / 2, 0, 0, 0, 0, 0, 0], "panda_grasptarget", [0.0, 0.088, 0.821]),
]


@pytest.fixture(scope="module")
def panda() -> Kinematics:
    return Kinematics.from_profile(RobotProfile(name="panda"))


@pytest.fixture(scope="module")
def fr3() -> Kinematics:
    return Kinematics.from_profile(RobotProfile(name="fr3"))


def _random_qs(profile_name: str, n: int, seed: int) -> np.ndarray:
    lim = RobotProfile(name=profile_name).limits
    rng = np.random.default_rng(seed)
    return rng.uniform(np.asarray(lim.q_min), np.asarray(lim.q_max), size=(n, len(lim.q_min)))


# ------------------------------------------------------------------ written-out values


@pytest.mark.parametrize("profile_name,q,link,expected", EXPECTED_POSITIONS)
def test_link_positions_match_written_values(profile_name, q, link, expected):
    kin = Kinematics.from_profile(RobotProfile(name=profile_name))
    np.testing.assert_allclose(kin.frame_position(q, link), expected, atol=1e-6)
    if link == kin.ee_link:
        np.testing.assert_allclose(kin.ee_position(q), expected, atol=1e-6)


def test_ee_pose_at_zero_points_the_gripper_down(panda):
    p, R = panda.ee_pose(np.zeros(7))
    np.testing.assert_allclose(p, [0.088, 0.0, 0.821], atol=1e-6)
    # z axis straight down; the hand is turned -45 deg about the flange axis (panda_hand_joint).
    np.testing.assert_allclose(R, [[S, S, 0.0], [S, -S, 0.0], [0.0, 0.0, -1.0]], atol=1e-6)


def test_jacobian_at_zero_matches_written_values(panda):
    # Columns: joint axis a_j x (p_ee - p_j) for the linear rows, a_j for the angular rows.
    expected = np.array(
        [
            [0.0, 0.488, 0.0, -0.172, 0.0, 0.212, 0.0],
            [0.088, 0.0, 0.088, 0.0, 0.088, 0.0, 0.0],
            [0.0, -0.088, 0.0, 0.0055, 0.0, 0.088, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0],
            [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, -1.0],
        ]
    )
    np.testing.assert_allclose(panda.jacobian(np.zeros(7)), expected, atol=1e-6)
    np.testing.assert_allclose(panda.position_jacobian(np.zeros(7)), expected[:3], atol=1e-6)


def test_basic_properties(panda):
    assert panda.n_joints == 7
    assert panda.ee_link == "panda_grasptarget"
    assert panda.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert "panda_link4" in panda.link_names and "panda_grasptarget" in panda.link_names
    assert panda.urdf_path.name == "panda.urdf"


# ------------------------------------------------------------------ Jacobian vs finite differences


def test_position_jacobian_matches_finite_differences(panda):
    h = 1e-6
    for q in _random_qs("panda", 20, seed=1):
        Jp = panda.position_jacobian(q)
        fd = np.empty((3, 7))
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = h
            fd[:, j] = (panda.ee_position(q + dq) - panda.ee_position(q - dq)) / (2 * h)
        np.testing.assert_allclose(Jp, fd, atol=1e-6)
        np.testing.assert_allclose(panda.jacobian(q)[:3], Jp, atol=0)


def test_angular_jacobian_matches_finite_differences_of_rotation(panda):
    h = 1e-6
    for q in _random_qs("panda", 10, seed=2):
        J = panda.jacobian(q)
        _, R = panda.ee_pose(q)
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = h
            dR = (panda.ee_pose(q + dq)[1] - panda.ee_pose(q - dq)[1]) / (2 * h)
            W = dR @ R.T  # skew(omega), omega in base axes
            omega = np.array([W[2, 1], W[0, 2], W[1, 0]])
            np.testing.assert_allclose(J[3:, j], omega, atol=1e-6)


def test_fused_position_and_jacobian_equal_separate_calls(panda):
    for q in _random_qs("panda", 5, seed=3):
        p, J = panda.ee_position_and_jacobian(q)
        np.testing.assert_array_equal(p, panda.ee_position(q))
        np.testing.assert_array_equal(J, panda.jacobian(q))


def test_batched_positions_equal_single_calls(panda):
    qs = _random_qs("panda", 16, seed=4)
    out = panda.ee_positions(qs)
    assert out.shape == (16, 3)
    for q, p in zip(qs, out, strict=True):
        np.testing.assert_array_equal(p, panda.ee_position(q))
    assert panda.ee_positions(np.zeros((0, 7))).shape == (0, 3)


def test_returned_arrays_are_copies(panda):
    q = np.zeros(7)
    p = panda.ee_position(q)
    p[:] = 99.0
    pos, R = panda.ee_pose(q)
    J = panda.jacobian(q)
    J[:] = 99.0
    np.testing.assert_allclose(panda.ee_position(q), [0.088, 0.0, 0.821], atol=1e-6)
    np.testing.assert_allclose(panda.jacobian(q)[1, 0], 0.088, atol=1e-6)
    panda.ee_position([0.3] * 7)  # another query must not change earlier results
    np.testing.assert_allclose(pos, [0.088, 0.0, 0.821], atol=1e-6)
    np.testing.assert_allclose(R[2, 2], -1.0, atol=1e-6)


def test_input_is_not_modified(panda):
    q = np.array([0.1, -0.2, 0.3, -1.5, 0.2, 1.0, 0.5])
    before = q.copy()
    panda.ee_pose(q)
    panda.jacobian(q)
    np.testing.assert_array_equal(q, before)


# ------------------------------------------------------------------ FR3 = Panda chain


def test_fr3_gives_the_panda_positions(panda, fr3):
    assert fr3.joint_names == tuple(f"fr3_joint{i}" for i in range(1, 8))
    qs = _random_qs("fr3", 50, seed=5)
    np.testing.assert_allclose(fr3.ee_positions(qs), panda.ee_positions(qs), atol=1e-12)
    np.testing.assert_allclose(fr3.jacobian(qs[0]), panda.jacobian(qs[0]), atol=1e-12)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(6), r"q: expected shape \(7,\).*got shape \(6,\)"),
        (np.zeros(8), r"q: expected shape \(7,\)"),
        (np.zeros((1, 7)), r"q: expected shape \(7,\).*\(1, 7\)"),
        (0.0, r"q: expected shape \(7,\)"),
        ([0, 0, 0, np.nan, 0, 0, 0], r"q: must be finite"),
        ([0, 0, 0, 0, 0, 0, np.inf], r"q: must be finite"),
        (["a"] * 7, r"q: expected 7 joint positions"),
        (None, r"q: expected"),
    ],
)
def test_bad_q_raises_value_error_naming_q(panda, bad, match):
    for method in (panda.ee_position, panda.jacobian, panda.position_jacobian, panda.ee_pose,
                   panda.ee_position_and_jacobian):
        with pytest.raises(ValueError, match=match):
            method(bad)
    with pytest.raises(ValueError, match=match):
        panda.frame_position(bad, "panda_link4")


def test_huge_finite_q_is_accepted(panda):
    # The sum overflows the cheap finiteness screen; the exact check must still accept it.
    q = np.array([1e308, 1e308, 0, 0, 0, 0, 0])
    assert np.isfinite(panda.ee_position(q)).all()


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(7), r"qs: expected shape \(B, 7\)"),
        (np.zeros((3, 6)), r"qs: expected shape \(B, 7\).*\(3, 6\)"),
        (np.array([[0.0] * 7, [np.nan] * 7]), r"qs: must be finite; row 1"),
    ],
)
def test_bad_batch_raises(panda, bad, match):
    with pytest.raises(ValueError, match=match):
        panda.ee_positions(bad)


def test_unknown_link_lists_the_links(panda):
    with pytest.raises(ValueError, match=r"link_name: 'panda_link9' is not a link.*panda_link4"):
        panda.frame_position(np.zeros(7), "panda_link9")
    with pytest.raises(ValueError, match=r"link_name: 'panda_joint1' is not a link"):
        panda.frame_position(np.zeros(7), "panda_joint1")  # a joint, not a link


def _panda_like(**overrides) -> SimpleNamespace:
    p = RobotProfile(name="panda")
    fields = {
        "urdf": p.urdf,
        "urdf_joint_names": p.urdf_joint_names,
        "ee_link": p.ee_link,
        "joint_names": p.joint_names,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_profile_errors_name_the_field():
    with pytest.raises(ValueError, match=r"ee_link: 'gripper' is not a link"):
        Kinematics.from_profile(_panda_like(ee_link="gripper"))
    names = ("panda_joint1",) * 7
    with pytest.raises(ValueError, match=r"urdf_joint_names has duplicates"):
        Kinematics.from_profile(_panda_like(urdf_joint_names=names))
    names = tuple(f"panda_joint{i}" for i in range(1, 7)) + ("fr3_joint7",)
    with pytest.raises(ValueError, match=r"urdf_joint_names\[6\] = 'fr3_joint7' is not a movable"):
        Kinematics.from_profile(_panda_like(urdf_joint_names=names))
    with pytest.raises(ValueError, match=r"urdf_joint_names: expected 7 names"):
        Kinematics.from_profile(_panda_like(urdf_joint_names=("panda_joint1",)))


def test_resolve_urdf():
    path = resolve_urdf("pybullet_data:franka_panda/panda.urdf")
    assert path.is_file() and path.name == "panda.urdf"
    assert resolve_urdf(str(path)) == path
    with pytest.raises(ValueError, match=r"urdf: '/no/such/robot.urdf'.*not a file"):
        resolve_urdf("/no/such/robot.urdf")
    with pytest.raises(ValueError, match=r"urdf: 'pybullet_data:nope.urdf'.*not a file"):
        resolve_urdf("pybullet_data:nope.urdf")
    with pytest.raises(ValueError, match=r"names no file"):
        resolve_urdf("pybullet_data:")
    with pytest.raises(ValueError, match=r"urdf: expected a file path"):
        resolve_urdf("")


def test_resolve_urdf_without_pybullet_data(monkeypatch):
    monkeypatch.setitem(sys.modules, "pybullet_data", None)  # import now raises ImportError
    with pytest.raises(ValueError, match=r"install pybullet.*absolute path"):
        resolve_urdf("pybullet_data:franka_panda/panda.urdf")


def test_bad_urdf_file_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.urdf"
    bad.write_text("<robot name='x'><link name='a'/><joint")
    with pytest.raises(ValueError, match=r"urdf: cannot parse"):
        Kinematics(bad, ["j1"], "a")


# ------------------------------------------------------------------ a small URDF by hand

# Planar arm in the x-z plane: base -> j1 (about y, at z=0.5) -> 1 m link -> j2 (about y)
# -> 0.5 m link -> tip; plus a revolute "wrist" joint the profile does not drive (held at 0).
PLANAR_URDF = textwrap.dedent(
    """\
    <robot name="planar">
      <link name="base"/>
      <link name="l1"/>
      <link name="l2"/>
      <link name="wrist"/>
      <link name="tip"/>
      <joint name="j1" type="revolute">
        <parent link="base"/><child link="l1"/>
        <origin xyz="0 0 0.5" rpy="0 0 0"/><axis xyz="0 1 0"/>
        <limit lower="-3" upper="3" effort="1" velocity="1"/>
      </joint>
      <joint name="j2" type="revolute">
        <parent link="l1"/><child link="l2"/>
        <origin xyz="1 0 0" rpy="0 0 0"/><axis xyz="0 1 0"/>
        <limit lower="-3" upper="3" effort="1" velocity="1"/>
      </joint>
      <joint name="j3" type="revolute">
        <parent link="l2"/><child link="wrist"/>
        <origin xyz="0.5 0 0" rpy="0 0 0"/><axis xyz="0 1 0"/>
        <limit lower="-3" upper="3" effort="1" velocity="1"/>
      </joint>
      <joint name="tip_fixed" type="fixed">
        <parent link="wrist"/><child link="tip"/><origin xyz="0.1 0 0" rpy="0 0 0"/>
      </joint>
    </robot>
    """
)


@pytest.fixture
def planar(tmp_path) -> Kinematics:
    path = tmp_path / "planar.urdf"
    path.write_text(PLANAR_URDF)
    # Profile order reversed with respect to the URDF: q = (q_elbow, q_shoulder).
    profile = SimpleNamespace(
        urdf=str(path),
        urdf_joint_names=("j2", "j1"),
        ee_link="tip",
        joint_names=("elbow", "shoulder"),
    )
    return Kinematics.from_profile(profile)


# (q_elbow, q_shoulder) -> tip position. A positive rotation about +y turns +x towards -z.
PLANAR_CASES = [
    ((0.0, 0.0), (1.6, 0.0, 0.5)),
    ((0.0, np.pi / 2), (0.0, 0.0, 0.5 - 1.6)),
    ((np.pi / 2, 0.0), (1.0, 0.0, 0.5 - 0.6)),
    ((-np.pi / 2, np.pi / 2), (0.6, 0.0, -0.5)),
]


@pytest.mark.parametrize("q,expected", PLANAR_CASES)
def test_planar_arm_positions(planar, q, expected):
    assert planar.n_joints == 2
    np.testing.assert_allclose(planar.ee_position(q), expected, atol=1e-12)


def test_planar_arm_jacobian_and_link(planar):
    # At q = 0: shoulder (at z=0.5) is 1.6 m from the tip, elbow 0.6 m; both turn the tip to -z.
    J = planar.jacobian([0.0, 0.0])
    np.testing.assert_allclose(
        J,
        [[0.0, 0.0], [0.0, 0.0], [-0.6, -1.6], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
        atol=1e-12,
    )
    np.testing.assert_allclose(planar.frame_position([0.0, 0.0], "l2"), [1.0, 0.0, 0.5], atol=1e-12)
    with pytest.raises(ValueError, match=r"q: expected shape \(2,\).*\['elbow', 'shoulder'\]"):
        planar.ee_position([0.0, 0.0, 0.0])


# ------------------------------------------------------------------ ROS-free, simulator-free


def test_imports_without_pybullet_and_rclpy():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pybullet"] = None   # any "import pybullet" now fails
        sys.modules["rclpy"] = None
        from robot_rl.config import RobotProfile
        from robot_rl.kinematics import Kinematics
        kin = Kinematics.from_profile(RobotProfile(name="panda"))
        print(*kin.ee_position([0.0] * 7))
        assert "pybullet" not in [m for m, v in sys.modules.items() if v is not None]
        """
    )
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert out.returncode == 0, out.stderr
    printed = [float(x) for x in out.stdout.split()]
    np.testing.assert_allclose(printed, [0.088, 0.0, 0.821], atol=1e-6)
