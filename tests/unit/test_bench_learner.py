"""bench/learner.py keeps working: a --quick run prints the JSON the docs quote.

Only the shape of the result and the FLOP count are checked, never the speed ratio (a timed
assertion on a shared machine would flake). Without stable-baselines3 the SB3 side is skipped
with a note.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "learner.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_learner", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_td3_flop_count_written_out():
    f = load_bench().td3_update_flops(2)
    # actor 20-256-256-7, critics 27-256-256-1, batch 256, 2 FLOPs per multiply-add
    assert f["target"] == 111_542_272  # actor' fwd + 2 critics' fwd
    assert f["critic"] == 216_268_800  # fwd + weight grads + input grads (not the first layer)
    assert f["actor"] == 183_107_584
    assert f["per_update"] == 111_542_272 + 216_268_800 + 183_107_584 / 2


def test_quick_run_prints_one_json_object():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--updates", "4", "--repeats",
                           "1", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["benchmark"] == "learner_td3_updates" and r["rows"] == 20_000
    assert r["ours_updates_per_s"] > 0 and r["ideal_updates_per_s"] > 0
    assert r["batch"] == 256 and r["hidden"] == [256, 256] and r["policy_delay"] == 2
    assert {"git_commit", "packages", "machine", "gemm_gflops_256"} <= r.keys()
    if importlib.util.find_spec("stable_baselines3") is None:
        assert r["sb3_updates_per_s"] is None and "not installed" in r["note"]
    else:
        assert r["sb3_updates_per_s"] > 0 and r["ratio_ours_over_sb3"] > 0
