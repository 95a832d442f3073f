"""SVG(0) (Heess et al. 2015): a reparameterised tanh-Gaussian actor with a fixed entropy weight.

``config.py`` resolves and checks the settings (torch-free); ``learning.py`` holds the learner.
With ``twin_critics`` and ``svg_soft_target`` it is SAC with a fixed temperature; the ``sac``
family learns the temperature and adds the RLPD recipe.
"""
