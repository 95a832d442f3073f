"""robot_rl — off-policy RL training service for real robot arms on ROS 2.

One setup.py serves both install paths:
  * ``pip install -e .`` in a venv (the Makefile does this);
  * ``colcon build`` in a ROS 2 workspace (ament_python: package.xml, resource marker,
    launch + config files as data files, node executables under lib/robot_rl).

The repository folders ``sim/`` and ``ros_nodes/`` install as ``robot_rl.sim`` and
``robot_rl.ros_nodes`` (through the relative symlinks ``robot_rl/sim -> ../sim`` and
``robot_rl/ros_nodes -> ../ros_nodes``), so that no generic top-level name lands in
site-packages. Symlinks rather than ``package_dir`` because ``colcon build --symlink-install``
(setuptools develop mode) cannot remap subpackages.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "robot_rl"

# Node executables (console scripts). colcon installs them under lib/robot_rl so that
# `ros2 run robot_rl <name>` and launch files find them; pip puts them in the venv's bin/.
NODES: dict[str, str] = {
    "sim_robot_node": "robot_rl.ros_nodes.sim_robot_node:main",
    "safety_node": "robot_rl.ros_nodes.safety_node:main",
    "actor_node": "robot_rl.ros_nodes.actor_node:main",
    "replay_node": "robot_rl.ros_nodes.replay_node:main",
    "learner_node": "robot_rl.ros_nodes.learner_node:main",
    "teleop_node": "robot_rl.ros_nodes.teleop_node:main",
    "scripted_operator_node": "robot_rl.ros_nodes.scripted_operator_node:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Off-policy RL training service for real robot arms on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Every subpackage, the symlinked robot_rl/sim and robot_rl/ros_nodes included.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/launch/config", glob("launch/config/*.yaml")),
    ],
    install_requires=[
        "numpy>=1.24",
        "pydantic>=2.5",
        "pyyaml>=6",
        "gymnasium>=1.0",
        "pybullet>=3.2.5",
        "pin>=2.7",
        "zarr>=3.0",
        "safetensors>=0.4",
        "torch>=2.2",
        "matplotlib>=3.7",  # robot-rl plot: learning curves as PNG
        "rosbags>=0.11,<0.12",  # robot-rl demos import: pure-Python rosbag2 (MCAP + sqlite3) reader
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "colcon-common-extensions>=0.3",
        ],
        # Benchmarks only (bench/learner.py, bench/learning.py compare against it); never a
        # runtime dependency. 2.9.2 accepts the pinned torch 2.13.0.
        "bench": ["stable-baselines3==2.9.2"],
    },
    entry_points={
        "console_scripts": [
            "robot-rl = robot_rl.cli:main",
            *(f"{name} = {target}" for name, target in NODES.items()),
        ],
    },
    zip_safe=False,
)
