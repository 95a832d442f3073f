#!/usr/bin/env python3
"""Cost of the safety core per command, and the >= 1,000,000-proposal vectorised fuzz.

Prints one JSON object on stdout.

* **timing** (default): ``SafetyFilter.step`` — what the safety node calls every output period
  — timed call by call (``perf_counter_ns``) on the Panda profile:

  - ``scalar_1khz_full_us``: 1 kHz output, a new random proposal every 50 periods (20 Hz policy)
    and interpolation in between, workspace box + EE speed limit on (forward kinematics and the
    Jacobian every call);
  - ``scalar_1khz_joint_only_us``: the same without the Cartesian rules (no kinematics);
  - ``scalar_20hz_full_us``: 20 Hz output, a fresh random proposal every period.

  Each reports median, p99 and mean in µs. Also ``batch_per_row_us`` (``step_batch``, per row,
  with and without kinematics) for scale.
* **fuzz** (``--fuzz N``): ``N`` random proposals through ``SafetyCore.step_batch`` in chunks
  (both profiles; 20 Hz, 100 Hz and 1 kHz): states the filter can reach, incl. at the
  velocity/acceleration limits; positions inside, on and up to 0.5 rad beyond the margins;
  proposals normal, tiny, huge (1e300), NaN/inf; held targets; e-stops. Every output is checked
  (hard limits, the new state stays viable, inside the admissible interval, ``rules == 0`` <=>
  unchanged, fresh joint-only clamps sit on the bound); a second pass sends proposals drawn
  inside the admissible interval, which must pass unchanged. Then rollouts with the arm tracking
  the commands check that no joint passes its margin, and measure how far the EE leaves the box
  and overshoots the EE speed limit. Reports counts per rule, totals, violations and run time.

    python bench/safety.py                 # timing (about a minute)
    python bench/safety.py --fuzz 1000000  # the fuzz quoted in docs/safety.md
    python bench/safety.py --quick         # a few seconds: both, small (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robot_rl.config import Box3, RobotProfile, SafetyConfig  # noqa: E402
from robot_rl.safety import RULES, Rule, SafetyCore, SafetyFilter, ramp_gain  # noqa: E402

HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854])
HOME_EE = (0.3068903521084, 0.0, 0.4852803385506)  # grasp target at HOME (kinematics tests)
#: rollouts with the Cartesian rules run in a 10 cm box around the home EE, so faces are hit
TIGHT_BOX = Box3(low=tuple(x - 0.05 for x in HOME_EE), high=tuple(x + 0.05 for x in HOME_EE))
TARGET_ZERO = int(Rule.NONFINITE | Rule.BAD_LENGTH | Rule.STALE_STATE | Rule.WATCHDOG
                  | Rule.ESTOP | Rule.JOINT_ORDER)
CARTESIAN = int(Rule.WORKSPACE | Rule.EE_SPEED)
JOINT_ONLY = dict(ee_speed_max=None, workspace_enabled=False)


# --------------------------------------------------------------------------- timing


def _stats(ns: list[int]) -> dict[str, float]:
    us = np.asarray(ns, dtype=float) / 1e3
    return {"median": round(float(np.median(us)), 2), "p99": round(float(np.quantile(us, 0.99)), 2),
            "mean": round(float(us.mean()), 2)}


def time_filter(calls: int, *, hz: float, hold: int, cartesian: bool, seed: int = 0) -> dict:
    """Per-call cost of ``SafetyFilter.step`` on a simulated arm that tracks its commands.

    Side by side, call by call (order alternating), on the same inputs: ``numpy_path`` — the
    same maths through ``SafetyCore.step_batch`` on one row (numpy on 7-element arrays, the
    obvious way to write it) — and ``kinematics_only`` — the one forward-kinematics + Jacobian
    call the Cartesian rules need (the floor of the "full" case).
    """
    prof = RobotProfile(name="panda")
    cfg = SafetyConfig(output_hz=hz, **({} if cartesian else JOINT_ONLY))
    filt = SafetyFilter(prof, cfg, control_hz=20)
    core = filt.core
    kin = core.kinematics
    rng = np.random.default_rng(seed)
    v_max = filt.params.v_max
    q = HOME.copy()
    dt = filt.params.dt
    ns, ns_np, ns_kin = [], [], []
    modified = 0
    target = np.zeros(7)
    for k in range(calls):
        prop = rng.uniform(-0.6, 0.6, 7) * v_max if k % hold == 0 else None
        if prop is not None:
            target = prop
        now = k * dt
        args = (target[None], filt.v_prev[None], filt.a_prev[None], q[None])
        held = prop is None
        for first in ((True, False) if k % 2 else (False, True)):
            if first:
                t0 = time.perf_counter_ns()
                cmd, rep = filt.step(now, prop, q=q, state_stamp=now)
                ns.append(time.perf_counter_ns() - t0)
            else:
                t0 = time.perf_counter_ns()
                core.step_batch(*args, held=held)
                ns_np.append(time.perf_counter_ns() - t0)
        if kin is not None:
            t0 = time.perf_counter_ns()
            kin.ee_position_and_jacobian(q)
            ns_kin.append(time.perf_counter_ns() - t0)
        modified += bool(rep.rules)
        q = q + cmd * dt
        if k % 2000 == 1999:  # keep the random walk near home, inside the box
            q = HOME.copy()
            filt.reset()
    skip = min(200, calls // 10)  # warm-up
    out = _stats(ns[skip:])
    out["calls"] = calls
    out["modified_fraction"] = round(modified / calls, 3)
    out["numpy_path"] = _stats(ns_np[skip:])
    if ns_kin:
        out["kinematics_only"] = _stats(ns_kin[skip:])
    return out


def time_batch(rows: int, *, cartesian: bool, seed: int = 0) -> float:
    prof = RobotProfile(name="panda")
    core = SafetyCore.from_config(prof, SafetyConfig(**({} if cartesian else JOINT_ONLY)),
                                  control_hz=20, output_hz=1000)
    rng = np.random.default_rng(seed)
    q = HOME + rng.uniform(-0.3, 0.3, (rows, 7))
    t = rng.uniform(-1, 1, (rows, 7))
    z = np.zeros((rows, 7))
    t0 = time.perf_counter()
    core.step_batch(t, z, z, q)
    return round((time.perf_counter() - t0) / rows * 1e6, 3)


# --------------------------------------------------------------------------- fuzz


def _states(rng, p, B):
    """Previous outputs the filter can reach (10 % exactly at the limits) and positions."""
    n = p.n_joints
    a = rng.uniform(-1, 1, (B, n))
    edge = rng.random((B, n)) < 0.1
    a = np.where(edge, rng.choice([-1.0, 0.0, 1.0], (B, n)), a) * p.a_max
    lo = -p.v_max + ramp_gain(-a, p.tau, p.dt)
    hi = p.v_max - ramp_gain(a, p.tau, p.dt)
    u = rng.random((B, n))
    u = np.where(rng.random((B, n)) < 0.1, rng.choice([0.0, 1.0], (B, n)), u)
    v = np.minimum(np.maximum(lo + u * (hi - lo), lo), hi)
    kind = rng.choice(4, B, p=[0.4, 0.3, 0.15, 0.15])[:, None]
    w = rng.random((B, n))
    inside = p.q_lower + w * (p.q_upper - p.q_lower)
    edge_q = np.where(w > 0.5, p.q_upper, p.q_lower)
    out = rng.uniform(0, 0.5, (B, n))
    beyond = np.where(w > 0.5, p.q_upper + out, p.q_lower - out)
    home = HOME + rng.uniform(-0.3, 0.3, (B, n))
    q = np.select([kind == 0, kind == 1, kind == 2], [home, inside, edge_q], beyond)
    return v, a, q


def _proposals(rng, p, B):
    n = p.n_joints
    scale = rng.choice([0.01, 0.3, 1.0, 3.0], (B, 1))
    t = rng.uniform(-1.5, 1.5, (B, n)) * p.v_max * scale
    r = rng.random(B)
    bad = r < 0.05  # non-finite entries
    idx = rng.integers(0, n, B)
    t[bad, idx[bad]] = rng.choice([np.nan, np.inf, -np.inf], bad.sum())
    huge = (r >= 0.05) & (r < 0.07)
    t[huge] = rng.choice([1e300, -1e300, 1e30], (huge.sum(), n))
    return t


class _Tally:
    def __init__(self) -> None:
        self.counts = {r.name: 0 for r in RULES}
        self.total = 0
        self.modified = 0
        self.violations: dict[str, int] = {}

    def add(self, rules: np.ndarray) -> None:
        self.total += rules.size
        self.modified += int(np.count_nonzero(rules))
        for r in RULES:
            self.counts[r.name] += int(np.count_nonzero(rules & int(r)))

    def check(self, name: str, ok: np.ndarray) -> None:
        bad = int(np.count_nonzero(~ok))
        self.violations[name] = self.violations.get(name, 0) + bad


def _check_hard(tally, p, v, a, out) -> None:
    acc = (out - v) / p.dt
    tol = 1e-9 * p.a_max + 8 * np.finfo(float).eps * (np.abs(v) + np.abs(out) + 1.0) / p.dt
    tally.check("velocity", (np.abs(out) <= p.v_max).all(axis=1))
    tally.check("acceleration", (np.abs(acc) <= p.a_max + tol).all(axis=1))
    tally.check("jerk", (np.abs(acc - a) <= p.tau + tol).all(axis=1))
    acc = np.clip(acc, -p.a_max, p.a_max)
    viable = ((out + ramp_gain(acc, p.tau, p.dt) <= p.v_max * (1 + 1e-9) + 1e-9)
              & (-out + ramp_gain(-acc, p.tau, p.dt) <= p.v_max * (1 + 1e-9) + 1e-9))
    tally.check("viable_state", viable.all(axis=1))


def fuzz(n_total: int, *, seed: int = 0, chunk: int = 25_000) -> dict:
    """Random-state fuzz of ``n_total`` proposals plus a feasible-proposal pass."""
    rng = np.random.default_rng(seed)
    cores = {}
    tally = _Tally()
    feasible = _Tally()
    t0 = time.perf_counter()
    done = 0
    k = 0
    while done < n_total:
        B = min(chunk, n_total - done)
        name = ("panda", "fr3")[k % 2]
        hz = (20.0, 100.0, 1000.0)[(k // 2) % 3]
        k += 1
        key = (name, hz)
        if key not in cores:
            prof = RobotProfile(name=name)
            cores[key] = (SafetyCore.from_config(prof, SafetyConfig(), control_hz=20, output_hz=hz),
                          SafetyCore.from_config(prof, SafetyConfig(**JOINT_ONLY), control_hz=20,
                                                 output_hz=hz))
        core, core_j = cores[key]
        p = core.params
        v, a, q = _states(rng, p, B)
        t = _proposals(rng, p, B)
        held = rng.random(B) < 0.3
        estop = rng.random(B) < 0.02
        out, rep = core.step_batch(t, v, a, q, held=held, estop=estop)
        tally.add(rep.rules)
        _check_hard(tally, p, v, a, out)
        tally.check("inside_interval", ((rep.lower <= out) & (out <= rep.upper)).all(axis=1))
        same = (out == t).all(axis=1)
        tally.check("no_rule_means_unchanged", ~(rep.rules == 0) | same)
        fresh = ~held & (rep.rules & (TARGET_ZERO | CARTESIAN) == 0)
        clamp = np.minimum(np.maximum(t, rep.lower), rep.upper)
        tally.check("clamped_onto_the_bound", ~fresh | (out == clamp).all(axis=1))
        # second pass: proposals drawn inside the admissible interval pass unchanged
        u = rng.random((B, p.n_joints))
        inside = np.minimum(np.maximum(rep.lower + u * (rep.upper - rep.lower), rep.lower),
                            rep.upper)
        out2, rep2 = core_j.step_batch(inside, v, a, q)
        feasible.add(rep2.rules)
        _check_hard(feasible, p, v, a, out2)
        feasible.check("feasible_passes_unchanged", (out2 == inside).all(axis=1))
        conflict = (rep2.lower == rep2.upper).any(axis=1)
        feasible.check("feasible_no_rule", (rep2.rules == 0) | ((rep2.rules == int(Rule.POSITION))
                                                                & conflict))
        done += B
    return {
        "proposals": tally.total,
        "modified": tally.modified,
        "counts": tally.counts,
        "violations": tally.violations,
        "feasible_pass": {"proposals": feasible.total, "modified": feasible.modified,
                          "counts": {k: v for k, v in feasible.counts.items() if v},
                          "violations": feasible.violations},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def rollouts(*, rows: int, seconds: float, seed: int = 0, cartesian_rows: int = 32) -> dict:
    """Closed loop (the arm tracks the commands): joint margins, EE box and EE speed."""
    rng = np.random.default_rng(seed)
    out: dict = {"proposals": 0, "counts": {r.name: 0 for r in RULES}, "violations": {}}
    t0 = time.perf_counter()
    worst_margin = -np.inf
    box_excess = []
    ee_over = []
    ee_frac = []
    for name in ("panda", "fr3"):
        prof = RobotProfile(name=name)
        for hz in (20.0, 1000.0):
            for cart in (False, True):
                cfg = SafetyConfig(workspace=TIGHT_BOX) if cart else SafetyConfig(**JOINT_ONLY)
                core = SafetyCore.from_config(prof, cfg, control_hz=20, output_hz=hz)
                p = core.params
                B = cartesian_rows if cart else rows
                steps = int(seconds * hz)
                if cart:  # start inside the tight box
                    q = HOME + rng.uniform(-0.03, 0.03, (B, 7))
                else:
                    q = rng.uniform(p.q_lower, p.q_upper, (B, 7))
                v = np.zeros((B, 7))
                a = np.zeros((B, 7))
                hold = max(1, int(hz / 20))
                tally = _Tally()
                ws_worst = -np.inf
                speeds = []
                for k in range(steps):
                    if k % hold == 0:
                        t = (rng.uniform(-1.5, 1.5, (B, 7)) * p.v_max
                             * rng.choice([0.1, 0.5, 1.0, 3.0], (B, 1)))
                    cmd, rep = core.step_batch(t, v, a, q, held=k % hold != 0)
                    tally.add(rep.rules)
                    _check_hard(tally, p, v, a, cmd)
                    if cart:
                        for b in range(B):
                            pos, jac = core.kinematics.ee_position_and_jacobian(q[b])
                            speeds.append(float(np.linalg.norm(jac[:3] @ cmd[b])))
                    a = (cmd - v) / p.dt
                    v = cmd
                    q = q + v * p.dt
                    worst_margin = max(worst_margin, float((q - p.q_upper).max()),
                                       float((p.q_lower - q).max()))
                    if cart:
                        ee = np.array([core.kinematics.ee_position(x) for x in q])
                        ws_worst = max(ws_worst, float((ee - p.workspace_high).max()),
                                       float((p.workspace_low - ee).max()))
                tally.check("joint_margin", np.array([worst_margin <= 1e-9]))
                out["proposals"] += tally.total
                for r in RULES:
                    out["counts"][r.name] += tally.counts[r.name]
                for key, val in tally.violations.items():
                    out["violations"][key] = out["violations"].get(key, 0) + val
                if cart:
                    s = np.asarray(speeds)
                    box_excess.append({"profile": name, "hz": hz, "box_excess_m": ws_worst})
                    ee_over.append({"profile": name, "hz": hz, "max_m_s": round(float(s.max()), 4),
                                    "p99_9_m_s": round(float(np.quantile(s, 0.999)), 4)})
                    ee_frac.append(float((s > 0.2 * 1.01).mean()))
    out["worst_joint_excess_rad"] = worst_margin  # <= 0: never past a margin
    out["ee_box"] = box_excess  # > 0: how far (m) the EE got outside the box (first-order rule)
    out["ee_speed"] = ee_over
    out["ee_speed_over_1pct_fraction"] = round(float(np.mean(ee_frac)), 6)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# --------------------------------------------------------------------------- main


def _machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "python": platform.python_version(), "numpy": np.__version__,
        "cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_avg_1min": round(os.getloadavg()[0], 2), "git_commit": commit,
        "date": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small timing and fuzz (CI)")
    ap.add_argument("--fuzz", type=int, default=0, metavar="N",
                    help="run the fuzz with N random proposals (plus rollouts)")
    ap.add_argument("--calls", type=int, default=20_000, help="timed calls per timing case")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    result: dict = {"benchmark": "safety", "unit": "us per command"}
    if args.fuzz or args.quick:
        n = 5_000 if args.quick and not args.fuzz else args.fuzz
        result["fuzz"] = fuzz(n, seed=args.seed, chunk=2_500 if args.quick else 25_000)
        result["rollouts"] = rollouts(rows=16 if args.quick else 256,
                                      seconds=0.2 if args.quick else 2.0, seed=args.seed,
                                      cartesian_rows=4 if args.quick else 32)
        viol = sum(result["fuzz"]["violations"].values())
        viol += sum(result["fuzz"]["feasible_pass"]["violations"].values())
        viol += sum(result["rollouts"]["violations"].values())
        result["violations_total"] = viol
    if not args.fuzz or args.quick:
        calls = 600 if args.quick else args.calls
        result["timing"] = {
            "scalar_1khz_full_us": time_filter(calls, hz=1000.0, hold=50, cartesian=True),
            "scalar_1khz_joint_only_us": time_filter(calls, hz=1000.0, hold=50, cartesian=False),
            "scalar_20hz_full_us": time_filter(max(calls // 4, 200), hz=20.0, hold=1,
                                               cartesian=True),
            "batch_per_row_us": {
                "full": time_batch(2_000 if args.quick else 50_000, cartesian=True),
                "joint_only": time_batch(2_000 if args.quick else 50_000, cartesian=False),
            },
        }
    result.update(_machine())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
