"""The replay row: one ``Transition`` (DESIGN §3) as columns, and its vectorised validation.

Every field of ``robot_rl_interfaces/msg/Transition`` is one column of the store, time on axis 0:

============================  =========  =====================================================
column                        dtype      meaning
============================  =========  =====================================================
``observation``               float32    s_t, shape (obs_dim,)
``action``                    float32    a_t in the policy's action space, shape (act_dim,)
``next_observation``          float32    s_{t+1}, shape (obs_dim,) (the final one at truncation)
``reward``                    float32    r_t
``terminated``                bool       true end: never bootstrap through it
``truncated``                 bool       time limit: bootstrap through it
``source``                    uint8      0 policy, 1 demo, 2 intervention
``robot_id``                  uint16     robot index; an episode is (robot_id, episode_id)
``actor_session``             uint64     random per actor start
``seq``                       uint64     per-session sequence number, counted from 0
``episode_id``                uint64     unique across restarts
``step_index``                uint32     step within the episode (0 first)
``stamp_ns``                  int64      wall or sim time of the step
``policy_version``            uint64     version of the policy that acted
``safety_rules``              uint32     bitmask of the safety rules that modified the action
============================  =========  =====================================================

(robot_id, actor_session, seq) identifies a row; the writer stores each such key once.

Validation never clips and never raises on bad *data*: :func:`validate_columns` returns a mask
of the rows to keep and, per rejected row, a reason code such as ``observation.non_finite`` or
``source.unknown`` plus one human-readable example message per reason. Bad *usage* (unknown or
missing column names, mismatched column lengths) raises ``ValueError`` naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Mapping

import numpy as np

from robot_rl.specs import BoxSpec

#: Version of the store layout, stored in the attributes. 2: each observation field is its own
#: array (``data/obs/<key>``, ``data/next_obs/<key>``); 1: the observation is one flat array
#: (``data/observation``) -- read, never written (``robot-rl replay migrate`` converts it).
SCHEMA_VERSION = 2
#: The layout versions a reader opens.
READABLE_SCHEMA_VERSIONS = (1, 2)

#: Attribute key under which the store keeps its description in the zarr group attributes.
ATTRS_KEY = "robot_rl_replay"


class Source(IntEnum):
    """Where a transition's action came from (``Transition.SOURCE_*``)."""

    POLICY = 0
    DEMO = 1
    INTERVENTION = 2


#: Sources whose rows are kept forever and sampled in the demo share of a batch.
KEEP_FOREVER_SOURCES = (Source.DEMO, Source.INTERVENTION)


@dataclass(frozen=True)
class Column:
    """One column of the store: its dtype and whether it is a vector of ``obs``/``act`` size."""

    name: str
    dtype: np.dtype
    vector: str | None = None  # "obs" or "act" for (N, dim) columns, None for (N,)


COLUMNS: tuple[Column, ...] = (
    Column("observation", np.dtype("<f4"), "obs"),
    Column("action", np.dtype("<f4"), "act"),
    Column("next_observation", np.dtype("<f4"), "obs"),
    Column("reward", np.dtype("<f4")),
    Column("terminated", np.dtype("bool")),
    Column("truncated", np.dtype("bool")),
    Column("source", np.dtype("u1")),
    Column("robot_id", np.dtype("<u2")),
    Column("actor_session", np.dtype("<u8")),
    Column("seq", np.dtype("<u8")),
    Column("episode_id", np.dtype("<u8")),
    Column("step_index", np.dtype("<u4")),
    Column("stamp_ns", np.dtype("<i8")),
    Column("policy_version", np.dtype("<u8")),
    Column("safety_rules", np.dtype("<u4")),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}

#: Fields a caller may leave out (they default to 0); every other column is required.
OPTIONAL_FIELDS: dict[str, int] = {"stamp_ns": 0, "policy_version": 0, "safety_rules": 0}

_FLOAT_VECTORS = ("observation", "action", "next_observation")


def column_shape(col: Column, obs_dim: int, act_dim: int) -> tuple[int, ...]:
    """Per-row shape of ``col``: ``(obs_dim,)``, ``(act_dim,)`` or ``()``."""
    if col.vector == "obs":
        return (obs_dim,)
    if col.vector == "act":
        return (act_dim,)
    return ()


