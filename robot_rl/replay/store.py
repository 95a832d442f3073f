"""The durable replay store: a zarr v3 directory with one writer and any number of readers.

Layout (``runs/<name>/replay.zarr``; DESIGN §4)::

    replay.zarr/
      zarr.json                 group; attributes["robot_rl_replay"] = schema version, column
                                layout, observation/action spec (BoxSpec.to_dict), the
                                observation's named fields (ObservationSpec.to_dict), the
                                array list, chunk_rows, policy_action
      data/<column>/            one zarr array per Transition field, time on axis 0,
        zarr.json               shape (rows allocated, [dim]), chunks (chunk_rows, [dim]),
        c.<i>[.0]               raw little-endian bytes (no compression), "." chunk keys
      data/obs/<key>/           schema 2: the observation, one array per observation field
      data/next_obs/<key>/      (key "observation" for a store created without named fields)

Schema 1 (before issue 17) kept the observation as one flat array, ``data/observation`` (and
``data/next_observation``); such a store opens read-only (:class:`ReplayReader`), and the
writer refuses it naming ``robot-rl replay migrate`` (:mod:`robot_rl.replay.migrate`). Readers
and writers assemble the flat ``observation`` column from the field arrays, so everything above
the store (mirror, sampler, learner) sees the same columns as before.
      commit/zarr.json          the commit marker: a zarr group whose attributes say how many
                                rows are committed ({"length": N, "commit": k, "sessions": ...})
    replay.zarr.lock            the single-writer lock (beside the store, see lock.py)

**Readers see committed rows only.** Array shapes run ahead of the commit (they grow in whole
chunks, geometrically), and chunks past the commit may hold rows of a flush that never finished;
every reader slices ``[0, commit.length)``. The commit marker lives *inside* the zarr hierarchy,
so a reader through any zarr/fsspec store reads it as ``group["commit"].attrs``.

**Commit protocol** (:meth:`ReplayWriter.flush`):

1. rows accepted since the last commit sit in an in-memory buffer that also holds the committed
   rows of the tail chunk (the chunk the commit point falls into);
2. every chunk from the tail chunk to the end of the buffer is written whole -- the tail chunk
   is *rewritten*, committed rows unchanged, new rows after them -- each file through
   :class:`~robot_rl.replay.durable.DurableLocalStore`: temp file, fsync, ``os.replace``; so a
   crash leaves each chunk either old or new, and both hold the committed rows bit for bit;
3. the directories that got new entries are fsynced;
4. the marker is replaced the same way (temp, fsync, rename, directory fsync). Only now are the
   new rows committed: a crash anywhere before this point reopens at the previous commit, and
   the rows written past it are overwritten by the next writer.

**Chunk size** (``ReplayConfig.chunk_rows``, default 4096 rows; fixed when the store is created):
writes go through the store as whole chunks only, because a small append costs as much as a whole
chunk (measured here 10-60x slower per row through zarr; one file create + rename per chunk and
column, whatever its size). Bigger chunks mean fewer files and faster loads (a 1M-row store is
245 files per column at 4096), smaller ones mean less rewriting: the tail chunk is rewritten at
every flush, so a flush costs up to one chunk per column (4096 rows x 15 columns ~ 1 MB for a
20-d observation) even if it adds one row -- 2 MB/s at the default 0.5 s flush interval, which a
disk sustains with margin. 4096 rows is also ~3.4 min of one robot at 20 Hz.

**Exactly-once ingest**: rows are deduplicated on (robot_id, actor_session, seq)
(:mod:`robot_rl.replay.dedup`); :meth:`ReplayWriter.acks` reports per session the highest seq
up to which everything is committed, for ``ReplayAck``.

Validation (:mod:`robot_rl.replay.schema`): bad rows are refused, counted by reason
(:attr:`ReplayWriter.stats`), and never reach the buffer.
"""
from __future__ import annotations

import asyncio
import functools
import json
import operator
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import zarr
from zarr.codecs import BytesCodec

from robot_rl.config import ReplayConfig
from robot_rl.replay import durable
from robot_rl.replay.dedup import DedupIndex
from robot_rl.replay.durable import DurableLocalStore
from robot_rl.replay.lock import WriterLock
from robot_rl.replay.schema import (
    ATTRS_KEY,
    COLUMN_BY_NAME,
    COLUMN_NAMES,
    COLUMNS,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    check_column_names,
    column_shape,
    columns_from_any,
    schema_description,
    validate_columns,
)
from robot_rl.specs import BoxSpec, ObservationSpec

MARKER_KEY = "commit/zarr.json"
DATA_GROUP = "data"
MARKER_FORMAT = "robot_rl.replay.commit/1"


class StoreError(ValueError):
    """A store that cannot be used as asked (not a replay store, other spec, damaged)."""


def lock_path(store_path: Path | str) -> Path:
    """Where the writer lock of a store lives: ``<store>.lock`` beside the store directory.

    Beside, not inside: a file inside the zarr hierarchy that is not zarr makes zarr warn
    whenever someone lists the group, and a copy of the store must not carry a lock.
    """
    p = Path(store_path)
    return p.parent / (p.name + ".lock")


# --------------------------------------------------------------------------- commit marker


