"""PyBullet Panda simulation (no ROS): the world, gymnasium envs and scripted controllers.

Importing this package registers the gymnasium ids ``PandaReach-v0`` and ``PandaPush-v0``;
``gymnasium.make("robot_rl.sim:PandaReach-v0")`` imports it for you.
"""
import gymnasium as gym

for _id, _task in (("PandaReach-v0", "reach"), ("PandaPush-v0", "push")):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point="robot_rl.sim.env:PandaEnv", kwargs={"task": _task})
