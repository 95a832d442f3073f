"""CrossQ (Bhatt et al., ICLR 2024): SAC without target networks, BatchNorm in the critic.

The current and the next state-action pairs go through the critic in **one** forward pass
(``[s; s']``, ``[a; a' ~ pi(.|s')]``), so its batch statistics cover both distributions and the
bootstrapped values need no target network. Batch Renormalization (``critic_norm=batch_renorm``,
the paper's final version), Adam beta1 0.5, the actor updated every 3rd critic update, UTD 1;
the paper's critic is 2048 wide (``critic_hidden``).

``config.py`` resolves and checks the settings (torch-free); ``learning.py`` holds the learner.
"""