def schema_description(obs_dim: int, act_dim: int) -> dict[str, Any]:
    """The JSON-able column layout stored in the attributes (compared on reopen)."""
    return {
        c.name: {"dtype": c.dtype.str, "shape": list(column_shape(c, obs_dim, act_dim))}
        for c in COLUMNS
    }


def transition_dtype(obs_dim: int, act_dim: int) -> np.dtype:
    """A numpy structured dtype with one field per column (for ``append_batch``)."""
    return np.dtype([(c.name, c.dtype, column_shape(c, obs_dim, act_dim)) for c in COLUMNS])


def empty_columns(n: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Zero-filled column arrays for ``n`` rows."""
    return {c.name: np.zeros((n, *column_shape(c, obs_dim, act_dim)), c.dtype) for c in COLUMNS}


def columns_from_any(batch: Any) -> dict[str, Any]:
    """A column mapping from a mapping or a numpy structured array (fields = column names)."""
    if isinstance(batch, np.ndarray) and batch.dtype.names is not None:
        return {name: batch[name] for name in batch.dtype.names}
    if isinstance(batch, Mapping):
        return dict(batch)
    raise ValueError(
        f"a batch must be a mapping of column name -> array or a numpy structured array with "
        f"fields {', '.join(COLUMN_NAMES)}; got {type(batch).__name__}"
    )


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationResult:
    """Outcome of :func:`validate_columns` for a block of ``n`` rows.

    Attributes:
        columns: the block converted to the store's dtypes (rows that failed are garbage).
        keep: bool mask (n,), True for rows that passed every check.
        reasons: reason code per rejected row (n,), ``""`` for kept rows.
        examples: one human-readable message per reason code seen in this block.
        failed: per reason code, every row that failed that check (also rows whose first
            reason was another one) -- e.g. to know which rows have a valid dedup key.
    """

    columns: dict[str, np.ndarray]
    keep: np.ndarray
    reasons: np.ndarray
    examples: dict[str, str]
    failed: dict[str, np.ndarray]

    def counts(self) -> dict[str, int]:
        """Rejected rows per reason code."""
        out: dict[str, int] = {}
        if self.keep.all():
            return out
        codes, n = np.unique(self.reasons[~self.keep], return_counts=True)
        return {str(c): int(k) for c, k in zip(codes, n)}


class _Checker:
    """Accumulates per-row rejection reasons; the first failing check of a row wins."""

    def __init__(self, n: int, key_cols: dict[str, np.ndarray | None]) -> None:
        self.n = n
        self.keep = np.ones(n, bool)
        self.reasons = np.full(n, "", dtype=object)
        self.examples: dict[str, str] = {}
        self.failed: dict[str, np.ndarray] = {}
        self.key_cols = key_cols

    def _row_name(self, i: int) -> str:
        parts = []
        for name in ("robot_id", "actor_session", "seq"):
            col = self.key_cols.get(name)
            if col is not None and col.ndim == 1 and len(col) == self.n:
                parts.append(f"{name}={col[i]}")
        return f"row {i} ({', '.join(parts)})" if parts else f"row {i}"

    def fail(self, bad: np.ndarray, code: str, message) -> None:
        """Reject rows in ``bad`` (not already rejected) with ``code``; ``message(i)`` explains."""
        if bad.any():
            self.failed[code] = self.failed.get(code, np.zeros(self.n, bool)) | bad
        new = bad & self.keep
        if not new.any():
            return
        self.keep &= ~new
        self.reasons[new] = code
        if code not in self.examples:
            i = int(np.flatnonzero(new)[0])
            self.examples[code] = f"{self._row_name(i)}: {message(i)}"

    def fail_all(self, code: str, message: str) -> None:
        self.fail(np.ones(self.n, bool), code, lambda _i: message)


def _as_array(value: Any) -> np.ndarray | None:
    try:
        return np.asarray(value)
    except (TypeError, ValueError):
        return None


def check_column_names(cols: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for unknown or missing columns (a usage error, not bad data)."""
    unknown = sorted(set(cols) - set(COLUMN_NAMES))
    if unknown:
        raise ValueError(
            f"unknown column(s) {unknown}; the replay columns are {', '.join(COLUMN_NAMES)}"
        )
    missing = [n for n in COLUMN_NAMES if n not in cols and n not in OPTIONAL_FIELDS]
    if missing:
        raise ValueError(f"missing column(s) {missing} (only {sorted(OPTIONAL_FIELDS)} may be "
                         "left out; they default to 0)")


def validate_columns(
    cols: Mapping[str, Any],
    observation_spec: BoxSpec,
    action_spec: BoxSpec,
    *,
    check_bounds: bool = True,
    tolerance: float = 1e-6,
) -> ValidationResult:
    """Convert a block of rows to the store's dtypes and check every value, vectorised.

    Checks, in order (a row's first failing check is its reason): vector shapes
    (``<field>.shape``), dtypes that cannot hold the value (``<field>.dtype``: e.g. a float for
    ``seq``), integer ranges (``<field>.out_of_range``: e.g. ``robot_id`` outside uint16),
    booleans given as other numbers (``<field>.not_bool``), ``source`` outside 0/1/2
    (``source.unknown``), NaN/inf in ``observation``/``action``/``next_observation``/``reward``
    (``<field>.non_finite``) and, with ``check_bounds``, vector elements outside the spec's
    bounds by more than ``tolerance`` (``<field>.out_of_bounds``).

    Raises ``ValueError`` only for usage errors: unknown/missing columns, or columns whose
    lengths differ. Columns given in the store's dtype are used as they are (the result may
    share memory with the input); the checks that such a dtype makes moot are skipped.
    """
    check_column_names(cols)
    arrays: dict[str, np.ndarray | None] = {}
    lengths: dict[str, int] = {}
    for c in COLUMNS:
        if c.name not in cols:
            continue
        a = _as_array(cols[c.name])
        arrays[c.name] = a
        if a is not None and a.ndim >= 1:
            lengths[c.name] = a.shape[0]
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    if not lengths:
        raise ValueError("a batch needs at least one column with a row axis (axis 0)")
    n = next(iter(lengths.values()))
    dims = {"obs": observation_spec.dim, "act": action_spec.dim}
    specs = {"observation": observation_spec, "action": action_spec,
             "next_observation": observation_spec}
    chk = _Checker(n, {k: arrays.get(k) for k in ("robot_id", "actor_session", "seq")})
    out: dict[str, np.ndarray] = {}

    for c in COLUMNS:
        shape = (n, dims[c.vector]) if c.vector else (n,)
        if c.name not in cols:
            out[c.name] = np.full(shape, OPTIONAL_FIELDS[c.name], c.dtype)
            continue
        a = arrays[c.name]
        if a is None or a.shape != shape or a.dtype.kind not in "biuf":
            out[c.name] = np.zeros(shape, c.dtype)
            got = "a non-numeric value" if a is None or a.dtype.kind not in "biuf" else \
                f"shape {a.shape[1:] if a.ndim else a.shape}"
            want = f"({shape[1]},)" if c.vector else "a scalar per row"
            chk.fail_all(f"{c.name}.shape" if a is not None and a.dtype.kind in "biuf"
                         else f"{c.name}.dtype", f"{c.name}: expected {want}, got {got}")
            continue
        exact = a.dtype == c.dtype  # the usual case: nothing to convert, no range to check
        if c.dtype.kind == "f":
            if exact:
                dst = a
            else:
                dst = np.empty(shape, c.dtype)
                with np.errstate(over="ignore", invalid="ignore"):
                    dst[:] = a
            out[c.name] = dst
            if not np.isfinite(dst).all():
                finite = np.isfinite(dst)
                if finite.ndim == 2:
                    chk.fail(~finite.all(axis=1), f"{c.name}.non_finite",
                             lambda i, d=dst, f=finite, nm=c.name:
                             _vector_msg(nm, specs[nm], d[i], ~f[i], "is not finite"))
                else:
                    chk.fail(~finite, f"{c.name}.non_finite",
                             lambda i, nm=c.name, src=a: f"{nm} is not finite: {src[i]}")
            if check_bounds and c.vector:
                sp = specs[c.name]
                lo, hi = _widened(sp, tolerance)
                with np.errstate(invalid="ignore"):
                    if (dst < lo).any() or (dst > hi).any():
                        outside = (dst < lo) | (dst > hi)
                        chk.fail(outside.any(axis=1), f"{c.name}.out_of_bounds",
                                 lambda i, d=dst, o=outside, nm=c.name, sp=sp:
                                 _bounds_msg(nm, sp, d[i], o[i]))
        elif c.dtype.kind == "b":
            if exact:
                out[c.name] = a
                continue
            if a.dtype.kind == "f":
                out[c.name] = np.zeros(shape, c.dtype)
                chk.fail_all(f"{c.name}.dtype", f"{c.name}: expected bool, got {a.dtype}")
                continue
            bad = (a != 0) & (a != 1)
            chk.fail(bad, f"{c.name}.not_bool",
                     lambda i, nm=c.name, src=a: f"{nm} must be true/false (0/1), got {src[i]}")
            out[c.name] = a.astype(bool)
        else:  # integer columns
            if exact:
                dst = a
            elif a.dtype.kind == "f":
                out[c.name] = np.zeros(shape, c.dtype)
                chk.fail_all(f"{c.name}.dtype",
                             f"{c.name}: expected integers ({c.dtype.name}), got {a.dtype}")
                continue
            else:
                info = _iinfo(c.dtype)
                if a.dtype.kind == "b":
                    a = a.astype(np.uint8)
                bad = _out_of_int_range(a, info)
                chk.fail(bad, f"{c.name}.out_of_range",
                         lambda i, nm=c.name, src=a, inf=info:
                         f"{nm} = {src[i]} is outside [{inf.min}, {inf.max}] ({inf.dtype})")
                dst = np.zeros(shape, c.dtype)
                dst[~bad] = a[~bad]
            out[c.name] = dst
            if c.name == "source" and (dst > _MAX_SOURCE).any():
                chk.fail(dst > _MAX_SOURCE, "source.unknown",
                         lambda i, d=dst: f"source = {d[i]} is not one of 0 (policy), 1 (demo), "
                         "2 (intervention)")
    return ValidationResult(out, chk.keep, chk.reasons, chk.examples, chk.failed)


_MAX_SOURCE = int(max(Source))
_WIDENED: dict[tuple[int, float], tuple[BoxSpec, np.ndarray, np.ndarray]] = {}


def _widened(spec: BoxSpec, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """``(low - tolerance, high + tolerance)`` of a spec, cached (specs are immutable)."""
    hit = _WIDENED.get((id(spec), tolerance))
    if hit is None or hit[0] is not spec:
        hit = (spec, spec.low - tolerance, spec.high + tolerance)
        if len(_WIDENED) > 64:
            _WIDENED.clear()
        _WIDENED[(id(spec), tolerance)] = hit
    return hit[1], hit[2]
_IINFO: dict[np.dtype, np.iinfo] = {}


def _iinfo(dtype: np.dtype) -> np.iinfo:
    info = _IINFO.get(dtype)
    if info is None:
        info = _IINFO[dtype] = np.iinfo(dtype)
    return info


def _out_of_int_range(a: np.ndarray, info: np.iinfo) -> np.ndarray:
    """Elementwise ``a < info.min or a > info.max`` without overflow in the comparison."""
    src = _iinfo(a.dtype)
    if a.dtype.kind == "u":
        return a > info.max if src.max > info.max else np.zeros(a.shape, bool)
    # signed input
    bad = a < info.min if src.min < info.min else np.zeros(a.shape, bool)
    if src.max > info.max:
        bad |= a > info.max
    return bad


def _vector_msg(name: str, spec: BoxSpec, row: np.ndarray, bad: np.ndarray, what: str) -> str:
    j = int(np.flatnonzero(bad)[0])
    return f"{name}[{j}] ({spec.names[j]}) {what}: {row[j]}"


def _bounds_msg(name: str, spec: BoxSpec, row: np.ndarray, bad: np.ndarray) -> str:
    j = int(np.flatnonzero(bad)[0])
    return (f"{name}[{j}] ({spec.names[j]}) = {row[j]:.6g} is outside its bounds "
            f"[{spec.low[j]:.6g}, {spec.high[j]:.6g}]")
