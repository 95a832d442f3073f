"""Observation and action specs: explicit names, shapes and bounds.

A :class:`BoxSpec` is what every part agrees on: the env builds its gymnasium spaces from it, the
replay store writes it into its attributes (a store with another spec is refused), the actor
validates proposals with it. Validation never clips silently: a wrong shape, a non-finite value or
a value outside the bounds raises ``ValueError`` naming the field and the element.
"""
from __future__ import annotations

import hashlib
import json
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


# --------------------------------------------------------------------------- observations

#: What an observation field is for. ``proprio``: the robot's own state (joint positions,
#: velocities, end-effector); ``task``: the scene (an object's pose); ``achieved_goal`` /
#: ``desired_goal``: what the robot has brought about and what the episode asks for
#: (gymnasium-robotics' keys; hindsight relabelling swaps the desired goal); ``image``: a camera.
OBS_ROLES = ("proprio", "task", "achieved_goal", "desired_goal", "image")
OBS_DTYPES = ("float32", "uint8")


@dataclass(frozen=True)
class ObsField:
    """One named part of an observation.

    Attributes:
        key: the field's name (``"q"``, ``"ee_pos"``, ``"goal"``, ``"wrist_rgb"``); a store
            keeps it as its own array, a network encodes it with its own encoder.
        shape: ``(n,)`` for a vector, ``(height, width, channels)`` for an image.
        dtype: ``float32`` (vectors) or ``uint8`` (images).
        role: one of :data:`OBS_ROLES`.
        names: one name per element of a vector (``("q1", ..., "q7")``); empty for images.
        low, high: per-element bounds of a vector (an image is 0..255).
    """

    key: str
    shape: tuple[int, ...]
    dtype: str
    role: str
    names: tuple[str, ...] = ()
    low: np.ndarray | None = field(default=None, repr=False)
    high: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        where = f"observation field {self.key!r}"
        if not isinstance(self.key, str) or not self.key.isidentifier():
            raise ValueError(f"observation field key {self.key!r}: expected an identifier "
                             "(letters, digits, underscores)")
        shape = tuple(int(s) for s in self.shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"{where}: shape {self.shape!r} must be positive sizes")
        if self.dtype not in OBS_DTYPES:
            raise ValueError(f"{where}: dtype {self.dtype!r}, expected one of {OBS_DTYPES}")
        if self.role not in OBS_ROLES:
            raise ValueError(f"{where}: role {self.role!r}, expected one of {OBS_ROLES}")
        if (self.role == "image") != (self.dtype == "uint8" and len(shape) == 3):
            raise ValueError(f"{where}: an image is uint8 (height, width, channels) with role "
                             f"'image'; got dtype {self.dtype}, shape {shape}, role {self.role}")
        object.__setattr__(self, "shape", shape)
        if self.is_image:
            if self.names or self.low is not None or self.high is not None:
                raise ValueError(f"{where}: an image has no element names or bounds")
            return
        if len(shape) != 1:
            raise ValueError(f"{where}: a float32 field is a vector, got shape {shape}")
        box = BoxSpec(self.key, tuple(self.names), self.low, self.high)  # checks names/bounds
        if box.dim != shape[0]:
            raise ValueError(f"{where}: {box.dim} element names for shape {shape}")
        object.__setattr__(self, "names", box.names)
        object.__setattr__(self, "low", box.low)
        object.__setattr__(self, "high", box.high)

    @property
    def is_image(self) -> bool:
        return self.role == "image"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of one observation of this field."""
        return self.size * np.dtype(self.dtype).itemsize

    def signature(self) -> str:
        """``key:shape:dtype:role`` -- what a network's input layer depends on."""
        return f"{self.key}:{'x'.join(map(str, self.shape))}:{self.dtype}:{self.role}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "shape": list(self.shape), "dtype": self.dtype,
                             "role": self.role}
        if not self.is_image:
            d.update({k: v for k, v in BoxSpec(self.key, self.names, self.low,
                                               self.high).to_dict().items() if k != "name"})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsField:
        try:
            if d.get("role") == "image":
                return cls(str(d["key"]), tuple(d["shape"]), str(d["dtype"]), "image")
            box = BoxSpec.from_dict({"name": d["key"], "names": d["names"], "low": d["low"],
                                     "high": d["high"]})
            return cls(str(d["key"]), tuple(d["shape"]), str(d["dtype"]), str(d["role"]),
                       box.names, box.low, box.high)
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a valid observation field description: {e!r}") from None

    def difference(self, other: ObsField) -> str | None:
        """What differs, in words (``None`` if equal)."""
        for what in ("shape", "dtype", "role", "names"):
            a, b = getattr(self, what), getattr(other, what)
            if a != b:
                return f"{what} {a!r} vs {b!r}"
        if not self.is_image:
            for what, a, b in (("low", self.low, other.low), ("high", self.high, other.high)):
                if not np.array_equal(a, b):
                    j = int(np.flatnonzero(a != b)[0])
                    return f"bound {what}[{j}] ({self.names[j]}) {a[j]:.6g} vs {b[j]:.6g}"
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObsField):
            return NotImplemented
        return self.key == other.key and self.difference(other) is None

    def __hash__(self) -> int:
        return hash(self.signature())