@dataclass(frozen=True)
class CommitInfo:
    """The commit marker: ``length`` rows ``[0, length)`` are committed.

    Attributes:
        length: committed rows.
        commit: how many commits the store has seen (0: freshly created).
        time_unix: wall time of the commit.
        sessions: ``{(robot_id, actor_session): watermark}`` at that commit (see dedup.py).
    """

    length: int
    commit: int
    time_unix: float
    sessions: dict[tuple[int, int], int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {
                "format": MARKER_FORMAT,
                "length": self.length,
                "commit": self.commit,
                "time_unix": self.time_unix,
                "sessions": [[r, s, w] for (r, s), w in sorted(self.sessions.items())],
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> CommitInfo:
        try:
            attrs = json.loads(raw)["attributes"]
            if attrs.get("format") != MARKER_FORMAT:
                raise ValueError(f"format {attrs.get('format')!r}, expected {MARKER_FORMAT!r}")
            length = int(attrs["length"])
            if length < 0:
                raise ValueError(f"negative length {length}")
            return cls(length, int(attrs["commit"]), float(attrs["time_unix"]),
                       {(int(r), int(s)): int(w) for r, s, w in attrs.get("sessions", [])})
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"{where}: the commit marker is unreadable ({e})") from None


# --------------------------------------------------------------------------- spec checks


def describe_spec_difference(stored: BoxSpec, given: BoxSpec) -> str | None:
    """What differs between two specs, in words, or ``None`` if they are equal."""
    if stored == given:
        return None
    if stored.names != given.names:
        if stored.dim != given.dim:
            return (f"{stored.name} spec: the store has {stored.dim} elements, the config "
                    f"{given.dim} (store: {', '.join(stored.names)}; config: {', '.join(given.names)})")
        j = next(i for i, (a, b) in enumerate(zip(stored.names, given.names)) if a != b)
        return (f"{stored.name} spec: element {j} is {stored.names[j]!r} in the store but "
                f"{given.names[j]!r} in the config")
    for what, a, b in (("low", stored.low, given.low), ("high", stored.high, given.high)):
        if not np.array_equal(a, b):
            j = int(np.flatnonzero(a != b)[0])
            return (f"{stored.name} spec: bound {what}[{j}] ({stored.names[j]}) is {a[j]:.6g} in "
                    f"the store but {b[j]:.6g} in the config")
    return f"{stored.name} spec: name {stored.name!r} in the store, {given.name!r} in the config"


@dataclass(frozen=True)
class StoreLayout:
    """What a store's attributes say about it."""

    schema_version: int
    observation_spec: BoxSpec
    action_spec: BoxSpec
    chunk_rows: int
    created_unix: float
    #: what a policy row's action holds (``replay.policy_action``); stores written before the
    #: attribute existed hold the applied command
    policy_action: str = "applied"
    #: the observation's named fields (:class:`~robot_rl.specs.ObservationSpec`: keys, roles,
    #: identity hash); None in stores written before fields were recorded (their flat
    #: observation spec is all they say)
    observation_fields: ObservationSpec | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str) -> StoreLayout:
        d = attrs.get(ATTRS_KEY)
        if not isinstance(d, Mapping):
            raise StoreError(f"{where} is a zarr group but not a robot_rl replay store "
                             f"(no {ATTRS_KEY!r} attributes)")
        try:
            version = int(d["schema_version"])
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{where}: replay attributes have no schema_version") from None
        if version not in READABLE_SCHEMA_VERSIONS:
            raise StoreError(f"{where}: schema version {version}, this robot_rl reads versions "
                             f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))} only")
        try:
            obs = BoxSpec.from_dict(d["observation_spec"])
            act = BoxSpec.from_dict(d["action_spec"])
        except (KeyError, ValueError) as e:
            raise StoreError(f"{where}: observation/action spec missing or invalid ({e})") from None
        expected = schema_description(obs.dim, act.dim)
        if d.get("columns") != expected:
            got = d.get("columns") or {}
            diff = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
            raise StoreError(f"{where}: column layout differs from schema version {version} "
                             f"in {diff}")
        pa = d.get("policy_action", "applied")
        if pa not in ("applied", "proposed"):
            raise StoreError(f"{where}: attribute policy_action is {pa!r}, expected 'applied' or "
                             "'proposed'")
        fields = None
        if d.get("observation_fields") is not None:
            try:
                fields = ObservationSpec.from_dict(d["observation_fields"])
            except ValueError as e:
                raise StoreError(f"{where}: attribute observation_fields is invalid ({e})") from None
            why = describe_spec_difference(obs, fields.flat)
            if why:
                raise StoreError(f"{where}: attribute observation_fields disagrees with "
                                 f"observation_spec ({why})")
        return cls(version, obs, act, int(d["chunk_rows"]), float(d.get("created_unix", 0.0)),
                   pa, fields)

    def to_attrs(self) -> dict[str, Any]:
        return {
            ATTRS_KEY: {
                "schema_version": self.schema_version,
                "columns": schema_description(self.observation_spec.dim, self.action_spec.dim),
                "observation_spec": self.observation_spec.to_dict(),
                "action_spec": self.action_spec.to_dict(),
                "chunk_rows": self.chunk_rows,
                "created_unix": self.created_unix,
                "policy_action": self.policy_action,
                "observation_fields": (None if self.observation_fields is None
                                       else self.observation_fields.to_dict()),
                "arrays": [f"{DATA_GROUP}/{p.path}" for p in self.parts],
                "writer": "robot_rl.replay",
            }
        }

    def check_matches(self, observation_spec: BoxSpec | ObservationSpec, action_spec: BoxSpec,
                      where: str) -> None:
        """Refuse (``StoreError``) a store whose specs differ from the given ones.

        An :class:`~robot_rl.specs.ObservationSpec` is compared field by field with the store's
        recorded fields (the message names the field); a store without recorded fields (written
        before they were) is compared by its flat observation spec.
        """
        problems = []
        if isinstance(observation_spec, ObservationSpec):
            if self.observation_fields is not None:
                problems.append(self.observation_fields.difference(
                    observation_spec, mine="the store", theirs="the config"))
            observation_spec = observation_spec.flat
        problems += [describe_spec_difference(self.observation_spec, observation_spec),
                     describe_spec_difference(self.action_spec, action_spec)]
        problems = [p for p in problems if p]
        if problems:
            raise StoreError(f"{where} was created for another observation/action spec; refusing "
                             f"to mix rows: {'; '.join(problems)}. Use a new store (run name) "
                             "for the new spec.")

    def shape(self, name: str) -> tuple[int, ...]:
        return column_shape(COLUMN_BY_NAME[name], self.observation_spec.dim, self.action_spec.dim)

    @functools.cached_property
    def parts(self) -> tuple[ArrayPart, ...]:
        """The arrays under ``data/`` and the column (elements) each holds.

        Schema 2: every column is one array, except the observations: one array per observation
        field, ``obs/<key>`` and ``next_obs/<key>`` (``obs/observation`` for a store created
        without named fields). Schema 1: one array per column.
        """
        out = []
        for c in COLUMNS:
            group = OBS_ARRAY_GROUPS.get(c.name)
            if group is None or self.schema_version == 1:
                out.append(ArrayPart(c.name, c.name, None, self.shape(c.name)))
            elif self.observation_fields is None:
                out.append(ArrayPart(f"{group}/observation", c.name, None, self.shape(c.name)))
            else:
                for key, sl in self.observation_fields.slices.items():
                    out.append(ArrayPart(f"{group}/{key}", c.name, sl, (sl.stop - sl.start,)))
        return tuple(out)

    def parts_of(self, columns: tuple[str, ...] | list[str]) -> list[ArrayPart]:
        want = set(columns)
        return [p for p in self.parts if p.column in want]


