"""`make sim`'s recipe keeps its headline result (issue 16; slow: about 3 minutes).

`robot-rl up sim --config launch/config/sim_reach.yaml --until-success 0.9`, seed 0, as `make sim`
runs it (CrossQ, gamma 0.95, replay.policy_action: proposed; two robots in lockstep). Measured in
docs/results.md: 94 % at 8,040 env steps (seeds 1, 2: 100 % and 94 % at 8k). Guarded here in env
steps, never in time: the learner's evaluation must reach 90 % by 12k env steps. The store keeps
the proposals (its attribute says so) and marks the rows the safety node changed.
"""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def test_make_sim_recipe_reaches_90_percent_within_12k_env_steps(tmp_path):
    cmd = [str(Path(sys.executable).parent / "robot-rl"), "up", "sim", "--config",
           str(REPO / "launch" / "config" / "sim_reach.yaml"), "--name", "msim",
           "--until-success", "0.9", "--max-env-steps", "12500", "--max-time", "840",
           "run.seed=0", f"run.root={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=880, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / "msim" / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    hit = [int(r["env_steps"]) for r in rows if float(r["success_rate"]) >= 0.9]
    assert hit and hit[0] <= 12_000, [(r["env_steps"], r["success_rate"]) for r in rows]

    import numpy as np

    from robot_rl.replay import ReplayReader

    store = ReplayReader(tmp_path / "msim" / "replay.zarr")
    assert store.layout.policy_action == "proposed"
    cols = store.read(0, len(store), ("source", "safety_rules"))
    assert (cols["source"] == 0).sum() >= hit[0] - 50  # (rows of the last steps may be in flight)
    assert np.count_nonzero(cols["safety_rules"]) > 0
