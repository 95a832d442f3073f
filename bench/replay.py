#!/usr/bin/env python3
"""Replay benchmark: durable ingest, reopen + load, and sampling against a plain numpy ring.

Prints one JSON object on stdout; everything is measured in the same run, on the same store:

* **ingest** -- transitions/s through the real ``ReplayWriter`` path (validation,
  deduplication, whole-chunk writes, atomic commits), fed one transition per ``append`` call and
  64 per ``append_batch`` call, with ``maybe_flush()`` after every call as the replay node's
  timer would (flush interval 0.5 s, a commit at the latest every 65 536 rows). Timed up to the
  final commit, which is included. Run with ``fsync`` on (the default: files, directories and the
  marker are fsynced before a commit counts) and off (atomic renames only: safe against a killed
  process, not against power loss); ``fsync`` says which. The 64-row run with fsync on builds
  the store used below: ``--rows`` rows (20-d observation, 7-d action, float32), every 20th batch
  a demo batch (5% demo rows). ``transitions_per_cpu_s`` divides by this process's CPU time
  instead (less disturbed by other load; it leaves out the time spent waiting for fsync).
* **layout** -- the cost of schema 2's one array per observation field: 64-row ingest into a
  store whose 20-d observation is cut into reach's fields (q 7, dq 7, ee_pos 3, goal 3: 21 arrays)
  against the same rows with the flat observation array (15 arrays, as schema 1 had), fsync on
  and off, alternating per repetition; ``ratio_fields_to_flat`` (median) < 1 means slower. The
  stores above are cut into these fields too.
* **load** -- in a fresh process: reopening the store and mirroring every committed row into
  RAM (``ReplayMirror.refresh``, capacity = all rows; includes linking episodes), the resulting
  peak RSS growth per million rows, and reopening it as the writer (dedup state rebuilt from the
  committed columns).
* **sample** -- batches/s of ``ReplaySampler.sample(256)`` (torch tensors out, demo fraction
  0.5), uniform and prioritized, n = 1 and n = 3 (prioritized: each batch followed by
  ``update_priorities`` for its 256 rows, as every learner step does -- the update is timed
  too), against a plain numpy ring buffer holding the
  same rows that draws uniform indices as ours does (``floor(U * n)``, about twice as fast as
  ``Generator.integers``) and gathers the same tensors with the faster numpy gather for each
  (``np.take`` for the (B, dim) columns, indexing for 1-D ones, as ours does): the ratio is
  the cost of the pools, handles and bookkeeping alone -- ``ratio_to_ring`` = ours / ring in wall time, per repetition, median
  (``ratio_to_ring_cpu_time``: the same in process CPU time, less sensitive to other load on a
  shared machine). The two alternate in every repetition so that drift falls on both.

    python bench/replay.py                 # 1M rows (about a minute or two)
    python bench/replay.py --quick         # 20k rows, seconds (CI: tests/unit/test_replay_bench.py)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 20, 7
BATCH = 256
GAMMA = 0.99


# -------------------------------------------------------------------------- data


def make_rows(n: int) -> dict[str, np.ndarray]:
    """``n`` rows in batches of 64, every 20th batch a demo batch (robot 1, its own session)."""
    from robot_rl.replay.schema import Source
    from robot_rl.replay.synthetic import synthetic_rows

    n_batches = -(-n // 64)
    demo_batch = (np.arange(n_batches) % 20) == 19
    n_demo = int(demo_batch.sum()) * 64
    pol = synthetic_rows(range(n - n_demo), obs_dim=OBS_DIM, act_dim=ACT_DIM, actor_session=1)
    dem = synthetic_rows(range(n_demo), obs_dim=OBS_DIM, act_dim=ACT_DIM, robot_id=1,
                         actor_session=2, source=Source.DEMO, episode_base=10**9)
    order = np.empty(n, np.int64)
    p = d = 0
    pos = 0
    for b in range(n_batches):
        k = min(64, n - pos)
        if demo_batch[b]:
            order[pos:pos + k] = (n - n_demo) + d + np.arange(k)
            d += k
        else:
            order[pos:pos + k] = p + np.arange(k)
            p += k
        pos += k
    return {k: np.concatenate([pol[k], dem[k]])[order] for k in pol}


# -------------------------------------------------------------------------- ingest


#: The observation's fields in the store (reach's layout: schema 2 keeps one array per field).
FIELDS = [("q", 7, "proprio"), ("dq", 7, "proprio"), ("ee_pos", 3, "achieved_goal"),
          ("goal", 3, "desired_goal")]


def specs(layout: str = "fields"):
    """``(observation, action)`` specs: the observation cut into :data:`FIELDS` (``fields``: one
    array per field on disk) or one flat vector (``flat``: one array, as schema 1 had)."""
    from robot_rl.replay.synthetic import make_specs
    from robot_rl.specs import ObservationSpec

    obs, act = make_specs(OBS_DIM, ACT_DIM)
    return (ObservationSpec.from_flat(obs, FIELDS) if layout == "fields" else obs), act


def ingest(path: Path, rows: dict[str, np.ndarray], per_call: int, fsync: bool,
           layout: str = "fields") -> dict[str, Any]:
    from robot_rl.config import ReplayConfig
    from robot_rl.replay import ReplayWriter

    obs, act = specs(layout)
    n = len(rows["seq"])
    w = ReplayWriter(path, obs, act, ReplayConfig(fsync=fsync))
    if per_call == 1:
        # what a ROS callback hands over: numpy vectors, Python scalars
        o, a, no = rows["observation"], rows["action"], rows["next_observation"]
        sc = {k: rows[k].tolist() for k in ("reward", "terminated", "truncated", "source",
                                               "robot_id", "actor_session", "seq", "episode_id",
                                               "step_index", "stamp_ns", "policy_version",
                                               "safety_rules")}
        rew, term, trunc, src = sc["reward"], sc["terminated"], sc["truncated"], sc["source"]
        rid, ses, seq, ep, st = (sc["robot_id"], sc["actor_session"], sc["seq"],
                                 sc["episode_id"], sc["step_index"])
        stamp, pv, rules = sc["stamp_ns"], sc["policy_version"], sc["safety_rules"]
        append, maybe_flush = w.append, w.maybe_flush
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            append(observation=o[i], action=a[i], next_observation=no[i], reward=rew[i],
                   terminated=term[i], truncated=trunc[i], source=src[i], robot_id=rid[i],
                   actor_session=ses[i], seq=seq[i], episode_id=ep[i], step_index=st[i],
                   stamp_ns=stamp[i], policy_version=pv[i], safety_rules=rules[i])
            maybe_flush()
        w.flush()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    else:
        batches = [{k: v[i:i + per_call] for k, v in rows.items()} for i in range(0, n, per_call)]
        c0, t0 = time.process_time(), time.perf_counter()
        for b in batches:
            w.append_batch(b)
            w.maybe_flush()
        w.flush()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = w.stats
    w.close()
    if stats.accepted != n or stats.rejected_total or stats.duplicates:
        raise RuntimeError(f"ingest stored {stats.accepted} of {n} rows ({stats})")
    return {"transitions_per_call": per_call, "fsync": fsync, "layout": layout, "rows": n,
            "seconds": round(dt, 3), "transitions_per_s": round(n / dt),
            "transitions_per_cpu_s": round(n / max(cpu, 1e-9)), "commits": stats.commits}


def layout_cost(d: Path, rows: dict[str, np.ndarray], reps: int) -> dict[str, Any]:
    """Ingest (64 rows per call, fsync on and off) into a store with one array per observation
    field against one with the flat observation array, alternating per repetition: the ratio
    fields / flat of transitions/s, median over ``reps``."""
    out: dict[str, Any] = {"fields": [f"{k}:{n}" for k, n, _ in FIELDS], "rows": len(rows["seq"])}
    for fsync in (False, True):
        ratios, cpu_ratios = [], []
        for i in range(reps):
            a = ingest(d / f"flat_{fsync}_{i}.zarr", rows, 64, fsync, "flat")
            b = ingest(d / f"fields_{fsync}_{i}.zarr", rows, 64, fsync, "fields")
            ratios.append(b["transitions_per_s"] / a["transitions_per_s"])
            cpu_ratios.append(b["transitions_per_cpu_s"] / a["transitions_per_cpu_s"])
        out["fsync" if fsync else "nofsync"] = {
            "ratio_fields_to_flat": round(statistics.median(ratios), 3),
            "ratio_fields_to_flat_cpu_time": round(statistics.median(cpu_ratios), 3),
            "ratios": [round(r, 3) for r in ratios]}
    return out


# -------------------------------------------------------------------------- load (subprocess)


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM = peak RSS).

    VmHWM belongs to the address space, which exec replaces; ``getrusage().ru_maxrss`` would
    carry the benchmark parent's peak over into the child.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def load_child(path: str) -> dict[str, Any]:
    """Run in a fresh process: reopen + mirror every row; peak RSS growth; writer reopen."""
    from robot_rl.replay.mirror import ReplayMirror
    from robot_rl.replay.store import ReplayReader

    rss0 = _status_kib("VmRSS")
    t0 = time.perf_counter()
    reader = ReplayReader(path)
    n = reader.commit().length
    m = ReplayMirror(reader, capacity=n)
    m.refresh()
    dt = time.perf_counter() - t0
    grown = _status_kib("VmHWM") - rss0
    linked = int((m.next_slot >= 0).sum())
    del m
    from robot_rl.config import ReplayConfig
    from robot_rl.replay import ReplayWriter

    t1 = time.perf_counter()
    w = ReplayWriter(path, reader.observation_spec, reader.action_spec, ReplayConfig())
    dt_w = time.perf_counter() - t1
    sessions = len(w.acks())
    w.close()
    return {"rows": n, "reopen_and_load_s": round(dt, 3), "linked_rows": linked,
            "peak_rss_growth_mib": round(grown / 1024, 1),
            "peak_rss_mib_per_million_rows": round(grown / 1024 / (n / 1e6), 1),
            "writer_reopen_s": round(dt_w, 3), "writer_sessions": sessions}


def load(path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--load-child", str(path)],
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------- sampling


class NumpyRing:
    """The baseline: a plain numpy ring buffer of the same rows producing the same tensors."""

    def __init__(self, cols: dict[str, np.ndarray], seed: int = 0) -> None:
        self.c = {k: np.ascontiguousarray(cols[k]) for k in
                  ("observation", "action", "next_observation", "reward", "terminated",
                   "truncated", "source")}
        self.n = len(self.c["reward"])
        self.rng = np.random.default_rng(seed)

    def sample(self, B: int):
        import torch

        from robot_rl.replay.sampler import Batch

        c = self.c
        idx = (self.rng.random(B) * self.n).astype(np.int64)  # the same draw as ours
        reward = torch.from_numpy(c["reward"][idx])
        term = c["terminated"][idx].astype(np.float32)
        discount = torch.from_numpy((GAMMA * (1.0 - term)).astype(np.float32))
        nobs = torch.from_numpy(np.take(c["next_observation"], idx, axis=0))
        src = c["source"][idx]
        ind = torch.from_numpy(idx)
        return Batch(torch.from_numpy(np.take(c["observation"], idx, axis=0)),
                     torch.from_numpy(np.take(c["action"], idx, axis=0)), reward, nobs,
                     torch.from_numpy(term),
                     torch.from_numpy(c["truncated"][idx].astype(np.float32)),
                     discount, reward, discount, nobs, torch.ones(B, dtype=torch.int64),
                     torch.ones(B, dtype=torch.float32), ind, ind, torch.from_numpy(src != 0),
                     torch.from_numpy(src))


def rate(fn, iters: int) -> tuple[float, float]:
    """Calls per second of wall time and per second of this process's CPU time."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(iters):
        fn()
    return iters / (time.perf_counter() - t0), iters / max(time.process_time() - c0, 1e-9)


