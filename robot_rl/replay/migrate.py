"""``robot-rl replay migrate``: convert a store of an earlier layout to the current one.

Schema 1 (before issue 17) kept the observation as one flat array (``data/observation``);
schema 2 keeps one array per observation field (``data/obs/<key>``, ``data/next_obs/<key>``) and
records the fields (:class:`~robot_rl.specs.ObservationSpec`). A schema 1 store opens read-only;
this converts it so a run can go on appending to it (``--resume``).

Nothing is lost and nothing is half-done:

1. the store's writer lock is taken (no replay node may write meanwhile);
2. the task's observation fields (from the config) must cut the store's flat observation exactly
   -- same element names and bounds -- else it is refused naming the element;
3. every committed row is copied, in order, into a new store beside it (``<name>.migrating``)
   through the ordinary writer (validated, deduplicated, committed, fsynced), with the same
   chunk size, ``policy_action`` and creation time;
4. the copy is read back and compared with the original, column by column, bit for bit, and the
   acknowledged seqs of every actor session must agree;
5. only then the original is renamed to ``<name>.v1`` (kept: delete it yourself once satisfied)
   and the copy takes its name. A crash before this step leaves the original untouched (the
   ``.migrating`` copy is removed by the next attempt); a crash between the two renames leaves
   both stores under their new names, and the message of the next attempt says so.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.config import ReplayConfig
from robot_rl.replay.lock import WriterLock
from robot_rl.replay.schema import COLUMN_NAMES, SCHEMA_VERSION
from robot_rl.replay.store import (
    ReplayReader,
    ReplayWriter,
    StoreError,
    describe_spec_difference,
    lock_path,
)
from robot_rl.specs import ObservationSpec

#: Rows copied per batch.
_BLOCK = 65_536


def migrate_store(path: str | Path, observation: ObservationSpec, *, fsync: bool = True,
                  log: Any = print) -> dict[str, Any]:
    """Convert the store at ``path`` to the current schema in place; return what was done.

    Args:
        path: a local replay store directory.
        observation: the observation fields the store's rows have (the task's ``obs_spec``).
        fsync: make the copy durable before the swap (off only in tests).
        log: called with progress lines.

    Raises:
        StoreError: not a store, already current, another spec, or the copy differs.
        StoreLockedError: a writer has the store open.
    """
    path = Path(path)
    backup = path.with_name(path.name + ".v1")
    tmp = path.with_name(path.name + ".migrating")
    if not (path / "zarr.json").is_file():
        if backup.is_dir() and not path.exists():
            raise StoreError(f"{path} is missing but {backup} exists: a migration stopped between "
                             f"its two renames; the original is {backup}, the converted copy "
                             f"{tmp} (check it with `robot-rl replay verify {tmp}`, then rename "
                             f"it to {path})")
        raise StoreError(f"{path} is not a replay store (no zarr.json)")
    lock = WriterLock(lock_path(path), what=f"replay store {path}")
    try:
        src = ReplayReader(path)
        version = src.layout.schema_version
        if version == SCHEMA_VERSION:
            raise StoreError(f"{path} is already at schema version {SCHEMA_VERSION}; nothing to "
                             "migrate")
        why = describe_spec_difference(src.observation_spec, observation.flat)
        if why:
            raise StoreError(f"{path}: the config's observation fields do not cut this store's "
                             f"observation ({why}); pass the config of the run that wrote it "
                             "(--config, task.name=...)")
        if backup.exists():
            raise StoreError(f"{backup} exists (an earlier migration's original?); move it away "
                             "first")
        n = len(src)
        info = src.commit()
        log(f"migrating {path}: schema {version} -> {SCHEMA_VERSION}, {n} rows, observation "
            f"fields {', '.join(observation.signature())}")
        if tmp.exists():
            shutil.rmtree(tmp)  # a copy an interrupted attempt left: never swapped in
        tmp_lock = lock_path(tmp)
        # rows are copied as they are: bounds were the writer's business when they came in
        cfg = ReplayConfig(chunk_rows=src.chunk_rows, policy_action=src.layout.policy_action,
                           fsync=fsync, max_uncommitted_rows=2 * _BLOCK, check_bounds=False)
        with ReplayWriter(tmp, observation, src.action_spec, cfg) as w:
            for a in range(0, n, _BLOCK):
                b = min(n, a + _BLOCK)
                cols = src.read(a, b, length=n)
                res = w.append_batch(cols)
                if res.accepted != b - a:
                    raise StoreError(f"{path}: rows {a}..{b} did not copy whole ({res}); the "
                                     "original is unchanged")
                w.flush()
            acks = w.acks()
        _set_created(tmp, src.layout.created_unix)
        dst = ReplayReader(tmp)
        if len(dst) != n:
            raise StoreError(f"{tmp}: {len(dst)} rows after the copy, the original has {n}")
        for a in range(0, n, _BLOCK):
            b = min(n, a + _BLOCK)
            x, y = src.read(a, b, length=n), dst.read(a, b, length=n)
            for name in COLUMN_NAMES:
                if x[name].tobytes() != y[name].tobytes():
                    i = a + int(np.flatnonzero((x[name] != y[name]).reshape(b - a, -1)
                                               .any(axis=1))[0])
                    raise StoreError(f"{tmp}: column {name} differs from the original at row "
                                     f"{i}; the original is unchanged")
        # The acknowledged seqs: the copy derives them from its rows; the original may be
        # further along where it refused invalid rows (acknowledged, never stored). Keep the
        # original's, once the copy's are not ahead of them anywhere.
        want = dict(info.sessions)
        ahead = {k: v for k, v in acks.items() if v > want.get(k, -1)}
        if ahead:
            raise StoreError(f"{tmp}: acknowledged seqs {ahead} are ahead of the original's "
                             f"{ {k: want.get(k) for k in ahead} }; the original is unchanged")
        _set_marker_sessions(tmp, want, fsync=fsync)
        if dict(ReplayReader(tmp).commit().sessions) != want:
            raise StoreError(f"{tmp}: the acknowledged seqs did not carry over; the original is "
                             "unchanged")
        tmp_lock.unlink(missing_ok=True)
        path.rename(backup)
        tmp.rename(path)
        log(f"done: {path} is at schema {SCHEMA_VERSION} ({n} rows, compared bit for bit); the "
            f"original is kept at {backup}")
        return {"path": str(path), "rows": n, "from_schema": version, "to_schema": SCHEMA_VERSION,
                "backup": str(backup), "observation_hash": observation.hash}
    finally:
        lock.release()


def _set_created(path: Path, created_unix: float) -> None:
    """Keep the original's creation time in the copy's attributes."""
    import zarr

    from robot_rl.replay.schema import ATTRS_KEY

    g = zarr.open_group(str(path), mode="r+")
    attrs = dict(g.attrs[ATTRS_KEY])
    attrs["created_unix"] = float(created_unix)
    g.attrs[ATTRS_KEY] = attrs


def _set_marker_sessions(path: Path, sessions: dict[tuple[int, int], int], *,
                         fsync: bool) -> None:
    """Replace the acknowledged seqs in the commit marker of ``path`` (atomically)."""
    from robot_rl.replay.durable import DurableLocalStore
    from robot_rl.replay.store import MARKER_KEY, CommitInfo

    info = CommitInfo.from_json((path / MARKER_KEY).read_bytes(), str(path))
    store = DurableLocalStore(path, fsync=fsync)
    store.put_bytes(MARKER_KEY, CommitInfo(info.length, info.commit, info.time_unix,
                                           dict(sessions)).to_json())
    store.sync_dirs()
