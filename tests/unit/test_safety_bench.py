"""bench/safety.py keeps working: its --quick run prints the JSON that docs/benchmarks.md and
docs/safety.md quote, with no fuzz violation. Timings are only checked for shape (a timed
assertion on a shared machine would flake)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "safety.py"


def test_quick_run_prints_one_json_object_without_violations():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else
    assert result["benchmark"] == "safety"
    assert result["violations_total"] == 0
    fz = result["fuzz"]
    assert fz["proposals"] == 5000 and fz["feasible_pass"]["proposals"] == 5000
    assert set(fz["counts"]) == {
        "NONFINITE", "BAD_LENGTH", "STALE_STATE", "WATCHDOG", "ESTOP", "VELOCITY",
        "ACCELERATION", "JERK", "POSITION", "WORKSPACE", "EE_SPEED", "JOINT_ORDER"}
    assert fz["counts"]["NONFINITE"] > 0 and fz["counts"]["POSITION"] > 0
    assert result["rollouts"]["worst_joint_excess_rad"] <= 1e-9
    timing = result["timing"]
    for key in ("scalar_1khz_full_us", "scalar_1khz_joint_only_us", "scalar_20hz_full_us"):
        assert timing[key]["median"] > 0 and timing[key]["p99"] >= timing[key]["median"]
    assert {"python", "numpy", "cores", "load_avg_1min", "git_commit", "date"} <= result.keys()
