"""Checks of a safety node's command log against the hard limits (DESIGN §5), ROS-free.

Used by the ROS-level fuzz (``bench/safety.py --ros``) and the safety node's tests: they
record every ``AppliedCommand`` (decision stamp, velocities) and ask two questions.

* **At the node's output rate** (:func:`audit_outputs`): consecutive commands ``v_k`` satisfy
  ``|v_k| <= V``, ``|v_k - v_{k-1}| <= A dt`` and ``|(v_k - v_{k-1}) - (v_{k-1} - v_{k-2})|
  <= J dt^2`` (``dt`` the output period), and no two commands are less than ``dt`` apart.
* **As a driver samples them** (:func:`audit_sampled`): a driver that reads the newest command
  once per ``dt`` at phase ``phi`` sees ``u_i = v(t_0 + phi + i dt)``; the same three limits
  must hold for ``u``, at every phase. This is what bursts break (two commands inside one
  period look like twice the acceleration) and what a missed period tests (the driver reads
  the same command twice: zero acceleration for a period).

Both return a :class:`Audit`: the number of checked samples, the violations per limit and the
worst excess of each (in units of the limit: 0.0 when every sample is inside). Tolerances are
relative (``rtol``, float round-off of the filter's maths) plus an absolute floor.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Audit", "audit_outputs", "audit_sampled", "sample_commands"]


@dataclass
class Audit:
    """Violations of a command sequence: counts per limit and the worst relative excess."""

    samples: int = 0
    violations: dict[str, int] = field(default_factory=lambda: {
        "velocity": 0, "acceleration": 0, "jerk": 0, "spacing": 0})
    worst: dict[str, float] = field(default_factory=lambda: {
        "velocity": 0.0, "acceleration": 0.0, "jerk": 0.0, "spacing": 0.0})
    #: (limit, index of the sample, joint, value, bound) of the first few violations
    examples: list[tuple[str, int, int, float, float]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.violations.values())

    def merge(self, other: Audit) -> Audit:
        out = Audit(self.samples + other.samples)
        for k in out.violations:
            out.violations[k] = self.violations[k] + other.violations[k]
            out.worst[k] = max(self.worst[k], other.worst[k])
        out.examples = (self.examples + other.examples)[:20]
        return out

    def as_dict(self) -> dict:
        return {"samples": self.samples, "violations": dict(self.violations),
                "worst_excess": {k: float(v) for k, v in self.worst.items()},
                "examples": [list(e) for e in self.examples[:5]]}


def _check(audit: Audit, name: str, value: np.ndarray, bound: np.ndarray, rtol: float,
           atol: float) -> None:
    """Count ``|value| > bound (1 + rtol) + atol`` per (sample, joint)."""
    if value.size == 0:
        return
    mag = np.abs(value)
    lim = bound * (1.0 + rtol) + atol
    bad = mag > lim
    n = int(bad.sum())
    if n:
        audit.violations[name] += n
        excess = (mag - bound) / bound
        audit.worst[name] = max(audit.worst[name], float(excess[bad].max()))
        for i, j in zip(*np.nonzero(bad)):
            if len(audit.examples) >= 20:
                break
            audit.examples.append((name, int(i), int(j), float(value[i, j]), float(bound[j])))


def audit_outputs(stamps_s: Sequence[float], cmds: np.ndarray, *, dt: float, v_max, a_max,
                  j_max, rtol: float = 1e-9, atol: float = 1e-12,
                  spacing_rtol: float = 1e-3) -> Audit:
    """Limits between consecutive commands (the node's output rate). ``cmds``: (N, n)."""
    cmds = np.asarray(cmds, dtype=float)
    t = np.asarray(stamps_s, dtype=float)
    V, A, J = (np.asarray(x, dtype=float) for x in (v_max, a_max, j_max))
    a = Audit(samples=int(cmds.shape[0]))
    _check(a, "velocity", cmds, V, rtol, atol)
    dv = np.diff(cmds, axis=0)
    _check(a, "acceleration", dv, A * dt, rtol, atol)
    _check(a, "jerk", np.diff(dv, axis=0), J * dt * dt, rtol, atol)
    gaps = np.diff(t)
    short = gaps < dt * (1.0 - spacing_rtol)
    if short.any():
        a.violations["spacing"] += int(short.sum())
        a.worst["spacing"] = max(a.worst["spacing"], float((dt - gaps[short]).max() / dt))
        for i in np.flatnonzero(short)[:5]:
            a.examples.append(("spacing", int(i + 1), -1, float(gaps[i]), dt))
    return a


def sample_commands(stamps_s: Sequence[float], cmds: np.ndarray, *, dt: float,
                    phase: float) -> np.ndarray:
    """What a driver reading the newest command every ``dt`` (first read at
    ``stamps_s[0] + phase * dt``) sees, up to the last command."""
    t = np.asarray(stamps_s, dtype=float)
    cmds = np.asarray(cmds, dtype=float)
    if t.size == 0:
        return cmds[:0]
    reads = t[0] + phase * dt + dt * np.arange(int((t[-1] - t[0]) / dt) + 1)
    idx = np.searchsorted(t, reads, side="right") - 1  # newest command at or before each read
    return cmds[idx[idx >= 0]]


def audit_sampled(stamps_s: Sequence[float], cmds: np.ndarray, *, dt: float, v_max, a_max,
                  j_max, phases: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                  rtol: float = 1e-9, atol: float = 1e-12) -> Audit:
    """Limits as a once-per-``dt`` driver samples the commands, at each phase."""
    out = Audit()
    for ph in phases:
        u = sample_commands(stamps_s, cmds, dt=dt, phase=ph)
        a = audit_outputs(np.arange(len(u)) * dt, u, dt=dt, v_max=v_max, a_max=a_max,
                          j_max=j_max, rtol=rtol, atol=atol)
        out = out.merge(a)
    return out
