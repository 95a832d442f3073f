"""Every module of the ROS-free core imports with rclpy and pybullet unavailable."""
import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib, importlib.abc, json, pkgutil, sys, pathlib

BLOCKED = ("rclpy", "pybullet", "rosidl_runtime_py", "robot_rl_interfaces")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED and name != "pybullet_data":
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import robot_rl
core = pathlib.Path(robot_rl.__file__).resolve().parent
names = []
for info in pkgutil.walk_packages(robot_rl.__path__, "robot_rl."):
    spec = importlib.util.find_spec(info.name)
    origin = pathlib.Path(spec.origin).resolve()
    # robot_rl.sim / robot_rl.ros_nodes live in sim/ and ros_nodes/: not the core.
    if core not in origin.parents:
        continue
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps(names))
"""


def test_every_core_module_imports_without_rclpy_and_pybullet():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd="/",
                         timeout=120)
    assert out.returncode == 0, out.stderr
    names = json.loads(out.stdout.strip().splitlines()[-1])
    on_disk = {
        "robot_rl." + ".".join(p.relative_to(ROOT / "robot_rl").with_suffix("").parts).replace(".__init__", "")
        for p in (ROOT / "robot_rl").rglob("*.py")
        if p.name != "__init__.py" and (ROOT / "robot_rl") in p.resolve().parents
    }
    missing = on_disk - set(names)
    assert not missing, f"modules not imported by the walk: {sorted(missing)}"
    assert "robot_rl.config" in names and "robot_rl.kinematics" in names
