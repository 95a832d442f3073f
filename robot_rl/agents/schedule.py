"""Update-to-data ratio: how many gradient updates are due after each new transition.

After the warm-up, the learner must have done exactly ``floor((n - warmup) * utd_ratio)``
updates when ``n`` transitions have been collected (``utd_ratio`` 0.25: one update every 4 env
steps; 4: four updates per step). The ratio is taken as an exact decimal fraction, so no
float rounding drifts the count over millions of steps.

:class:`UtdMeter` measures the ratio a learner actually achieves (the learner node in real time,
where the robot does not wait for it), overall and per robot, and says when it falls behind.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
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


#: ``agent.utd_pacing`` values: ``cap`` -- exactly the schedule's updates; ``floor`` -- at least
#: them, and more whenever the learner has nothing else to do (the learner node in real time)
UTD_PACINGS = ("cap", "floor")


@dataclass(frozen=True)
class UtdReading:
    """The update-to-data ratio achieved over the meter's window (see :class:`UtdMeter`).

    Attributes:
        utd: updates per new env step (all robots), None when no env step was taken.
        updates: updates done in the window.
        env_steps: new env steps (policy rows) in the window, all robots.
        expected: updates the schedule asked for in the window (its target's increase).
        backlog: updates the schedule asks for and the learner has not done, now.
        behind: the learner does not reach the configured ratio: in the window it did less than
            ``(1 - tolerance) * expected`` updates and its backlog grew.
        robots: per robot id, ``(new env steps, updates per env step of that robot or None)``;
            with N robots stepping at the same rate each robot's figure is N times ``utd``.
        window_s: seconds the reading spans.
    """

    utd: float | None
    updates: int
    env_steps: int
    expected: int
    backlog: int
    behind: bool
    robots: dict[int, tuple[int, float | None]]
    window_s: float


class UtdMeter:
    """The update-to-data ratio a learner achieves, over the last ``window_s`` seconds.

    ``record(now, updates=, env_steps=, target=, robot_steps=)`` takes the learner's counters
    (cumulative: updates done, policy rows seen, the schedule's target, policy rows seen per
    robot id); :meth:`reading` compares the newest record with the oldest one in the window::

        utd = d(updates) / d(env_steps)            (None without new env steps)
        behind = backlog > backlog at the window's start
                 and d(updates) < (1 - tolerance) * d(target)

    so a learner that keeps up (``cap``: exactly the target; ``floor``: more) is never behind,
    nor is one catching up on a backlog, however large. A reading needs records spanning at
    least half the window (a fresh meter says nothing is behind).
    """

    def __init__(self, utd_ratio: float, window_s: float = 10.0, tolerance: float = 0.1) -> None:
        if not utd_ratio > 0:
            raise ValueError(f"agent.utd_ratio: expected a value > 0, got {utd_ratio}")
        if not window_s > 0:
            raise ValueError(f"utd_window_s: expected seconds > 0, got {window_s}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance: expected 0 <= tolerance < 1, got {tolerance}")
        self.ratio = float(utd_ratio)
        self.window_s = float(window_s)
        self.tolerance = float(tolerance)
        self._records: deque[tuple[float, int, int, int, dict[int, int]]] = deque()

    def reset(self) -> None:
        """Forget every record (e.g. once a backlog of old rows has been taken in)."""
        self._records.clear()

    def record(self, now: float, *, updates: int, env_steps: int, target: int,
               robot_steps: dict[int, int] | None = None) -> None:
        recs = self._records
        recs.append((float(now), int(updates), int(env_steps), int(target),
                     dict(robot_steps or {})))
        while len(recs) > 2 and now - recs[1][0] >= self.window_s:
            recs.popleft()  # keep one record at (or just beyond) the window's start

    def reading(self) -> UtdReading:
        recs = self._records
        if not recs:
            return UtdReading(None, 0, 0, 0, 0, False, {}, 0.0)
        t0, u0, n0, g0, r0 = recs[0]
        t1, u1, n1, g1, r1 = recs[-1]
        du, dn, dg = u1 - u0, n1 - n0, g1 - g0
        backlog0, backlog1 = max(0, g0 - u0), max(0, g1 - u1)
        span = t1 - t0
        behind = (span >= 0.5 * self.window_s and backlog1 > backlog0
                  and du < (1.0 - self.tolerance) * dg)
        robots = {}
        for rid in sorted(r1):
            steps = r1[rid] - r0.get(rid, 0)
            robots[rid] = (steps, du / steps if steps > 0 else None)
        return UtdReading(du / dn if dn > 0 else None, du, dn, dg, backlog1, behind, robots,
                          span)
