"""The deterministic policy gradient family: DDPG, TD3, DDPGfD.

``config.py`` resolves and checks the settings (torch-free); ``learning.py`` holds the learner
(:class:`~robot_rl.agents.dpg.learning.DPGLearner`).
"""
