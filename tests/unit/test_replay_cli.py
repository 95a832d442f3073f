"""``robot-rl replay info`` / ``verify`` on real stores, intact and damaged."""
import json

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.config import ReplayConfig
from robot_rl.replay import ReplayWriter, Source
from robot_rl.replay.synthetic import make_specs, synthetic_rows

pytestmark = pytest.mark.unit

CFG = ReplayConfig(chunk_rows=16, fsync=False)


@pytest.fixture()
def store(tmp_path):
    p = tmp_path / "replay.zarr"
    obs, act = make_specs(4, 2)
    with ReplayWriter(p, obs, act, CFG) as w:
        w.append_batch(synthetic_rows(range(50), obs_dim=4, act_dim=2, episode_len=10))
        w.append_batch(synthetic_rows(range(20), obs_dim=4, act_dim=2, robot_id=1,
                                      actor_session=9, episode_len=10, source=Source.DEMO,
                                      episode_base=500))
        w.append_batch(synthetic_rows(range(5), obs_dim=4, act_dim=2, robot_id=1,
                                      actor_session=10, episode_len=5,
                                      source=Source.INTERVENTION, episode_base=900))
    return p


def test_info_counts_sources_episodes_robots(store, capsys):
    assert main(["replay", "info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "commit point: 75 rows" in out
    assert "rows by source: policy 50, demo 20, intervention 5" in out
    assert "episodes: 8 (terminated 0, truncated 8); robots: 0: 50 rows, 1: 25 rows" in out
    assert "observation: 4 (o0, o1, o2, o3)" in out and "writer: none" in out
    assert main(["replay", "info", "--json", str(store)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["commit"]["rows"] == 75 and info["kept_forever_rows"] == 25
    assert info["actor_sessions"] == 3 and info["chunk_rows"] == 16
    assert info["size_on_disk_bytes"] > 75 * (4 + 4 + 2) * 4


def test_verify_passes_an_intact_store_and_notes_an_open_writer(store, capsys):
    assert main(["replay", "verify", str(store)]) == 0
    assert "ok: " in capsys.readouterr().out
    obs, act = make_specs(4, 2)
    with ReplayWriter(store, obs, act, CFG):
        assert main(["replay", "verify", str(store)]) == 0
        assert "note: a writer is open: pid" in capsys.readouterr().out
        assert main(["replay", "info", str(store)]) == 0
        assert "writer: open: pid" in capsys.readouterr().out


def test_verify_finds_a_truncated_chunk(store, capsys):
    f = store / "data" / "reward" / "c.1"
    f.write_bytes(f.read_bytes()[:10])
    assert main(["replay", "verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: column reward: chunk c.1 has 10 bytes, expected 64" in out
    assert "DAMAGED" in out


def test_verify_finds_duplicate_keys_and_bad_values(store, capsys):
    seq = store / "data" / "seq" / "c.0"
    a = np.frombuffer(seq.read_bytes(), "<u8").copy()
    a[3] = a[2]
    seq.write_bytes(a.tobytes())
    obs = store / "data" / "obs" / "observation" / "c.0.0"
    o = np.frombuffer(obs.read_bytes(), "<f4").copy()
    o[5] = np.nan
    obs.write_bytes(o.tobytes())
    assert main(["replay", "verify", "--json", str(store)]) == 1
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is False
    assert "column observation: non-finite value in committed row 1" in res["problems"]
    assert any(p.startswith("1 duplicated (robot_id, actor_session, seq) keys, e.g. (0, 1, 2) "
                            "in rows [2, 3]") for p in res["problems"])


def test_verify_finds_a_marker_beyond_the_arrays(store, capsys):
    marker = store / "commit" / "zarr.json"
    doc = json.loads(marker.read_text())
    doc["attributes"]["length"] = 10_000
    marker.write_text(json.dumps(doc))
    assert main(["replay", "verify", str(store)]) == 1
    assert "the commit marker says 10000 rows are committed" in capsys.readouterr().out


def test_not_a_store_is_a_usage_error(tmp_path, capsys):
    assert main(["replay", "verify", str(tmp_path)]) == 2
    assert "is not a replay store" in capsys.readouterr().err
    assert main(["replay", "info", str(tmp_path / "missing")]) == 2
    assert main(["replay"]) == 2
