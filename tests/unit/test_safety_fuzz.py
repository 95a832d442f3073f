"""The >= 1,000,000-proposal vectorised fuzz of the safety core (slow; `make test-all`).

Runs bench/safety.py's fuzz in-process: every output keeps the hard limits and the other
invariants (see that file), proposals drawn inside the admissible interval pass unchanged, and
closed-loop rollouts never pass a joint margin. docs/safety.md records a run's counts.
"""
import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "safety.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_safety", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_million_proposals_keep_every_invariant():
    bench = _bench()
    res = bench.fuzz(1_000_000, seed=1)
    assert res["proposals"] == 1_000_000
    assert sum(res["violations"].values()) == 0, res["violations"]
    assert sum(res["feasible_pass"]["violations"].values()) == 0, res["feasible_pass"]
    for rule in ("NONFINITE", "ESTOP", "VELOCITY", "ACCELERATION", "JERK", "POSITION",
                 "WORKSPACE", "EE_SPEED"):
        assert res["counts"][rule] > 0, rule


def test_closed_loop_rollouts_never_pass_a_joint_margin():
    res = _bench().rollouts(rows=128, seconds=1.0, seed=1, cartesian_rows=16)
    assert sum(res["violations"].values()) == 0, res["violations"]
    assert res["worst_joint_excess_rad"] <= 1e-9
