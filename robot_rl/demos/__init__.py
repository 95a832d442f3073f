"""Demonstrations: rosbag2 import (``robot-rl demos import``) and store summaries.

* :mod:`robot_rl.demos.bag` -- reads MCAP / sqlite3 rosbag2 bags with the pure-Python
  ``rosbags`` library into checked numpy streams (joint states, teleop or applied commands,
  task state); every problem names the file, topic, type and message.
* :mod:`robot_rl.demos.device` -- a lab's own SpaceMouse / gamepad recording (no ``rl/teleop``)
  replayed through the teleop node's mapping into the commands it would have sent.
* :mod:`robot_rl.demos.importer` -- cuts episodes (marks, a time-ranges file or the whole bag),
  resamples them to the control rate, computes rewards with the task's functions, and appends
  whole episodes (source = demo) to a replay store, exactly once.
* :mod:`robot_rl.demos.summary` -- ``robot-rl demos list / show``.

ROS-free: neither rclpy nor the built interfaces package is needed (the message definitions are
read from the ``.msg`` files).
"""
from robot_rl.demos.bag import BagError, TopicNames
from robot_rl.demos.importer import ImportOptions, ImportPlan, ImportResult, import_bag, plan_import

__all__ = ["BagError", "TopicNames", "ImportOptions", "ImportPlan", "ImportResult", "import_bag",
           "plan_import"]
