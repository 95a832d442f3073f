"""Replay store: commit protocol, dedup/acks, validation, whole-episode append, lock, spec checks."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.config import ReplayConfig
from robot_rl.replay import (
    ReplayReader,
    ReplayWriter,
    StoreError,
    StoreLockedError,
    lock_path,
    transition_dtype,
)
from robot_rl.replay.durable import DurableLocalStore, sweep_temp_files
from robot_rl.replay.synthetic import make_specs, row_kwargs, synthetic_rows
from robot_rl.specs import BoxSpec

pytestmark = pytest.mark.unit

OBS, ACT = make_specs(4, 2)
CFG = ReplayConfig(chunk_rows=8, fsync=False)


def rows(seqs, **kw):
    return synthetic_rows(seqs, obs_dim=4, act_dim=2, **kw)


def writer(path, cfg=CFG, **kw):
    return ReplayWriter(path, OBS, ACT, cfg, **kw)


def read_all(path):
    r = ReplayReader(path)
    return r.read(0, len(r))


def assert_rows_equal(got, want):
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# --------------------------------------------------------------------------- commit + read


def test_rows_round_trip_and_readers_see_committed_rows_only(tmp_path):
    p = tmp_path / "replay.zarr"
    want = rows(range(21), episode_len=5)
    w = writer(p)
    for i in range(11):
        assert w.append(**row_kwargs(want, i)) is True
    reader = ReplayReader(p)
    assert len(reader) == 0  # buffered, not committed
    assert w.flush() == 11
    assert len(reader) == 11
    got = reader.read(0, 11)
    assert_rows_equal(got, {k: v[:11] for k, v in want.items()})
    res = w.append_batch({k: v[11:] for k, v in want.items()})
    assert res == (10, 0, {})
    assert len(reader) == 11
    w.flush()
    assert_rows_equal(reader.read(0, len(reader)), want)
    with pytest.raises(ValueError, match=r"not within the committed \[0, 21\)"):
        reader.read(0, 22)
    # rows past the commit are never returned, even though the array is allocated further
    assert reader.allocated_rows()["observation"] >= 24
    w.close()


def test_reopen_resumes_after_the_tail_chunk_and_keeps_every_row(tmp_path):
    p = tmp_path / "replay.zarr"
    want = rows(range(30), episode_len=7)
    with writer(p) as w:
        w.append_batch({k: v[:13] for k, v in want.items()})  # 1 full chunk + 5 rows
    with writer(p) as w:
        assert w.committed_length == 13
        for i in range(13, 30):
            w.append(**row_kwargs(want, i))
    assert_rows_equal(read_all(p), want)
    r = ReplayReader(p)
    assert r.commit().length == 30
    assert r.chunk_rows == 8


def test_structured_array_batches_are_accepted(tmp_path):
    want = rows(range(5))
    arr = np.zeros(5, transition_dtype(4, 2))
    for k, v in want.items():
        arr[k] = v
    with writer(tmp_path / "s.zarr") as w:
        assert w.append_batch(arr).accepted == 5
    assert_rows_equal(read_all(tmp_path / "s.zarr"), want)


def test_timer_flush_and_buffer_bound(tmp_path):
    now = [100.0]
    w = writer(tmp_path / "t.zarr", ReplayConfig(chunk_rows=8, fsync=False, flush_interval=0.5,
                                                max_uncommitted_rows=20), clock=lambda: now[0])
    data = rows(range(60))
    w.append(**row_kwargs(data, 0))
    assert w.maybe_flush() is False  # 0 s since open
    now[0] += 0.49
    assert w.maybe_flush() is False
    now[0] += 0.02
    assert w.maybe_flush() is True and w.committed_length == 1
    now[0] += 1.0
    assert w.maybe_flush() is False  # nothing new: no commit
    for i in range(1, 25):
        w.append(**row_kwargs(data, i))
    # max_uncommitted_rows=20 forced a commit without the timer
    assert w.committed_length == 21
    w.close()
    assert len(ReplayReader(tmp_path / "t.zarr")) == 25


def test_reader_through_an_fsspec_url(tmp_path):
    p = tmp_path / "u.zarr"
    with writer(p) as w:
        w.append_batch(rows(range(10)))
    r = ReplayReader(f"file://{p}")
    assert r.commit().length == 10
    assert_rows_equal(r.read(0, 10), rows(range(10)))
    assert r.observation_spec == OBS and r.action_spec == ACT


# --------------------------------------------------------------------------- dedup + acks


def test_resent_rows_are_stored_once_across_reopen(tmp_path):
    p = tmp_path / "d.zarr"
    data = rows(range(12))
    with writer(p) as w:
        assert w.append_batch({k: v[:8] for k, v in data.items()}) == (8, 0, {})
        # a re-send of 5..11 after a lost ack: 5..7 are duplicates
        assert w.append_batch({k: v[5:] for k, v in data.items()}) == (4, 3, {})
        assert w.append(**row_kwargs(data, 3)) is False
        assert w.stats.duplicates == 4
        assert w.acks() == {}  # nothing committed yet
        w.flush()
        assert w.acks() == {(0, 1): 11}
    with writer(p) as w:  # dedup state rebuilt from the committed columns
        assert w.acks() == {(0, 1): 11}
        assert w.append_batch(data) == (0, 12, {})
        assert w.append(**row_kwargs(data, 11)) is False
    got = read_all(p)
    assert sorted(got["seq"].tolist()) == list(range(12))


def test_ack_stops_below_a_gap_until_it_is_filled(tmp_path):
    data = rows(range(10))
    with writer(tmp_path / "g.zarr") as w:
        for i in (0, 1, 2, 5, 6):
            w.append(**row_kwargs(data, i))
        w.flush()
        assert w.committed_seq(0, 1) == 2  # 3 and 4 are missing: 5 and 6 cannot be promised
        for i in (3, 4):
            w.append(**row_kwargs(data, i))
        w.flush()
        assert w.committed_seq(0, 1) == 6
        assert w.committed_seq(0, 99) is None
    with writer(tmp_path / "g.zarr") as w:
        assert w.committed_seq(0, 1) == 6


def test_sessions_of_several_robots_are_deduplicated_separately(tmp_path):
    a = rows(range(4), robot_id=0, actor_session=7)
    b = rows(range(4), robot_id=1, actor_session=7)  # same session number, other robot
    c = rows(range(3), robot_id=0, actor_session=8)
    mixed = {k: np.concatenate([a[k], b[k], c[k], a[k][:2]]) for k in a}
    with writer(tmp_path / "m.zarr") as w:
        assert w.append_batch(mixed) == (11, 2, {})
        w.flush()
        assert w.acks() == {(0, 7): 3, (1, 7): 3, (0, 8): 2}


def test_refused_rows_count_as_handled_and_do_not_block_the_ack(tmp_path):
    data = rows(range(4))
    data["observation"][1, 2] = np.nan
    p = tmp_path / "h.zarr"
    with writer(p) as w:
        assert w.append_batch(data) == (3, 0, {"observation.non_finite": 1})
        w.flush()
        assert w.acks() == {(0, 1): 3}
        # re-sending the bad row: a duplicate, not a second rejection
        assert w.append_batch({k: v[1:2] for k, v in data.items()}) == (0, 1, {})
    with writer(p) as w:  # the marker keeps the watermark the columns alone cannot show
        assert w.acks() == {(0, 1): 3}


# --------------------------------------------------------------------------- validation


def test_bad_rows_are_refused_with_counted_reasons_and_stored_rows_are_untouched(tmp_path):
    p = tmp_path / "v.zarr"
    good = rows(range(6))
    with writer(p) as w:
        w.append_batch(good)
    bad = rows(range(6, 16))
    bad["observation"][0, 1] = np.nan                     # seq 6
    bad["next_observation"][1, 3] = np.inf                # seq 7
    bad["reward"][2] = np.nan                             # seq 8
    bad["action"][3, 0] = 1.5                             # seq 9: outside [-1, 1]
    bad["source"][4] = 3                                  # seq 10
    bad["observation"][5, 0] = 250.0                      # seq 11: outside [-100, 100]
    bad["reward"][6] = np.float32(np.inf)                 # seq 12
    bad["action"][7, 1] = -np.inf                         # seq 13 (non-finite wins over bounds)
    with writer(p) as w:
        res = w.append_batch(bad)
        assert res.accepted == 2 and res.duplicates == 0
        assert res.rejected == {
            "observation.non_finite": 1, "next_observation.non_finite": 1,
            "reward.non_finite": 2, "action.out_of_bounds": 1, "source.unknown": 1,
            "observation.out_of_bounds": 1, "action.non_finite": 1,
        }
        assert w.stats.rejected == res.rejected
        ex = w.stats.examples
        assert ex["observation.non_finite"] == (
            "row 0 (robot_id=0, actor_session=1, seq=6): observation[1] (o1) is not finite: nan")
        assert ex["action.out_of_bounds"].endswith("action[0] (a0) = 1.5 is outside its bounds [-1, 1]")
        assert "source = 3 is not one of 0 (policy), 1 (demo), 2 (intervention)" in ex["source.unknown"]
    got = read_all(p)
    assert got["seq"].tolist() == [0, 1, 2, 3, 4, 5, 14, 15]
    assert_rows_equal({k: v[:6] for k, v in got.items()}, good)


def test_single_row_path_refuses_bad_types_shapes_and_ranges(tmp_path):
    data = rows(range(10))
    with writer(tmp_path / "s.zarr") as w:
        kw = lambda i, **over: {**row_kwargs(data, i), **over}  # noqa: E731
        assert w.append(**kw(0)) is True
        assert w.append(**kw(1, robot_id=70000)) is False          # key refused at once
        assert w.append(**kw(1, seq=1.5)) is False
        assert w.append(**kw(1, reward="x")) is False              # key 1 now handled
        assert w.append(**kw(2, terminated=2)) is False
        assert w.append(**kw(3, episode_id=-1)) is True            # range: checked at flush
        assert w.append(**kw(4, observation=np.zeros(5))) is True  # shape: checked at flush
        assert w.append(**kw(5, source=9)) is True
        assert w.append(**kw(6, action=[0.5, 0.5])) is True        # a list is fine
        w.flush()
        assert dict(w.stats.rejected) == {
            "robot_id.out_of_range": 1, "seq.dtype": 1, "reward.dtype": 1,
            "terminated.not_bool": 1, "episode_id.out_of_range": 1, "observation.shape": 1,
            "source.unknown": 1,
        }
        assert "observation: expected shape (4,), got (5,)" in w.stats.examples["observation.shape"]
        assert w.acks() == {(0, 1): 6}
    got = read_all(tmp_path / "s.zarr")
    assert got["seq"].tolist() == [0, 6]


def test_usage_errors_raise_naming_the_field(tmp_path):
    with writer(tmp_path / "u.zarr") as w:
        data = rows(range(3))
        with pytest.raises(ValueError, match=r"unknown column\(s\) \['velocity'\]"):
            w.append_batch({**data, "velocity": np.zeros(3)})
        del data["reward"]
        with pytest.raises(ValueError, match=r"missing column\(s\) \['reward'\]"):
            w.append_batch(data)
        data = rows(range(3))
        data["seq"] = data["seq"][:2]
        with pytest.raises(ValueError, match="columns have different lengths"):
            w.append_batch(data)


# --------------------------------------------------------------------------- whole episodes


def test_whole_episode_is_committed_at_once_or_not_at_all(tmp_path):
    p = tmp_path / "e.zarr"
    ep = rows(range(20), episode_len=20, source=1)  # one demo episode spanning 3 chunks
    ep["truncated"][:] = False
    ep["terminated"][-1] = True
    reader = None
    with writer(p) as w:
        broken = {k: v.copy() for k, v in ep.items()}
        broken["action"][17, 0] = np.nan
        with pytest.raises(ValueError, match=r"episode refused, nothing stored: 1 of 20 rows are "
                                             r"invalid \(action.non_finite: 1\)"):
            w.append_episode(broken)
        assert w.committed_length == 0 and w.pending_rows == 0
        assert w.stats.rejected["action.non_finite"] == 1
        reader = ReplayReader(p)
        commits = reader.commit().commit
        assert w.append_episode(ep) == (20, 0, {})
        info = reader.commit()
        assert (info.length, info.commit) == (20, commits + 1)  # one commit holds all 20 rows
        assert w.append_episode(ep) == (0, 20, {})  # a repeated import stores nothing
        bad = rows(range(100, 104))
        bad["episode_id"][2] = 99
        with pytest.raises(ValueError, match=r"share one \(robot_id, episode_id\)"):
            w.append_episode(bad)
        bad = rows(range(100, 104), episode_len=10)
        bad["truncated"][1] = True
        with pytest.raises(ValueError, match=r"truncated is set before the last row \(row 1\)"):
            w.append_episode(bad)
    assert_rows_equal(read_all(p), ep)


# --------------------------------------------------------------------------- lock


def test_second_writer_fails_naming_the_holder(tmp_path):
    p = tmp_path / "l.zarr"
    w = writer(p)
    with pytest.raises(StoreLockedError, match=rf"already open for writing by pid {os.getpid()} "
                                               r"on host .*writer since"):
        writer(p)
    w.close()
    writer(p).close()  # released on close
    assert lock_path(p).read_text() == ""  # a clean release leaves no holder behind


def test_stale_lock_of_a_killed_writer_is_recovered(tmp_path):
    p = tmp_path / "k.zarr"
    code = (
        "import os, signal, sys\n"
        "from robot_rl.replay import ReplayWriter\n"
        "from robot_rl.replay.synthetic import make_specs\n"
        "from robot_rl.config import ReplayConfig\n"
        "o, a = make_specs(4, 2)\n"
        f"w = ReplayWriter({str(p)!r}, o, a, ReplayConfig(chunk_rows=8, fsync=False))\n"
        "print(os.getpid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    dead_pid = int(out.stdout.split()[0])
    assert json.loads(lock_path(p).read_text())["pid"] == dead_pid
    w = writer(p)
    assert w.recovered_lock_from is not None
    assert f"pid {dead_pid}" in w.recovered_lock_from and "no longer running" in w.recovered_lock_from
    w.close()


# --------------------------------------------------------------------------- spec / schema


def test_reopen_with_another_spec_is_refused_saying_what_differs(tmp_path):
    p = tmp_path / "s.zarr"
    writer(p).close()
    other = BoxSpec("observation", ("o0", "o1", "o2", "x"), np.full(4, -100.0), np.full(4, 100.0))
    with pytest.raises(StoreError, match=r"element 3 is 'o3' in the store but 'x' in the config"):
        ReplayWriter(p, other, ACT, CFG)
    wider, _ = make_specs(5, 2)
    with pytest.raises(StoreError, match="the store has 4 elements, the config 5"):
        ReplayWriter(p, wider, ACT, CFG)
    loose = BoxSpec("action", ("a0", "a1"), [-2, -1], [1, 1])
    with pytest.raises(StoreError, match=r"bound low\[0\] \(a0\) is -1 in the store but -2"):
        ReplayWriter(p, OBS, loose, CFG)
    # the refused writer released its lock
    writer(p).close()


def test_policy_action_is_fixed_when_the_store_is_created(tmp_path):
    """replay.policy_action (applied | proposed) is kept in the attributes; a writer asking for
    the other is refused (the two would mix in one action column); stores written before the
    attribute existed hold applied commands."""
    p = tmp_path / "pa.zarr"
    prop = CFG.model_copy(update={"policy_action": "proposed"})
    w = writer(p, prop)
    w.append_batch(rows(range(3)))
    w.close()
    assert ReplayReader(p).layout.policy_action == "proposed"
    with pytest.raises(StoreError, match=r"stores the proposed action of policy rows "
                       r"\(replay.policy_action: proposed\) but this run asks for applied"):
        writer(p)
    writer(p, prop).close()  # the same setting reopens
    assert len(ReplayReader(p)) == 3
    q = tmp_path / "old.zarr"
    writer(q).close()
    meta = json.loads((q / "zarr.json").read_text())
    assert meta["attributes"]["robot_rl_replay"].pop("policy_action") == "applied"
    (q / "zarr.json").write_text(json.dumps(meta))
    assert ReplayReader(q).layout.policy_action == "applied"
    writer(q).close()
    with pytest.raises(StoreError, match="proposed"):
        writer(q, prop)


def test_a_store_of_another_schema_version_is_refused(tmp_path):
    p = tmp_path / "v.zarr"
    writer(p).close()
    meta = json.loads((p / "zarr.json").read_text())
    meta["attributes"]["robot_rl_replay"]["schema_version"] = 99
    (p / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="schema version 99, this robot_rl reads versions 1, 2 only"):
        ReplayReader(p)
    with pytest.raises(StoreError, match="schema version 99"):
        writer(p)


def test_a_directory_that_is_not_a_store_is_not_touched(tmp_path):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "todo.txt").write_text("keep me")
    with pytest.raises(StoreError, match="exists and is not empty, but is not a zarr store"):
        writer(d)
    assert (d / "todo.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="not a replay store"):
        ReplayReader(d)


# --------------------------------------------------------------------------- durable writes


def test_atomic_store_writes_and_temp_sweep(tmp_path):
    st = DurableLocalStore(tmp_path / "x", fsync=True)
    st.put_bytes("a/b/c.0", b"old")
    st.sync_dirs()
    assert (tmp_path / "x/a/b/c.0").read_bytes() == b"old"

    with pytest.raises(TypeError):
        st.put_bytes("a/b/c.0", object())  # type: ignore[arg-type]
    assert (tmp_path / "x/a/b/c.0").read_bytes() == b"old"
    assert [f for f in os.listdir(tmp_path / "x/a/b")] == ["c.0"]  # no temp file left
    leftover = tmp_path / "x/a/b" / (".c.0." + "ab" * 16 + ".tmp")
    leftover.write_bytes(b"torn")
    assert sweep_temp_files(tmp_path / "x") == [leftover]
    assert not leftover.exists()


def test_writer_sweeps_temp_files_of_a_killed_writer(tmp_path):
    p = tmp_path / "w.zarr"
    with writer(p) as w:
        w.append_batch(rows(range(3)))
    torn = p / "data" / "obs" / "observation" / (".c.0.0." + "0f" * 16 + ".tmp")
    torn.write_bytes(b"x" * 7)
    with writer(p) as w:
        assert w.swept == [torn]
    assert not torn.exists()
