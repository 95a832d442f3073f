"""SAC with a learned temperature, and the RLPD recipe as switches on it.

* SAC (Haarnoja et al. 2018): tanh-Gaussian actor, soft TD targets
  ``y = r + d (min_i Q'_i(s', a') - alpha log pi(a'|s'))``, ``a' ~ pi(.|s')``, temperature alpha
  learned towards a target entropy (``-|A|``).
* RLPD (Ball et al. 2023), each part a config switch: LayerNorm critics
  (``critic_norm=layer``), an ensemble of N critics (``ensemble_size=10``) computed as one
  batched computation whose target takes the min over M random members
  (``target_subset=2``, REDQ), the actor on the ensemble mean (``actor_q=mean``), the critic
  updated G times per actor update (``utd_ratio=G``, ``policy_delay=G``), and symmetric
  sampling (``demo_fraction=0.5``: half of every batch from demos and interventions).

``config.py`` resolves and checks the settings (torch-free); ``learning.py`` holds the learner.
"""