def sampling(path: Path, reps: int, iters: int) -> dict[str, Any]:
    import torch

    from robot_rl.config import ReplayConfig
    from robot_rl.replay.mirror import ReplayMirror
    from robot_rl.replay.sampler import ReplaySampler
    from robot_rl.replay.store import ReplayReader

    torch.set_num_threads(1)
    reader = ReplayReader(path)
    n = reader.commit().length
    mirror = ReplayMirror(reader, capacity=n)
    mirror.refresh()
    ring = NumpyRing(reader.read(0, n), seed=0)
    # sanity: both produce the same fields, dtypes and shapes
    ref = ring.sample(BATCH)
    variants = {}
    for name, per, nstep in (("uniform", False, 1), ("uniform_nstep3", False, 3),
                             ("prioritized", True, 1), ("prioritized_nstep3", True, 3)):
        s = ReplaySampler(mirror, gamma=GAMMA, n_step=nstep, demo_fraction=0.5,
                          config=ReplayConfig(prioritized=per), seed=0)
        b = s.sample(BATCH)
        for f in b._fields:
            x, y = getattr(b, f), getattr(ref, f)
            if x.dtype != y.dtype or x.shape != y.shape:
                raise RuntimeError(f"{name}: field {f} is {x.dtype}{tuple(x.shape)}, the ring "
                                   f"gives {y.dtype}{tuple(y.shape)}")
        variants[name] = s
    prio = np.abs(np.random.default_rng(0).normal(size=BATCH))

    def per_step(s):
        # a learner's step: sample, then give the batch new priorities (|TD error|)
        def step():
            b = s.sample(BATCH)
            s.update_priorities(b.indices, prio, rows=b.rows)
        return step

    out: dict[str, Any] = {"rows": n, "batch_size": BATCH, "demo_fraction": 0.5,
                           "demo_rows": mirror.n_demo, "torch_threads": 1}
    ring_rates: list[float] = []
    med = statistics.median
    for name, s in variants.items():
        ours, base, ratio, ratio_cpu = [], [], [], []
        for rep in range(reps):
            ours_fn = per_step(s) if s.prioritized else (lambda s=s: s.sample(BATCH))
            pair = [("ours", ours_fn), ("ring", lambda: ring.sample(BATCH))]
            if rep % 2:
                pair.reverse()
            r = {k: rate(f, iters) for k, f in pair}
            ours.append(r["ours"][0])
            base.append(r["ring"][0])
            ratio.append(r["ours"][0] / r["ring"][0])
            ratio_cpu.append(r["ours"][1] / r["ring"][1])
        ring_rates += base
        out[name] = {"batches_per_s": round(med(ours)), "ring_batches_per_s": round(med(base)),
                     "ratio_to_ring": round(med(ratio), 3),
                     "ratio_to_ring_cpu_time": round(med(ratio_cpu), 3),
                     "ratio_to_ring_all": [round(x, 3) for x in ratio]}
    out["ring_batches_per_s"] = round(med(ring_rates))
    return out


