"""What is in a replay store (``robot-rl replay info``) and is it intact (``... verify``)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.replay.durable import TEMP_RE
from robot_rl.replay.lock import describe_holder, is_locked
from robot_rl.replay.schema import COLUMN_BY_NAME, KEEP_FOREVER_SOURCES, Source
from robot_rl.replay.store import DATA_GROUP, ReplayReader, StoreError, lock_path

_BLOCK = 1 << 18  # rows per pass when scanning a store


def _local(path: str | Path) -> Path | None:
    s = str(path)
    if s.startswith("file://"):
        return Path(s[len("file://"):])
    return None if "://" in s else Path(s)


def _disk_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def store_info(path: str | Path) -> dict[str, Any]:
    """A summary of a store: spec, commit point, rows by source, episodes, robots, size."""
    r = ReplayReader(path)
    info = r.commit()
    n = info.length
    names = ("source", "robot_id", "episode_id", "terminated", "truncated", "actor_session")
    by_source = np.zeros(256, np.int64)
    robots: dict[int, int] = {}
    episodes: set[tuple[int, int]] = set()
    sessions: set[tuple[int, int]] = set()
    terminated = truncated = 0
    for a in range(0, n, _BLOCK):
        c = r.read(a, min(n, a + _BLOCK), names, length=n)
        by_source += np.bincount(c["source"], minlength=256)
        rid, cnt = np.unique(c["robot_id"], return_counts=True)
        for k, v in zip(rid.tolist(), cnt.tolist()):
            robots[k] = robots.get(k, 0) + v
        episodes.update(zip(c["robot_id"].tolist(), c["episode_id"].tolist()))
        sessions.update(zip(c["robot_id"].tolist(), c["actor_session"].tolist()))
        terminated += int(c["terminated"].sum())
        truncated += int(c["truncated"].sum())
    local = _local(path)
    lock = lock_path(local) if local is not None else None
    return {
        "path": str(path),
        "schema_version": r.layout.schema_version,
        "observation": {"dim": r.observation_spec.dim, "names": list(r.observation_spec.names),
                        # named fields (key:shape:dtype:role) and the spec's hash; None for a
                        # store written before fields were recorded
                        "fields": (None if r.observation_fields is None
                                   else r.observation_fields.signature()),
                        "hash": (None if r.observation_fields is None
                                 else r.observation_fields.hash)},
        "action": {"dim": r.action_spec.dim, "names": list(r.action_spec.names)},
        "chunk_rows": r.chunk_rows,
        "policy_action": r.layout.policy_action,
        "created": _iso(r.layout.created_unix),
        "commit": {"rows": n, "commit": info.commit, "time": _iso(info.time_unix),
                   "sessions_acked": len(info.sessions)},
        "rows_by_source": {s.name.lower(): int(by_source[s]) for s in Source},
        "kept_forever_rows": int(sum(by_source[s] for s in KEEP_FOREVER_SOURCES)),
        "episodes": len(episodes),
        "episode_ends": {"terminated": terminated, "truncated": truncated},
        "robots": {str(k): v for k, v in sorted(robots.items())},
        "actor_sessions": len(sessions),
        "allocated_rows": max(r.allocated_rows().values()),
        "size_on_disk_bytes": _disk_bytes(local) if local is not None else None,
        "writer": (("open: " + describe_holder(lock)) if is_locked(lock) else "none")
        if lock is not None else "unknown (remote store)",
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)) if t else "?"


@dataclass
class VerifyResult:
    """``problems``: integrity errors (non-empty means the store is damaged); ``notes``:
    harmless findings (e.g. temp files a killed writer left, removed by the next writer)."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | Path) -> VerifyResult:
    """Check a store: marker vs array lengths, dtypes/shapes/chunks, spec, chunk files, values,
    dedup-key uniqueness. Never modifies it.

    Raises ``StoreError`` if ``path`` is not a zarr store at all (nothing to verify); anything
    wrong inside a zarr group is reported in :attr:`VerifyResult.problems`.
    """
    res = VerifyResult()
    local = _local(path)
    if local is not None and not (local / "zarr.json").is_file():
        raise StoreError(f"{path} is not a replay store (no zarr.json)")
    try:
        r = ReplayReader(path)
    except StoreError as e:
        res.problems.append(str(e))
        return res
    try:
        info = r.commit()
    except StoreError as e:
        res.problems.append(str(e))
        return res
    n = res.rows = info.length
    layout = r.layout
    R = r.chunk_rows
    r._open_arrays()
    for p in layout.parts:
        arr = r._arrays[p.path]
        col = COLUMN_BY_NAME[p.column]
        name = p.column if p.path == p.column else f"{p.column} ({DATA_GROUP}/{p.path})"
        if arr.dtype != col.dtype:
            res.problems.append(f"column {name}: dtype {arr.dtype}, the schema says {col.dtype}")
        if tuple(arr.shape[1:]) != p.shape:
            res.problems.append(f"column {name}: row shape {tuple(arr.shape[1:])}, the spec says "
                                f"{p.shape}")
        if arr.shape[0] < n:
            res.problems.append(f"column {name}: {arr.shape[0]} rows allocated, but the commit "
                                f"marker says {n} rows are committed")
        if arr.chunks[0] != R:
            res.problems.append(f"column {name}: chunks of {arr.chunks[0]} rows, the attributes "
                                f"say {R}")
    if res.problems:
        return res
    if local is not None:
        for p in layout.parts:
            arr = r._arrays[p.path]
            name = p.column if p.path == p.column else f"{p.column} ({DATA_GROUP}/{p.path})"
            size = R * arr.dtype.itemsize * int(np.prod(p.shape, dtype=np.int64))
            for c in range(-(-n // R)):
                key = arr.metadata.encode_chunk_key((c,) + (0,) * (arr.ndim - 1))
                f = local / DATA_GROUP / p.path / key
                try:
                    got = f.stat().st_size
                except FileNotFoundError:
                    res.problems.append(f"column {name}: chunk {key} (rows {c * R}..) is missing")
                    continue
                if got != size:
                    res.problems.append(f"column {name}: chunk {key} has {got} bytes, expected "
                                        f"{size}")
        temps = [str(Path(d) / f) for d, _s, fs in os.walk(local) for f in fs if TEMP_RE.match(f)]
        if temps:
            res.notes.append(f"{len(temps)} temp file(s) of an interrupted write (removed when "
                             f"a writer next opens the store), e.g. {temps[0]}")
        if is_locked(lock_path(local)):
            res.notes.append(f"a writer is open: {describe_holder(lock_path(local))}; rows may be "
                             "committed while this runs")
    if res.problems:
        return res
    keys = []
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        c = r.read(a, b, length=n)
        for name in ("observation", "action", "next_observation", "reward"):
            bad = ~np.isfinite(c[name])
            if bad.any():
                i = a + int(np.flatnonzero(bad.reshape(b - a, -1).any(axis=1))[0])
                res.problems.append(f"column {name}: non-finite value in committed row {i}")
        for name in ("terminated", "truncated"):
            raw = c[name].view(np.uint8)
            if (raw > 1).any():
                i = a + int(np.flatnonzero(raw > 1)[0])
                res.problems.append(f"column {name}: byte {raw[i - a]} is not a bool (row {i})")
        if (c["source"] > max(Source)).any():
            i = a + int(np.flatnonzero(c["source"] > max(Source))[0])
            res.problems.append(f"column source: unknown source {c['source'][i - a]} in row {i}")
        keys.append(np.stack([c["robot_id"].astype(np.uint64), c["actor_session"], c["seq"]], 1))
    if keys:
        k = np.concatenate(keys)
        order = np.lexsort((k[:, 2], k[:, 1], k[:, 0]))
        ks = k[order]
        dup = np.flatnonzero((ks[1:] == ks[:-1]).all(axis=1))
        if len(dup):
            rob, ses, seq = ks[dup[0]].tolist()
            res.problems.append(
                f"{len(dup)} duplicated (robot_id, actor_session, seq) keys, e.g. ({rob}, {ses}, "
                f"{seq}) in rows {sorted(order[[dup[0], dup[0] + 1]].tolist())}")
    return res


def verify_store(path: str | Path) -> list[str]:
    """The problems :func:`verify` finds (empty: the store is intact)."""
    return verify(path).problems