class ArrayPart(NamedTuple):
    """One array of the store: ``data/<path>``, holding ``column`` (its elements ``cols``, or
    all of them) with rows of ``shape``."""

    path: str
    column: str
    cols: slice | None
    shape: tuple[int, ...]


#: Schema 2: the groups under ``data/`` that hold one array per observation field.
OBS_ARRAY_GROUPS = {"observation": "obs", "next_observation": "next_obs"}


def _plain_bytes_codec(arr: zarr.Array) -> bool:
    """True if the array's chunks are raw little-endian bytes (what the writer produces)."""
    codecs = arr.metadata.codecs
    return (len(codecs) == 1 and isinstance(codecs[0], BytesCodec)
            and (codecs[0].endian is None or codecs[0].endian.value == "little")
            and getattr(arr.metadata, "chunk_grid", None) is not None)


# --------------------------------------------------------------------------- reader


class ReplayReader:
    """Read-only access to a replay store through any zarr store (local path or fsspec URL).

    ``commit()`` re-reads the marker; ``read(start, stop)`` returns committed rows as numpy
    columns. Rows past the commit are never returned.

    Args:
        path: a directory, or a URL zarr/fsspec can open (``file://``, ``s3://``, ...).
        storage_options: passed to fsspec for URLs.
    """

    def __init__(self, path: str | Path, *, storage_options: dict[str, Any] | None = None) -> None:
        self.path = str(path)
        if "://" in self.path:
            from zarr.storage import FsspecStore

            self.store = FsspecStore.from_url(self.path, read_only=True,
                                              storage_options=storage_options)
            self._local: Path | None = None
        else:
            p = Path(self.path)
            if not (p / "zarr.json").is_file():
                raise StoreError(f"{p} is not a replay store (no zarr.json)")
            self.store = zarr.storage.LocalStore(p, read_only=True)
            self._local = p
        try:
            self.group = zarr.open_group(self.store, mode="r")
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise StoreError(f"{self.path} is not a zarr group: {e}") from None
        self.layout = StoreLayout.from_attrs(self.group.attrs.asdict(), self.path)
        self.observation_spec = self.layout.observation_spec
        #: the observation's named fields, or None for a store written before they were recorded
        self.observation_fields = self.layout.observation_fields
        self.action_spec = self.layout.action_spec
        self.chunk_rows = self.layout.chunk_rows
        self._arrays: dict[str, zarr.Array] = {}
        self._open_arrays()

    def _open_arrays(self) -> None:
        try:
            data = self.group[DATA_GROUP]
            self._arrays = {p.path: data[p.path] for p in self.layout.parts}
        except KeyError as e:
            raise StoreError(f"{self.path}: column array missing ({e})") from None
        self._plain = {n: _plain_bytes_codec(a) for n, a in self._arrays.items()}

    def _get(self, key: str) -> bytes | None:
        if self._local is not None:
            try:
                return (self._local / key).read_bytes()
            except FileNotFoundError:
                return None
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        buf = sync(self.store.get(key, prototype=default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()

    def commit(self) -> CommitInfo:
        """The current commit marker (re-read on every call)."""
        raw = self._get(MARKER_KEY)
        if raw is None:
            raise StoreError(f"{self.path}: no commit marker ({MARKER_KEY}); the store was never "
                             "completely created")
        return CommitInfo.from_json(raw, self.path)

    def __len__(self) -> int:
        return self.commit().length

    def allocated_rows(self) -> dict[str, int]:
        """Rows allocated per column (re-read from the arrays' metadata)."""
        self._open_arrays()
        out: dict[str, int] = {}
        for p in self.layout.parts:  # a column split into arrays: the shortest of them
            n = int(self._arrays[p.path].shape[0])
            out[p.column] = min(out.get(p.column, n), n)
        return out

    def read(self, start: int, stop: int, columns: tuple[str, ...] | None = None,
             out: Mapping[str, np.ndarray] | None = None, *, length: int | None = None
             ) -> dict[str, np.ndarray]:
        """Committed rows ``[start, stop)`` as numpy arrays (or into ``out[name][: stop-start]``).

        ``length`` is the committed length the caller read from :meth:`commit`; reading past it
        is refused (``ValueError``), since those rows may be half-written.
        """
        names = columns or COLUMN_NAMES
        if length is None:
            length = self.commit().length
        if not 0 <= start <= stop <= length:
            raise ValueError(f"rows [{start}, {stop}) are not within the committed [0, {length})")
        n = stop - start
        res: dict[str, np.ndarray] = {}
        for name in names:
            shape = self.layout.shape(name)
            dst = out[name][:n] if out is not None else np.empty((n, *shape),
                                                                 COLUMN_BY_NAME[name].dtype)
            res[name] = dst
        if n == 0:
            return res
        parts = self.layout.parts_of(names)
        if any(self._arrays[p.path].shape[0] < stop for p in parts):
            self._open_arrays()  # the writer grew the arrays since we opened them
        R = self.chunk_rows
        c0, c1 = start // R, (stop - 1) // R
        keys: list[tuple[ArrayPart, np.ndarray, int, str]] = []
        for p in parts:
            arr = self._arrays[p.path]
            dst = res[p.column] if p.cols is None else res[p.column][:, p.cols]  # a view
            if not self._plain[p.path] or arr.chunks[0] != R:
                dst[...] = arr[start:stop]  # not our layout (re-encoded copy): zarr decodes
                continue
            for c in range(c0, c1 + 1):
                idx = (c,) + (0,) * (arr.ndim - 1)
                keys.append((p, dst, c,
                             f"{DATA_GROUP}/{p.path}/{arr.metadata.encode_chunk_key(idx)}"))
        blobs = self._get_many([k for *_, k in keys])
        for (p, dst, c, key), raw in zip(keys, blobs):
            col = COLUMN_BY_NAME[p.column]
            lo, hi = max(start, c * R), min(stop, (c + 1) * R)
            if raw is None:
                dst[lo - start:hi - start] = 0  # an unwritten chunk reads as fill (0)
                continue
            chunk = np.frombuffer(raw, dtype=col.dtype)
            size = int(np.prod(p.shape, dtype=np.int64))
            if chunk.size != R * size:
                raise StoreError(f"{self.path}: chunk {key} has {len(raw)} bytes, expected "
                                 f"{R * col.dtype.itemsize * size}")
            chunk = chunk.reshape((R, *p.shape))
            dst[lo - start:hi - start] = chunk[lo - c * R:hi - c * R]
        return res

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        if self._local is not None:
            return [self._get(k) for k in keys]
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        proto = default_buffer_prototype()

        async def fetch() -> list[Any]:
            return await asyncio.gather(*[self.store.get(k, prototype=proto) for k in keys])

        return [None if b is None else b.to_bytes() for b in sync(fetch())]


# --------------------------------------------------------------------------- writer


class AppendResult(NamedTuple):
    """What one append call did with its rows."""

    accepted: int
    duplicates: int
    rejected: dict[str, int]


@dataclass
class WriterStats:
    """Counters of a writer since it was opened.

    Attributes:
        accepted: rows that passed validation and deduplication (buffered or committed); a
            single row counts once its values are checked (at the latest at the next flush).
        duplicates: rows dropped because their (robot_id, actor_session, seq) was handled.
        rejected: rows refused, by reason code (``observation.non_finite``, ``source.unknown``...).
        examples: one message per reason code, e.g. ``row 3 (robot_id=0, ...): observation[2] (q3)
            is not finite: nan``.
        recent: the last 100 rejections as ``(robot_id, actor_session, seq, reason)``.
        commits: commits written by this writer.
        committed_rows: rows made durable by this writer.
    """

    accepted: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=100))
    commits: int = 0
    committed_rows: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


