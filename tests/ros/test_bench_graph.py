"""bench/graph.py keeps working: its --quick run (real graph processes on this test process's
ROS_DOMAIN_ID) prints the JSON that docs/benchmarks.md quotes.

Only the shape and the no-loss property of the ingest are checked, never a rate or a latency
(a timed assertion on a shared machine would flake).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

BENCH = Path(__file__).resolve().parents[2] / "bench" / "graph.py"


def test_quick_run_prints_one_json_object():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                          text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["bench"] == "graph" and res["quick"] is True and res["cpus"] >= 1
    assert [(c["learner"], c["learner_gate"]) for c in res["lockstep"]] == [(False, False),
                                                                          (True, False)]
    for c in res["lockstep"]:
        assert c["env_steps_per_s_total"] > 0 and c["robots"] == 1
        assert set(c["env_steps_per_s_per_robot"]) == {"/actor_node"}
    assert [c["learner"] for c in res["latency"]] == [False, True]
    for c in res["latency"]:
        assert c["samples"] > 10 and 0 < c["p50_ms"] <= c["p99_ms"] <= c["p99_9_ms"] <= c["max_ms"]
    ing = res["ingest"]
    assert ing["lost"] == 0 and ing["duplicated"] == 0 and ing["stored_rows"] == ing["rows"]
    assert ing["transitions_per_s"] > 0