# -------------------------------------------------------------------------- main


def metadata() -> dict[str, Any]:
    import torch  # noqa: F401  (so provenance records the GPU, if any)

    from robot_rl.provenance import provenance

    return {
        **provenance(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.rows
    n_single = min(n, args.single_rows)
    rows = make_rows(n)
    result: dict[str, Any] = {"benchmark": "replay", "quick": args.quick,
                              "obs_dim": OBS_DIM, "act_dim": ACT_DIM, **metadata()}
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        d = Path(d)
        single = {k: v[:n_single] for k, v in rows.items()}
        result["ingest"] = [
            ingest(d / "single_fsync.zarr", single, 1, True),
            ingest(d / "single_nofsync.zarr", single, 1, False),
            ingest(d / "batch_nofsync.zarr", {k: v[:n_single] for k, v in rows.items()}, 64, False),
            ingest(d / "store.zarr", rows, 64, True),
        ]
        result["layout"] = layout_cost(d, {k: v[:n_single] for k, v in rows.items()},
                                       reps=3 if args.quick else 5)
        del rows, single
        result["load"] = load(d / "store.zarr")
        result["sample"] = sampling(d / "store.zarr", args.reps, args.iters)
    result["goals"] = {
        "uniform_ratio_ge_0.9": result["sample"]["uniform"]["ratio_to_ring"] >= 0.9,
        "ingest_ge_100k_per_s_64_fsync": result["ingest"][3]["transitions_per_s"] >= 100_000,
        "reopen_and_load_le_3s": result["load"]["reopen_and_load_s"] <= 3.0,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the store")
    ap.add_argument("--single-rows", type=int, default=200_000,
                    help="rows fed one at a time (each fsync setting)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each sampling pair")
    ap.add_argument("--iters", type=int, default=2000, help="batches per timing")
    ap.add_argument("--quick", action="store_true", help="20k rows, few iterations (CI)")
    ap.add_argument("--tmp", default=None, help="directory for the temporary stores")
    ap.add_argument("--load-child", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load_child:
        print(json.dumps(load_child(args.load_child)))
        return
    if args.quick:
        args.rows, args.single_rows, args.reps, args.iters = 20_000, 5_000, 2, 50
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
