"""bench/graph.py keeps working: its --quick run (real graph processes on this test process's
ROS_DOMAIN_ID) prints the JSON that docs/benchmarks.md quotes.

Only the shape and the no-loss property of the ingest are checked, never a rate or a latency
(a timed assertion on a shared machine would flake).
"""
import json
import os
import signal
import subprocess
import sys
import time
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


def _graph_nodes(domain: int) -> list[int]:
    """PIDs of robot_rl node processes on ``domain`` (read from /proc: the bench starts them in
    their own sessions, so they are not in its process group)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            if b"robot_rl.ros_nodes." not in cmd:
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ROS_DOMAIN_ID={domain}".encode() in env:
            pids.append(int(d.name))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_bench_takes_its_graph_down(sig, ros_domain_id):
    """SIGTERM stops the graph like Ctrl-C; SIGKILL takes it down too (PR_SET_PDEATHSIG). A
    killed bench once left its graph running (at SCHED_FIFO in the --rt cases)."""
    proc = subprocess.Popen([sys.executable, str(BENCH), "--quick", "--parts", "lockstep"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_graph_nodes(ros_domain_id)) < 4:  # sim, safety, actor, replay
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the bench's graph did not come up"
            time.sleep(0.5)
        proc.send_signal(sig)
        assert proc.wait(60) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (left := _graph_nodes(ros_domain_id)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"graph nodes left running after {sig.name}: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _graph_nodes(ros_domain_id):
            os.kill(pid, signal.SIGKILL)