@dataclass(frozen=True)
class ObservationSpec:
    """An observation keyed by name: ordered :class:`ObsField` s.

    The task builds it from the robot profile and its own needs (``Task.obs_spec``). The vector
    fields, concatenated in order, are :attr:`flat` -- the float32 vector that the networks, the
    replay columns and the ``Transition`` message carry today (a :class:`BoxSpec` whose element
    names and bounds are the fields', in order); :meth:`split` and :meth:`join` convert.
    :attr:`hash` is the spec's identity: the replay store and the checkpoint keep it, and a
    mismatch is refused by :meth:`difference`, which names the field.
    """

    fields: tuple[ObsField, ...]

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        if not fields:
            raise ValueError("observation spec: no fields")
        keys = [f.key for f in fields]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"observation spec: field keys must be unique, repeated: {dup}")
        object.__setattr__(self, "fields", fields)
        vec = [f for f in fields if not f.is_image]
        if vec:
            flat = BoxSpec("observation", tuple(n for f in vec for n in f.names),
                           np.concatenate([f.low for f in vec]),
                           np.concatenate([f.high for f in vec]))  # element names unique
        else:
            flat = None
        object.__setattr__(self, "_flat", flat)
        slices, i = {}, 0
        for f in vec:
            slices[f.key] = slice(i, i + f.size)
            i += f.size
        object.__setattr__(self, "_slices", slices)
        blob = json.dumps([f.to_dict() for f in fields], sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "_hash", hashlib.sha256(blob.encode()).hexdigest()[:16])

    # -- views ------------------------------------------------------------------------------

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    def __getitem__(self, key: str) -> ObsField:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(f"observation has no field {key!r} (fields: {', '.join(self.keys)})")

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def by_role(self, role: str) -> tuple[ObsField, ...]:
        if role not in OBS_ROLES:
            raise ValueError(f"role {role!r}, expected one of {OBS_ROLES}")
        return tuple(f for f in self.fields if f.role == role)

    @property
    def flat(self) -> BoxSpec:
        """The vector fields as one float32 vector (today's ``observation`` BoxSpec)."""
        if self._flat is None:
            raise ValueError("observation spec: no vector fields (images only)")
        return self._flat

    @property
    def dim(self) -> int:
        """Elements of the flat vector (:attr:`flat`)."""
        return self.flat.dim

    @property
    def slices(self) -> dict[str, slice]:
        """Where each vector field sits in :attr:`flat`."""
        return dict(self._slices)

    @property
    def image_fields(self) -> tuple[ObsField, ...]:
        return tuple(f for f in self.fields if f.is_image)

    @property
    def hash(self) -> str:
        """16 hex digits of the SHA-256 of the fields (keys, shapes, dtypes, roles, element
        names, bounds): the spec's identity."""
        return self._hash

    def signature(self) -> list[str]:
        """``key:shape:dtype:role`` per field, in order (what network inputs depend on)."""
        return [f.signature() for f in self.fields]

    # -- conversions ------------------------------------------------------------------------

    def split(self, flat: Any) -> dict[str, np.ndarray]:
        """The vector fields of flat observation(s) ``(..., flat.dim)``, as views."""
        x = np.asarray(flat)
        if x.ndim == 0 or x.shape[-1] != self.flat.dim:
            raise ValueError(f"observation: expected shape (..., {self.flat.dim}), got "
                             f"{x.shape}")
        return {k: x[..., s] for k, s in self._slices.items()}

    def join(self, parts: dict[str, Any]) -> np.ndarray:
        """The flat float32 observation(s) from a dict of vector fields (images ignored)."""
        missing = [k for k in self._slices if k not in parts]
        if missing:
            raise ValueError(f"observation: missing fields {missing} (have {sorted(parts)})")
        arrs = []
        for k in self._slices:
            a = np.asarray(parts[k], dtype=np.float32)
            n = self[k].size
            if a.ndim == 0 or a.shape[-1] != n:
                raise ValueError(f"observation field {k!r}: expected shape (..., {n}), got "
                                 f"{a.shape}")
            arrs.append(a)
        try:
            return np.concatenate(arrs, axis=-1)
        except ValueError as e:
            raise ValueError(f"observation: the fields' batch shapes differ ({e})") from None

    def with_field(self, f: ObsField, *, after: str | None = None) -> ObservationSpec:
        """This spec with ``f`` added (at the end, or after the field ``after``)."""
        fields = list(self.fields)
        i = len(fields) if after is None else self.keys.index(self[after].key) + 1
        fields.insert(i, f)
        return ObservationSpec(tuple(fields))

    # -- identity ---------------------------------------------------------------------------

    def difference(self, other: ObservationSpec, *, mine: str = "this",
                   theirs: str = "that") -> str | None:
        """What differs, naming the field (``None`` if the specs are equal)."""
        if self.hash == other.hash and self.fields == other.fields:
            return None
        a, b = {f.key: f for f in self.fields}, {f.key: f for f in other.fields}
        only_a, only_b = [k for k in a if k not in b], [k for k in b if k not in a]
        if only_a or only_b:
            parts = []
            if only_a:
                parts.append(f"field(s) {only_a} only in {mine}")
            if only_b:
                parts.append(f"field(s) {only_b} only in {theirs}")
            return "observation spec: " + "; ".join(parts)
        for k in a:
            d = a[k].difference(b[k])
            if d is not None:
                return f"observation field {k!r}: {d} ({mine} vs {theirs})"
        return (f"observation spec: field order {list(self.keys)} in {mine}, "
                f"{list(other.keys)} in {theirs}")

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [f.to_dict() for f in self.fields], "hash": self.hash}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObservationSpec:
        try:
            spec = cls(tuple(ObsField.from_dict(f) for f in d["fields"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a valid observation spec description: {e!r}") from None
        if "hash" in d and d["hash"] != spec.hash:
            raise ValueError(f"observation spec description: hash {d['hash']!r} does not match "
                             f"its fields ({spec.hash!r})")
        return spec

    @classmethod
    def from_flat(cls, box: BoxSpec, groups: list[tuple[str, int, str]]) -> ObservationSpec:
        """Fields ``(key, size, role)`` cut, in order, out of a flat :class:`BoxSpec`."""
        fields, i = [], 0
        for key, n, role in groups:
            fields.append(ObsField(key, (n,), "float32", role, box.names[i:i + n],
                                   box.low[i:i + n], box.high[i:i + n]))
            i += n
        if i != box.dim:
            raise ValueError(f"observation groups cover {i} of {box.dim} elements")
        return cls(tuple(fields))