_KEY_LIMITS = {"robot_id": 0xFFFF, "actor_session": 2**64 - 1, "seq": 2**64 - 1}
_INT_FIELDS = ("source", "episode_id", "step_index", "stamp_ns", "policy_version", "safety_rules")


class ReplayWriter:
    """The single writer of a replay store (see the module docstring for the protocol).

    Typical use (the replay node)::

        w = ReplayWriter(path, observation_spec, action_spec, config.replay)
        on each Transition msg:   w.append(**fields_of(msg))
        on a timer:               w.maybe_flush()
                                  if w.stats.commits changed: one ReplayAck per w.acks() item
        on shutdown:              w.close()       # flushes

    (A commit also happens inside ``append`` when ``max_uncommitted_rows`` rows wait, hence
    "commits changed" rather than the return value of ``maybe_flush``.)

    Not thread-safe: call it from one thread (in a ROS node, one mutually exclusive callback
    group for the subscription and the timer).

    Opening takes the writer lock (:class:`~robot_rl.replay.lock.WriterLock`), creates the
    store if the directory is missing or empty, or resumes it: the attributes must match the
    given specs (else :class:`StoreError` saying what differs), temp files of a killed writer
    are swept, the dedup state is rebuilt from the committed columns and the tail chunk's
    committed rows are loaded so the next flush can rewrite that chunk. The store's
    ``policy_action`` must match ``config.policy_action`` too, unless ``adopt_policy_action``
    (a writer of demo rows only, whose actions are the same either way): it then keeps the
    store's.

    Args:
        path: the store directory (local POSIX filesystem).
        observation_spec, action_spec: what rows must match (stored in the attributes).
        config: chunk size, flush interval, fsync, bounds checking, max buffered rows.
        clock: monotonic clock for :meth:`maybe_flush` (tests inject a fake one).
    """

    def __init__(self, path: str | Path, observation_spec: BoxSpec | ObservationSpec,
                 action_spec: BoxSpec, config: ReplayConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 adopt_policy_action: bool = False) -> None:
        self.path = Path(path)
        self._adopt_policy_action = adopt_policy_action
        self.config = config or ReplayConfig()
        self.observation_fields = (observation_spec if isinstance(observation_spec,
                                                                   ObservationSpec) else None)
        self.observation_spec = (observation_spec.flat if self.observation_fields is not None
                                 else observation_spec)
        self.action_spec = action_spec
        self._clock = clock
        self.stats = WriterStats()
        self._broken: str | None = None
        self._lock = WriterLock(lock_path(self.path), what=f"replay store {self.path}")
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ open / create

    def _open(self) -> None:
        cfg = self.config
        self.store = DurableLocalStore(self.path, fsync=cfg.fsync)
        root_meta = self.path / "zarr.json"
        created = False
        if not root_meta.is_file():
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path} exists and is not empty, but is not a zarr store; "
                                 "refusing to write a replay store into it")
            self._create()
            created = True
        self.swept = durable.sweep_temp_files(self.path)
        try:
            group = zarr.open_group(self.store, mode="r+")
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise StoreError(f"{self.path}: not a readable zarr group ({e})") from None
        attrs = group.attrs.asdict()
        layout = StoreLayout.from_attrs(attrs, str(self.path))
        if not created and not (self.path / MARKER_KEY).is_file():
            # Creation was interrupted before the first (empty) commit: nothing was ever
            # committed, so finishing the creation loses nothing.
            self._create(existing=True)
            group = zarr.open_group(self.store, mode="r+")
            layout = StoreLayout.from_attrs(group.attrs.asdict(), str(self.path))
        if layout.schema_version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by an earlier robot_rl (replay schema version "
                f"{layout.schema_version}: the observation in one array); it opens read-only "
                "(robot-rl replay info / verify, a learner reading it), but nothing is appended "
                f"to it. Convert it with `robot-rl replay migrate {self.path}` (the original is "
                "kept beside it), or use a new store (run name)")
        layout.check_matches(self.observation_fields or self.observation_spec, self.action_spec,
                             str(self.path))
        if layout.policy_action != cfg.policy_action and not self._adopt_policy_action:
            raise StoreError(
                f"{self.path} stores the {layout.policy_action} action of policy rows "
                f"(replay.policy_action: {layout.policy_action}) but this run asks for "
                f"{cfg.policy_action}; refusing to mix the two in one store. Set "
                f"replay.policy_action: {layout.policy_action}, or use a new store (run name)")
        self.layout = layout
        self.R = layout.chunk_rows
        self._obs_dim, self._act_dim = self.observation_spec.dim, self.action_spec.dim
        data = group[DATA_GROUP]
        try:
            self._arrays = {p.path: data[p.path] for p in layout.parts}
        except KeyError as e:
            raise StoreError(f"{self.path}: column array missing ({e})") from None
        for name, arr in self._arrays.items():
            if not _plain_bytes_codec(arr) or arr.chunks[0] != self.R:
                raise StoreError(f"{self.path}: column {name!r} is not stored as raw "
                                 f"{self.R}-row chunks; it was re-encoded and cannot be appended to")
        marker = CommitInfo.from_json((self.path / MARKER_KEY).read_bytes(), str(self.path))
        # Arrays grow before chunks are written, so a crash can leave them with different
        # shapes; bring them to the largest (all >= the committed length by construction).
        alloc = max(int(a.shape[0]) for a in self._arrays.values())
        if alloc < marker.length:
            raise StoreError(f"{self.path}: commit marker says {marker.length} rows but the arrays "
                             f"hold {alloc}; the store is damaged (run `robot-rl replay verify`)")
        self._alloc = alloc
        self._resize_arrays(alloc)
        self._committed = marker.length
        self._commit_no = marker.commit
        # dedup state from the committed key columns (+ watermarks kept in the marker)
        reader = _LocalChunkReader(self.path, self._arrays, self.R, layout)
        keys = reader.read(0, marker.length, ("robot_id", "actor_session", "seq"))
        self._dedup = DedupIndex.rebuild(keys["robot_id"], keys["actor_session"], keys["seq"],
                                         marker.sessions)
        self._acked = self._dedup.watermarks()
        # buffer: committed rows of the tail chunk + room for new rows
        self._buf_start = (marker.length // self.R) * self.R
        self._buf_cap = 0
        self._buf: dict[str, np.ndarray] = {}
        self._reserve(max(4 * self.R, self.R + cfg.max_uncommitted_rows))
        self._buf_len = marker.length - self._buf_start
        if self._buf_len:
            reader.read(self._buf_start, marker.length, COLUMN_NAMES, out=self._buf)
        self._staged: list[tuple] = []  # single rows waiting for vectorised validation
        self._last_flush = self._clock()
        self._dirty_acks = False
        self.recovered_lock_from = self._lock.recovered_from

    def _create(self, existing: bool = False) -> None:
        layout = StoreLayout(SCHEMA_VERSION, self.observation_spec, self.action_spec,
                             int(self.config.chunk_rows), time.time(), self.config.policy_action,
                             self.observation_fields)
        group = zarr.create_group(store=self.store, attributes=layout.to_attrs(), overwrite=existing)
        data = group.create_group(DATA_GROUP, overwrite=existing)
        subgroups = {g: data.create_group(g, overwrite=existing) for g in OBS_ARRAY_GROUPS.values()}
        for p in layout.parts:
            c = COLUMN_BY_NAME[p.column]
            parent, _, name = p.path.rpartition("/")
            (subgroups[parent] if parent else data).create_array(
                name, shape=(0, *p.shape), chunks=(layout.chunk_rows, *p.shape), dtype=c.dtype,
                fill_value=False if c.dtype.kind == "b" else 0, compressors=None, filters=None,
                chunk_key_encoding={"name": "default", "separator": "."},
                config={"write_empty_chunks": True}, overwrite=existing,
            )
        self.store.sync_dirs()
        # The empty first commit marks the creation complete.
        self._write_marker(CommitInfo(0, 0, time.time(), {}))

    def _resize_arrays(self, rows: int) -> None:
        """Set every column array's length to ``rows`` (metadata only: no chunk is touched)."""
        from zarr.core.sync import sync

        todo = [a for a in self._arrays.values() if a.shape[0] != rows]
        if todo:
            async def resize_all() -> None:  # one event-loop round trip for all columns
                await asyncio.gather(*[a._async_array.resize((rows, *a.shape[1:])) for a in todo])

            sync(resize_all())  # AsyncArray.resize updates the arrays' metadata in place
        self._alloc = rows

    # ------------------------------------------------------------------ buffer

    def _reserve(self, rows_from_start: int) -> None:
        """Make the buffer hold at least ``rows_from_start`` rows (rounded up to whole chunks)."""
        need = -(-rows_from_start // self.R) * self.R
        if need <= self._buf_cap:
            return
        cap = max(need, int(self._buf_cap * 1.5))
        cap = -(-cap // self.R) * self.R
        for c in COLUMNS:
            shape = column_shape(c, self._obs_dim, self._act_dim)
            new = np.zeros((cap, *shape), c.dtype)
            if c.name in self._buf:
                new[: self._buf_cap] = self._buf[c.name]
            self._buf[c.name] = new
        self._buf_cap = cap

    @property
    def committed_length(self) -> int:
        """Rows committed (visible to readers)."""
        return self._committed

    @property
    def pending_rows(self) -> int:
        """Rows accepted (or staged for validation) but not yet committed."""
        return self._buf_start + self._buf_len - self._committed + len(self._staged)

    # ------------------------------------------------------------------ append paths

    def _check(self) -> None:
        if self._broken is not None:
            raise RuntimeError(f"replay writer of {self.path} is unusable after an earlier error "
                               f"({self._broken}); close it and open the store again")

    def _reject(self, code: str, message: str, key: tuple = (None, None, None)) -> None:
        self.stats.rejected[code] += 1
        self.stats.examples.setdefault(code, message)
        self.stats.recent.append((*key, code))

    def append(self, *, observation: Any, action: Any, next_observation: Any, reward: Any,
               terminated: Any, truncated: Any, source: Any, robot_id: Any, actor_session: Any,
               seq: Any, episode_id: Any, step_index: Any, stamp_ns: Any = 0,
               policy_version: Any = 0, safety_rules: Any = 0) -> bool:
        """Append one transition; True if accepted, False if a duplicate or refused.

        The fast path for one message at a time: the key and the scalar types are checked here,
        the row is staged, and its values (vector shapes, finiteness, bounds, integer ranges)
        are checked vectorised with the other staged rows when they move to the write buffer
        (at the next flush, or every 4096 rows). A row refused then is counted in :attr:`stats`
        like any other, and its key counts as handled (re-sending it is a duplicate).
        """
        if self._broken is not None:
            self._check()
        index = operator.index
        try:
            r, s, q = index(robot_id), index(actor_session), index(seq)
        except TypeError:
            self._reject_key({"robot_id": robot_id, "actor_session": actor_session, "seq": seq})
            return False
        if not (0 <= r <= 0xFFFF and 0 <= s <= _U64 and 0 <= q <= _U64):
            self._reject_key({"robot_id": r, "actor_session": s, "seq": q})
            return False
        try:
            row = (observation, action, next_observation, float(reward), terminated, truncated,
                   index(source), r, s, q, index(episode_id), index(step_index), index(stamp_ns),
                   index(policy_version), index(safety_rules))
        except (TypeError, ValueError):
            return self._refuse_scalars((r, s, q), reward, source, episode_id, step_index,
                                        stamp_ns, policy_version, safety_rules)
        if terminated.__class__ is not bool or truncated.__class__ is not bool:
            flags = _as_flags(terminated, truncated)
            if isinstance(flags, str):
                return self._reject_row((r, s, q), f"{flags}.not_bool",
                                        f"{flags} must be true/false (0/1), got "
                                        f"{terminated if flags == 'terminated' else truncated!r}")
            row = row[:4] + flags + row[6:]
        # dedup (DedupIndex.check_and_add, inlined: this runs for every message)
        st = self._dedup.sessions.get((r, s))
        if st is None:
            st = self._dedup.state(r, s)
        if q <= st.wm or q in st.above:
            self.stats.duplicates += 1
            return False
        st.add(q)
        self._staged.append(row)
        if len(self._staged) >= 4096:
            self._drain_staged()
        if self._buf_start + self._buf_len - self._committed + len(self._staged) \
                >= self.config.max_uncommitted_rows:
            self.flush()
        return True

    def _refuse_scalars(self, key: tuple, reward: Any, *ints: Any) -> bool:
        """Find which scalar of a row is not a number and refuse the row for it."""
        try:
            float(reward)
        except (TypeError, ValueError):
            return self._reject_row(key, "reward.dtype", f"reward: expected a number, got {reward!r}")
        for name, v in zip(_INT_FIELDS, ints):
            if not hasattr(v, "__index__"):
                return self._reject_row(key, f"{name}.dtype",
                                        f"{name}: expected an integer, got {v!r}")
        return self._reject_row(key, "row.dtype", "a scalar field is not a number")

    def _reject_key(self, key: dict[str, Any]) -> None:
        """Refuse a row whose dedup key itself is invalid (it cannot be marked handled)."""
        for name, v in key.items():
            if not hasattr(v, "__index__"):
                self._reject(f"{name}.dtype", f"{name}: expected an integer, got {v!r}")
                return
            if not 0 <= operator.index(v) <= _KEY_LIMITS[name]:
                self._reject(f"{name}.out_of_range",
                             f"{name} = {v} is outside [0, {_KEY_LIMITS[name]}]")
                return

    def _reject_row(self, key: tuple, code: str, message: str) -> bool:
        """Refuse a row whose key is valid: the key counts as handled (unless a duplicate)."""
        if not self._dedup.check_and_add(*key):
            self.stats.duplicates += 1
            return False
        self._reject(code, f"row (robot_id={key[0]}, actor_session={key[1]}, seq={key[2]}): "
                     f"{message}", key)
        return False

    def _drain_staged(self) -> None:
        """Validate the staged single rows (vectorised) and move the good ones to the buffer."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        st = dict(zip(COLUMN_NAMES, zip(*staged)))
        cols: dict[str, Any] = {}
        pre_bad: list[tuple[np.ndarray, str, Callable[[int], str]]] = []
        for name in COLUMN_NAMES:
            if name in ("observation", "action", "next_observation"):
                dim = self._act_dim if name == "action" else self._obs_dim
                cols[name], bad = _stack_rows(st[name], dim)
                pre_bad.append((bad, f"{name}.shape", lambda i, nm=name, d=dim, raw=st[name]:
                                f"{nm}: expected shape ({d},), got {np.shape(raw[i])}"))
            else:
                cols[name], bad = _scalar_column(st[name], COLUMN_BY_NAME[name].dtype)
                info = np.iinfo(COLUMN_BY_NAME[name].dtype) if bad.any() else None
                pre_bad.append((bad, f"{name}.out_of_range", lambda i, nm=name, raw=st[name], inf=info:
                                f"{nm} = {raw[i]} is outside [{inf.min}, {inf.max}]"))
        res = validate_columns(cols, self.observation_spec, self.action_spec,
                               check_bounds=self.config.check_bounds)
        for bad, code, message in pre_bad:
            if bad.any():
                # rows that could not even be converted: that is their reason
                res.keep &= ~bad
                res.reasons[bad] = code
                i = int(np.flatnonzero(bad)[0])
                res.examples.setdefault(
                    code, f"row {i} (robot_id={cols['robot_id'][i]}, actor_session="
                    f"{cols['actor_session'][i]}, seq={cols['seq'][i]}): {message(i)}")
        self._count_rejections(res, res.columns)
        self._push(res.columns, res.keep)

    def _count_rejections(self, res, cols: Mapping[str, np.ndarray], mask=None) -> None:
        bad = ~res.keep if mask is None else (~res.keep & mask)
        if not bad.any():
            return
        for i in np.flatnonzero(bad):
            code = str(res.reasons[i])
            self.stats.rejected[code] += 1
            self.stats.recent.append((int(cols["robot_id"][i]), int(cols["actor_session"][i]),
                                      int(cols["seq"][i]), code))
        for code, msg in res.examples.items():
            self.stats.examples.setdefault(code, msg)

    def _push(self, cols: Mapping[str, np.ndarray], mask: np.ndarray, k: int | None = None) -> int:
        """Copy the rows of ``cols`` selected by ``mask`` (``k`` of them, if known) to the buffer."""
        if k is None:
            k = int(mask.sum())
        if k == 0:
            return 0
        if self._buf_len + k > self._buf_cap:
            self._reserve(self._buf_len + k)
        lo, hi = self._buf_len, self._buf_len + k
        every = k == len(mask)
        for name in COLUMN_NAMES:
            src = cols[name]
            self._buf[name][lo:hi] = src if every else src[mask]
        self._buf_len = hi
        self.stats.accepted += k
        return k

    def _ingest(self, batch: Any, *, atomic: bool) -> AppendResult:
        cols = columns_from_any(batch)
        res = validate_columns(cols, self.observation_spec, self.action_spec,
                               check_bounds=self.config.check_bounds)
        v = res.columns
        if not res.failed:  # the usual case: every row valid
            new = self._dedup.filter_new(v["robot_id"], v["actor_session"], v["seq"])
            n_new = int(new.sum())
            n_dup = len(new) - n_new
            self.stats.duplicates += n_dup
            accepted = self._push(v, new, n_new)
            return AppendResult(accepted, n_dup, {})
        # rows whose key itself is invalid cannot be marked handled (whatever their reason)
        key_bad = np.zeros(len(res.keep), bool)
        for code, mask in res.failed.items():
            if code.split(".")[0] in _KEY_LIMITS:
                key_bad |= mask
        if atomic and not res.keep.all():
            self._count_rejections(res, v)
            counts = res.counts()
            raise ValueError(
                f"episode refused, nothing stored: {sum(counts.values())} of {len(res.keep)} rows "
                f"are invalid ({', '.join(f'{k}: {c}' for k, c in counts.items())}); first: "
                f"{next(iter(res.examples.values()))}")
        ok_key = ~key_bad
        new = np.zeros(len(res.keep), bool)
        if ok_key.any():
            idx = np.flatnonzero(ok_key)
            new[idx] = self._dedup.filter_new(v["robot_id"][idx], v["actor_session"][idx],
                                              v["seq"][idx])
        dup = ok_key & ~new
        self.stats.duplicates += int(dup.sum())
        count_mask = ~dup  # a re-sent bad row is a duplicate, not a second rejection
        self._count_rejections(res, v, count_mask)
        accepted = self._push(v, new & res.keep)
        rejected = Counter(str(r) for r in res.reasons[~res.keep & count_mask])
        return AppendResult(accepted, int(dup.sum()), dict(rejected))

    def append_batch(self, batch: Mapping[str, Any] | np.ndarray) -> AppendResult:
        """Append many rows (column mapping or structured array), validated and deduplicated
        vectorised. Bad rows are refused and counted, the others kept (in order)."""
        self._check()
        self._drain_staged()
        result = self._ingest(batch, atomic=False)
        if self.pending_rows >= self.config.max_uncommitted_rows:
            self.flush()
        return result

    def append_episode(self, batch: Mapping[str, Any] | np.ndarray) -> AppendResult:
        """Append a whole episode (an import, a recorded demo) atomically and commit it.

        All its rows become visible in one commit, or none do: if any row is invalid a
        ``ValueError`` names the reasons and nothing is stored; a crash before the commit
        leaves none of them. Rows already stored (a repeated import) are skipped as duplicates.
        Every row must share one (robot_id, episode_id), and only the last may be terminated
        or truncated.
        """
        self._check()
        cols = columns_from_any(batch)
        check_column_names(cols)
        rid, eid = np.asarray(cols["robot_id"]), np.asarray(cols["episode_id"])
        if rid.ndim != 1 or len(rid) == 0:
            raise ValueError("append_episode: expected a non-empty batch of rows")
        if (rid != rid[0]).any() or (eid != eid[0]).any():
            raise ValueError("append_episode: all rows must share one (robot_id, episode_id); got "
                             f"{len(set(zip(rid.tolist(), eid.tolist())))} episodes")
        for name in ("terminated", "truncated"):
            f = np.asarray(cols[name])
            if f.ndim == 1 and len(f) > 1 and np.asarray(f[:-1], bool).any():
                raise ValueError(f"append_episode: {name} is set before the last row "
                                 f"(row {int(np.flatnonzero(np.asarray(f[:-1], bool))[0])})")
        self._drain_staged()
        result = self._ingest(cols, atomic=True)
        self.flush()
        return result

    # ------------------------------------------------------------------ commit

    def flush(self) -> int:
        """Write every buffered row and commit; return the committed length.

        Cheap when nothing is pending. See the module docstring for the protocol.
        """
        self._check()
        self._drain_staged()
        end = self._buf_start + self._buf_len
        wms = self._dedup.watermarks()
        if end == self._committed and wms == self._acked:
            self._last_flush = self._clock()
            return self._committed
        try:
            if end > self._committed:
                self._write_chunks(self._committed, end)
            self._commit_no += 1
            self._write_marker(CommitInfo(end, self._commit_no, time.time(), wms))
        except BaseException as e:
            self._broken = f"{type(e).__name__}: {e}"
            raise
        self.stats.commits += 1
        self.stats.committed_rows += end - self._committed
        self._committed = end
        self._acked = wms
        self._last_flush = self._clock()
        # keep only the tail chunk's rows in the buffer
        new_start = (end // self.R) * self.R
        shift = new_start - self._buf_start
        if shift:
            keep = self._buf_len - shift
            for arr in self._buf.values():
                arr[:keep] = arr[shift:self._buf_len]
                arr[keep:self._buf_len] = 0
            self._buf_start, self._buf_len = new_start, keep
        return end

    def maybe_flush(self, now: float | None = None) -> bool:
        """Flush if ``config.flush_interval`` has passed since the last flush; True if it did.

        Call it from a timer (the replay node) or after appends; ``now`` defaults to the clock.
        """
        now = self._clock() if now is None else now
        if now - self._last_flush < self.config.flush_interval:
            return False
        before = self.stats.commits
        self.flush()
        return self.stats.commits > before

    def _write_chunks(self, committed: int, end: int) -> None:
        R = self.R
        first, last = committed // R, (end - 1) // R
        need = (last + 1) * R
        if need > self._alloc:
            # grow the arrays ahead (doubling) so metadata rewrites stay rare; rows allocated
            # past the commit cost nothing on disk (chunks are written only when filled)
            self._resize_arrays(max(need, 2 * self._alloc, 16 * R))
        self._reserve(need - self._buf_start)
        # The tail chunk that already holds committed rows is rewritten on its own, then the
        # new chunks in groups (temp files of a group written, fsynced together, renamed).
        groups: list[list[int]] = []
        c = first
        if c * R < committed:
            groups.append([c])
            c += 1
        while c <= last:
            groups.append(list(range(c, min(last + 1, c + _CHUNKS_PER_GROUP))))
            c += _CHUNKS_PER_GROUP
        for group in groups:
            durable.phase("partial_rewrite" if group[0] * R < committed else "chunk_write")
            items = []
            for c in group:
                lo = c * R - self._buf_start
                for p in self.layout.parts:
                    arr = self._arrays[p.path]
                    rows = self._buf[p.column][lo:lo + R]
                    if p.cols is not None:
                        rows = np.ascontiguousarray(rows[:, p.cols])
                    idx = (c,) + (0,) * (arr.ndim - 1)
                    items.append((f"{DATA_GROUP}/{p.path}/{arr.metadata.encode_chunk_key(idx)}",
                                  rows))
            self.store.put_many(items)
        self.store.sync_dirs()

    def _write_marker(self, info: CommitInfo) -> None:
        durable.phase("marker_update")
        self.store.put_bytes(MARKER_KEY, info.to_json())
        self.store.sync_dirs()
        durable.phase("idle")

    # ------------------------------------------------------------------ acks, close

    def acks(self) -> dict[tuple[int, int], int]:
        """``{(robot_id, actor_session): seq}``: all seqs <= seq of that session are committed
        (or were refused as invalid). Sessions whose seq 0 was not handled yet are left out."""
        return {k: w for k, w in self._acked.items() if w >= 0}

    def committed_seq(self, robot_id: int, actor_session: int) -> int | None:
        """The acknowledgement for one session (see :meth:`acks`), or ``None``."""
        w = self._acked.get((robot_id, actor_session), -1)
        return w if w >= 0 else None

    def close(self) -> None:
        """Flush (unless broken) and release the lock. Idempotent."""
        if getattr(self, "_lock", None) is None:
            return
        try:
            if self._broken is None and hasattr(self, "_buf"):
                self.flush()
        finally:
            if hasattr(self, "store"):
                self.store.close()
            self._lock.release()
            self._lock = None  # type: ignore[assignment]

    def __enter__(self) -> ReplayWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- helpers


class _LocalChunkReader(ReplayReader):
    """A reader over the writer's own open arrays (no marker check: the writer knows it)."""

    def __init__(self, path: Path, arrays: dict[str, zarr.Array], chunk_rows: int,
                 layout: StoreLayout) -> None:
        self.path = str(path)
        self._local = path
        self.store = None
        self._arrays = arrays
        self._plain = {n: True for n in arrays}
        self.layout = layout
        self.chunk_rows = chunk_rows

    def _open_arrays(self) -> None:  # the writer's arrays are always current
        pass

    def read(self, start, stop, columns=None, out=None, *, length=None):  # type: ignore[override]
        return super().read(start, stop, columns, out, length=stop)


def _stack_rows(rows: list, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-row vectors into (n, dim) float64-or-32; rows of another shape -> zeros + mask."""
    n = len(rows)
    try:
        arr = np.asarray(rows, dtype=np.float32) if rows and isinstance(rows[0], np.ndarray) \
            and rows[0].dtype == np.float32 else np.asarray(rows, dtype=np.float64)
        if arr.shape == (n, dim):
            return arr, np.zeros(n, bool)
    except (TypeError, ValueError):
        pass
    out = np.zeros((n, dim), np.float64)
    bad = np.zeros(n, bool)
    for i, r in enumerate(rows):
        try:
            a = np.asarray(r, dtype=np.float64)
        except (TypeError, ValueError):
            bad[i] = True
            continue
        if a.shape != (dim,):
            bad[i] = True
            continue
        out[i] = a
    return out, bad


_U64 = 2**64 - 1
_CHUNKS_PER_GROUP = 8  # chunks whose files are written and fsynced together (15 files each)


def _as_flags(terminated: Any, truncated: Any) -> tuple[bool, bool] | str:
    """``(terminated, truncated)`` as bools, or the name of the one that is not 0/1/bool."""
    out = []
    for name, v in (("terminated", terminated), ("truncated", truncated)):
        try:
            ok = v is True or v is False or v in (0, 1)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            return name
        out.append(bool(v))
    return out[0], out[1]


def _scalar_column(values: list, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A staged scalar column as an array, and a mask of values no int64/uint64 can hold.

    Staged values are already Python ints / floats / bools (checked in ``append``); ints may
    mix negatives with values above int64 (then the offending rows are masked, set to 0).
    """
    n = len(values)
    if dtype.kind == "f":
        return np.asarray(values, dtype=np.float64), np.zeros(n, bool)
    if dtype.kind == "b":
        return np.asarray(values, dtype=bool), np.zeros(n, bool)
    for wide in (np.int64, np.uint64):
        try:
            return np.asarray(values, dtype=wide), np.zeros(n, bool)
        except OverflowError:
            pass
    info = np.iinfo(dtype)
    bad = np.array([not info.min <= v <= info.max for v in values], bool)
    return np.array([0 if b else v for v, b in zip(values, bad)], dtype=dtype), bad
