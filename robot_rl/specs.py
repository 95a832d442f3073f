"""Observation and action specs: explicit names, shapes and bounds.

A :class:`BoxSpec` is what every part agrees on: the env builds its gymnasium spaces from it, the
replay store writes it into its attributes (a store with another spec is refused), the actor
validates proposals with it. Validation never clips silently: a wrong shape, a non-finite value or
a value outside the bounds raises ``ValueError`` naming the field and the element.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Slack allowed on the bounds by :meth:`BoxSpec.validate` (float32 rounding of +-1 actions).
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class BoxSpec:
    """A named, bounded float32 vector.

    Attributes:
        name: what the vector is (``"observation"``, ``"action"``); used in error messages.
        names: one name per element, e.g. ``("q1", ..., "goal_z")``.
        low, high: per-element bounds (float32, may be +-inf).
    """

    name: str
    names: tuple[str, ...]
    low: np.ndarray = field(repr=False)
    high: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.high, dtype=np.float32).reshape(-1)
        n = len(self.names)
        if low.shape != (n,) or high.shape != (n,):
            raise ValueError(
                f"{self.name} spec: low/high must have {n} values (one per name), "
                f"got {low.shape[0]} and {high.shape[0]}"
            )
        if len(set(self.names)) != n:
            raise ValueError(f"{self.name} spec: element names must be unique: {self.names}")
        if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low > high):
            raise ValueError(f"{self.name} spec: need low <= high for every element")
        low.flags.writeable = False
        high.flags.writeable = False
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "names", tuple(self.names))
        # validate()'s common case (a float32 array of the right shape, finite bounds) is one
        # vectorised comparison: NaN fails both comparisons, so it falls through to the checks
        # that name the problem.
        object.__setattr__(self, "_fast", bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high))))
        object.__setattr__(self, "_lo_tol", low - np.float32(_TOLERANCE))
        object.__setattr__(self, "_hi_tol", high + np.float32(_TOLERANCE))

    @property
    def shape(self) -> tuple[int]:
        return (len(self.names),)

    @property
    def dim(self) -> int:
        return len(self.names)

    def validate(self, x: Any, *, tolerance: float = _TOLERANCE) -> np.ndarray:
        """Return ``x`` as a new float32 array, or raise ``ValueError`` saying what is wrong.

        Checks the shape, finiteness and bounds (with ``tolerance``). Never clips.
        """
        if (self._fast and tolerance == _TOLERANCE and type(x) is np.ndarray
                and x.dtype == np.float32 and x.shape == self.shape
                and np.count_nonzero((x >= self._lo_tol) & (x <= self._hi_tol)) == x.size):
            return x.copy()
        try:
            arr = np.array(x, dtype=np.float32, copy=True)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name}: expected {self.dim} numbers ({', '.join(self.names)}), "
                f"got {type(x).__name__}"
            ) from None
        if arr.shape != self.shape:
            raise ValueError(
                f"{self.name}: expected shape {self.shape} ({', '.join(self.names)}), "
                f"got shape {arr.shape}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{self.name}[{i}] ({self.names[i]}) is not finite: {arr[i]}")
        out = (arr < self.low - np.float32(tolerance)) | (arr > self.high + np.float32(tolerance))
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(
                f"{self.name}[{i}] ({self.names[i]}) = {arr[i]:.6g} is outside its bounds "
                f"[{self.low[i]:.6g}, {self.high[i]:.6g}]"
            )
        return arr

    def contains(self, x: np.ndarray) -> bool:
        try:
            self.validate(x)
        except ValueError:
            return False
        return True

    def to_gym(self):
        """The equivalent ``gymnasium.spaces.Box`` (float32)."""
        from gymnasium import spaces

        return spaces.Box(low=self.low.copy(), high=self.high.copy(), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in replay attributes, compared on reopen)."""

        def enc(a: np.ndarray) -> list[float | str]:
            return [float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf") for v in a]

        return {"name": self.name, "names": list(self.names), "low": enc(self.low),
                "high": enc(self.high)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoxSpec:
        try:
            return cls(
                name=str(d["name"]),
                names=tuple(str(n) for n in d["names"]),
                low=np.array([float(v) for v in d["low"]], dtype=np.float32),
                high=np.array([float(v) for v in d["high"]], dtype=np.float32),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid spec description: {e}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoxSpec):
            return NotImplemented
        return (
            self.name == other.name
            and self.names == other.names
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.names, self.low.tobytes(), self.high.tobytes()))


def concat_names(*groups: tuple[str, int] | tuple[str, tuple[str, ...]]) -> tuple[str, ...]:
    """``("q", 7), ("goal", ("x","y","z"))`` → ``("q1".."q7", "goal_x", "goal_y", "goal_z")``."""
    names: list[str] = []
    for prefix, items in groups:
        if isinstance(items, int):
            names.extend(f"{prefix}{i}" for i in range(1, items + 1))
        else:
            names.extend(f"{prefix}_{s}" for s in items)
    return tuple(names)
