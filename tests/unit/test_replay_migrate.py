"""Replay schema 2 (one array per observation field) and ``robot-rl replay migrate`` for stores of
schema 1 (one flat observation array): a real schema 1 store written by robot_rl at 5416070
(tests/data/replay_v1, 60 rows of two robots from the PyBullet reach env) opens read-only, a
writer refuses it naming the command, and the migration converts it losing nothing."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.config import ReplayConfig, config_from_dict
from robot_rl.replay.lock import WriterLock
from robot_rl.replay.schema import COLUMN_NAMES
from robot_rl.replay.store import MARKER_KEY, ReplayReader, ReplayWriter, StoreError, lock_path
from robot_rl.tasks import make_task

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "replay_v1" / "replay.zarr"


def _tree(p: Path) -> str:
    """A digest of every file under ``p`` (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def v1(tmp_path) -> Path:
    dst = tmp_path / "run" / "replay.zarr"
    shutil.copytree(FIXTURE, dst)
    return dst


def _reach():
    cfg = config_from_dict({"task": {"name": "reach", "action_mode": "ee_velocity"}})
    task = make_task(cfg.task, cfg.robot)
    from robot_rl.actions import ActionMapper

    return task, ActionMapper(cfg.task, cfg.robot).spec


def test_a_schema_1_store_opens_read_only_and_a_writer_refuses_it_naming_the_command(v1, capsys):
    r = ReplayReader(v1)
    assert r.layout.schema_version == 1 and r.observation_fields is None and len(r) == 60
    cols = r.read(0, 60)
    assert cols["observation"].shape == (60, 20) and set(cols["source"].tolist()) == {0, 1}
    assert main(["replay", "verify", str(v1)]) == 0
    assert main(["replay", "info", str(v1)]) == 0
    assert "schema 1" in capsys.readouterr().out
    before = _tree(v1)
    task, act = _reach()
    with pytest.raises(StoreError, match="replay schema version 1.*robot-rl replay migrate"):
        ReplayWriter(v1, task.obs_spec, act, ReplayConfig())
    assert _tree(v1) == before  # nothing touched


def test_migrate_converts_every_row_bit_for_bit_and_keeps_the_original(v1, capsys):
    original = ReplayReader(v1).read(0, 60)
    marker = json.loads((v1 / MARKER_KEY).read_text())
    assert main(["replay", "migrate", str(v1)]) == 0
    out = capsys.readouterr().out
    assert "schema 1 -> 2, 60 rows" in out and "compared bit for bit" in out
    backup = v1.with_name("replay.zarr.v1")
    assert backup.is_dir() and not v1.with_name("replay.zarr.migrating").exists()
    assert ReplayReader(backup).layout.schema_version == 1  # the original, as it was
    r = ReplayReader(v1)
    task, act = _reach()
    assert r.layout.schema_version == 2 and r.observation_fields == task.obs_spec
    got = r.read(0, 60)
    for name in COLUMN_NAMES:
        assert got[name].tobytes() == original[name].tobytes(), name
    new_marker = json.loads((v1 / MARKER_KEY).read_text())
    assert new_marker["attributes"]["sessions"] == marker["attributes"]["sessions"]
    attrs = json.loads((v1 / "zarr.json").read_text())["attributes"]["robot_rl_replay"]
    old = json.loads((backup / "zarr.json").read_text())["attributes"]["robot_rl_replay"]
    assert attrs["created_unix"] == old["created_unix"] and attrs["chunk_rows"] == 16
    # one array per observation field, for the observation and the next observation
    for group in ("obs", "next_obs"):
        for key, n in (("q", 7), ("dq", 7), ("ee_pos", 3), ("goal", 3)):
            chunk = v1 / "data" / group / key / "c.0.0"
            assert chunk.stat().st_size == 16 * n * 4, chunk
    assert not (v1 / "data" / "observation").exists()
    assert main(["replay", "verify", str(v1)]) == 0
    # the run goes on: a writer appends to it, the old rows deduplicated
    with ReplayWriter(v1, task.obs_spec, act, ReplayConfig(fsync=False, chunk_rows=16)) as w:
        res = w.append_batch({k: v[:5] for k, v in original.items()})
        assert (res.accepted, res.duplicates) == (0, 5)
        more = {k: v[:5].copy() for k, v in original.items()}
        more["seq"][:] = np.arange(100, 105)
        assert w.append_batch(more).accepted == 5
    assert len(ReplayReader(v1)) == 65
    assert main(["replay", "migrate", str(v1)]) == 2  # already current
    assert "already at schema version 2" in capsys.readouterr().err


def test_migrate_refuses_another_task_and_a_held_lock_changing_nothing(v1, capsys):
    before = _tree(v1)
    assert main(["replay", "migrate", str(v1), "task.name=push"]) == 2
    err = capsys.readouterr().err
    assert "do not cut this store's observation" in err and "the store has 20 elements, the config 27" in err
    lock = WriterLock(lock_path(v1), what="a replay node")
    try:
        assert main(["replay", "migrate", str(v1)]) == 3
        assert "stop the replay node" in capsys.readouterr().err
    finally:
        lock.release()
    assert _tree(v1) == before
    assert not v1.with_name("replay.zarr.v1").exists()
    assert not v1.with_name("replay.zarr.migrating").exists()


def test_acknowledged_seqs_beyond_the_stored_rows_carry_over(v1):
    """A writer acknowledges rows it refused as invalid (never stored): the marker's watermark
    is ahead of the rows; the migration keeps it, so a re-sending actor is not asked again."""
    from robot_rl.replay.migrate import migrate_store

    m = json.loads((v1 / MARKER_KEY).read_text())
    m["attributes"]["sessions"][0][2] = 40  # robot 0 stored seqs 0..35, refused 36..40
    (v1 / MARKER_KEY).write_text(json.dumps(m))
    task, _ = _reach()
    res = migrate_store(v1, task.obs_spec, fsync=False, log=lambda _s: None)
    assert res["rows"] == 60 and res["to_schema"] == 2
    assert ReplayReader(v1).commit().sessions[(0, 0x1111)] == 40


def test_a_half_done_migration_is_reported_with_what_to_do(v1):
    from robot_rl.replay.migrate import migrate_store

    v1.rename(v1.with_name("replay.zarr.v1"))
    task, _ = _reach()
    with pytest.raises(StoreError, match="stopped between its two renames"):
        migrate_store(v1, task.obs_spec, fsync=False)
