"""robot_rl — off-policy reinforcement learning for real robot arms over ROS 2.

This package is the ROS-free core: configuration, specs, tasks, kinematics, replay, agents,
safety math and the CLI. It imports without ``rclpy`` and without ``pybullet``; the PyBullet
simulation lives in :mod:`robot_rl.sim` (folder ``sim/``) and the ROS 2 nodes in
:mod:`robot_rl.ros_nodes` (folder ``ros_nodes/``).
"""

__version__ = "0.1.0"
