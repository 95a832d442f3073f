"""Update-to-data ratio: how many gradient updates are due after each new transition.

After the warm-up, the learner must have done exactly ``floor((n - warmup) * utd_ratio)``
updates when ``n`` transitions have been collected (``utd_ratio`` 0.25: one update every 4 env
steps; 4: four updates per step). The ratio is taken as an exact decimal fraction, so no
float rounding drifts the count over millions of steps.
"""
from __future__ import annotations

from fractions import Fraction


class UpdateSchedule:
    """``due(n)`` -> updates to run now so that ``done == floor((n - warmup) * ratio)``."""

    def __init__(self, utd_ratio: float, warmup_steps: int = 0) -> None:
        if not utd_ratio > 0:
            raise ValueError(f"agent.utd_ratio: expected a value > 0, got {utd_ratio}")
        if warmup_steps < 0:
            raise ValueError(f"agent.warmup_steps: expected >= 0, got {warmup_steps}")
        self.ratio = Fraction(str(utd_ratio))
        self.warmup = int(warmup_steps)
        self.done = 0

    def target(self, env_steps: int) -> int:
        """Updates that should have been done after ``env_steps`` transitions."""
        if env_steps <= self.warmup:
            return 0
        return int((env_steps - self.warmup) * self.ratio)  # floor for a non-negative Fraction

    def due(self, env_steps: int) -> int:
        """Updates to run now (and count them as done)."""
        n = max(0, self.target(env_steps) - self.done)
        self.done += n
        return n
