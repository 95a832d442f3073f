"""bench/sim_steps.py keeps working: its --quick run prints the JSON the docs quote.

Only the shape of the result is checked, and that both sides simulated the same states; never
the speed ratio (a timed assertion on a shared machine would flake).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sim_steps.py"

RATES = ("env_steps_per_s", "raw_steps_per_s", "env_steps_per_cpu_s", "raw_steps_per_cpu_s")
KEYS = {
    "benchmark", "unit", "steps", "repeats", "episodes_per_repeat", *RATES,
    "ratio_env_over_raw", "overhead_pct", "overhead_pct_cpu_time", "env_steps_per_s_all",
    "raw_steps_per_s_all", "states_identical", "load_avg_1min", "task", "action_mode",
    "control_hz", "substeps", "physics_dt", "episode_steps", "packages", "machine", "git_commit",
    "date",
}


@pytest.mark.parametrize("task", ["reach", "push"])
def test_quick_run_prints_one_json_object(task):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--task", task],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else

    assert KEYS <= result.keys(), f"missing: {sorted(KEYS - result.keys())}"
    assert result["benchmark"] == "sim_steps" and result["task"] == task
    assert result["control_hz"] == 20.0 and result["substeps"] == 12
    assert result["steps"] == 200 and result["repeats"] == 2
    for key in RATES:
        assert result[key] > 0, key
    assert len(result["env_steps_per_s_all"]) == len(result["raw_steps_per_s_all"]) == 2
    assert result["ratio_env_over_raw"] > 0
    # Deterministic, not timed: the raw replay went through the env's states bit for bit.
    assert result["states_identical"] is True


def test_bad_arguments_are_refused():
    proc = subprocess.run([sys.executable, str(BENCH), "--steps", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--steps and --repeats must be >= 1" in proc.stderr
