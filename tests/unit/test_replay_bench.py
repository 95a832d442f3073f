"""bench/replay.py keeps working: its --quick run prints the JSON that docs/benchmarks.md quotes.

Only the shape of the result and the correctness flags are checked, never a speed (a timed
assertion on a shared machine would flake).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "replay.py"


def test_quick_run_prints_one_json_object(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--tmp", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else
    assert res["benchmark"] == "replay" and res["quick"] is True
    assert {"packages", "machine", "git_commit", "date", "load_avg_1min"} <= res.keys()
    assert res["machine"]["cores"] >= 1 and "gpu" in res["machine"]
    ingest = res["ingest"]
    assert [(r["transitions_per_call"], r["fsync"]) for r in ingest] == [
        (1, True), (1, False), (64, False), (64, True)]
    assert all(r["transitions_per_s"] > 0 for r in ingest)
    assert res["load"]["rows"] == 20_000 and res["load"]["reopen_and_load_s"] > 0
    assert res["load"]["peak_rss_mib_per_million_rows"] > 0
    s = res["sample"]
    assert s["batch_size"] == 256 and s["demo_fraction"] == 0.5 and s["demo_rows"] == 960
    for name in ("uniform", "uniform_nstep3", "prioritized", "prioritized_nstep3"):
        assert s[name]["batches_per_s"] > 0 and s[name]["ratio_to_ring"] > 0
    assert set(res["goals"]) == {"uniform_ratio_ge_0.9", "ingest_ge_100k_per_s_64_fsync",
                                 "reopen_and_load_le_3s"}
    assert not list(tmp_path.iterdir())  # the temporary stores are gone
