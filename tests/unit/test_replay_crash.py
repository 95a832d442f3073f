"""Crash test: a writer streaming transitions is SIGKILLed at seeded moments, again and again.

Each round starts a writer process (this file run as a script) on the same store. It streams
policy transitions of robot 0 (single rows and small batches, re-sending a few already
acknowledged ones as an actor does after a replay restart) and whole demo episodes of robot 1
(``append_episode``), flushing every few milliseconds, and prints an ``ACK`` line after every
commit. The round ends with SIGKILL:

* deterministic kills: ``ROBOT_RL_REPLAY_CRASH=<phase file>;<phase>:<k>`` makes the writer kill
  itself half-way through its k-th file write in ``chunk_write`` (a new chunk),
  ``partial_rewrite`` (rewriting the tail chunk that already holds committed rows) or
  ``marker_update`` (the commit marker) -- a torn temp file on disk;
* random kills: the parent kills it after a seeded random delay and reads the phase it was in
  from the phase file.

Meanwhile the parent tails the store with a ``ReplayReader`` and checks every row it sees. After
each kill it checks the store as the dead writer left it:

* it opens at its last commit and ``verify_store`` finds no problem;
* every row equals what the generator makes of its key (no torn row), keys are unique (no
  duplicate), every seq the writer acknowledged is present (no missing committed row), every
  demo episode is complete or absent (whole-episode atomicity);
* the tailing reader never saw a row that differs from its expected value.

The quick variant (4 kills, one per phase + one random) runs with the unit tests; the full one
(24 kills) is marked ``slow``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

OBS_DIM, ACT_DIM = 6, 3


def _specs():
    """The observation cut into named fields, as a task's is: schema 2 writes one array per
    field, so a kill can land between the fields' chunk files of one chunk."""
    from robot_rl.replay.synthetic import make_specs
    from robot_rl.specs import ObservationSpec

    obs, act = make_specs(OBS_DIM, ACT_DIM)
    return ObservationSpec.from_flat(obs, [("a", 2, "proprio"), ("b", 2, "achieved_goal"),
                                           ("c", 2, "desired_goal")]), act
CHUNK_ROWS = 16
POLICY = (0, 4242)  # (robot_id, actor_session) of the streamed policy rows
DEMO = (1, 777)     # demo episodes, EPISODE_LEN rows each, appended whole
POLICY_EP_LEN, DEMO_EP_LEN = 25, 12


def _expected(robot: int, session: int, seqs: np.ndarray) -> dict[str, np.ndarray]:
    from robot_rl.replay.synthetic import synthetic_rows

    if (robot, session) == POLICY:
        return synthetic_rows(seqs, obs_dim=OBS_DIM, act_dim=ACT_DIM, robot_id=robot,
                              actor_session=session, episode_len=POLICY_EP_LEN)
    return synthetic_rows(seqs, obs_dim=OBS_DIM, act_dim=ACT_DIM, robot_id=robot,
                          actor_session=session, episode_len=DEMO_EP_LEN, source=1,
                          episode_base=10**6)


def _config(fsync: bool):
    from robot_rl.config import ReplayConfig

    return ReplayConfig(chunk_rows=CHUNK_ROWS, fsync=fsync, flush_interval=0.004,
                        max_uncommitted_rows=48)


# --------------------------------------------------------------------------- the writer child


def child_main(args: dict) -> None:
    from robot_rl.replay import ReplayWriter
    from robot_rl.replay.synthetic import row_kwargs

    rng = np.random.default_rng(args["seed"])
    obs, act = _specs()
    w = ReplayWriter(args["path"], obs, act, _config(args["fsync"]))
    print(f"READY {w.committed_length}", flush=True)
    seq = args["policy_start"]
    demo_ep = args["demo_start"]
    commits = w.stats.commits

    def report() -> None:
        nonlocal commits
        if w.stats.commits != commits:
            commits = w.stats.commits
            acks = w.acks()
            print(" ".join(f"ACK {r} {s} {acks[(r, s)]}" for r, s in (POLICY, DEMO)
                           if (r, s) in acks), flush=True)

    for _ in range(args["steps"]):
        u = rng.random()
        if u < 0.55:
            row = _expected(*POLICY, np.array([seq]))
            w.append(**row_kwargs(row, 0))
            seq += 1
        elif u < 0.97:
            k = int(rng.integers(1, 40))
            w.append_batch(_expected(*POLICY, np.arange(seq, seq + k)))
            seq += k
        else:
            seqs = np.arange(demo_ep * DEMO_EP_LEN, (demo_ep + 1) * DEMO_EP_LEN)
            w.append_episode(_expected(*DEMO, seqs))
            demo_ep += 1
        report()
        w.maybe_flush()
        report()
    w.close()
    report()
    print("DONE", flush=True)


# --------------------------------------------------------------------------- checks


def check_store(path: Path, acked: dict[tuple[int, int], int]) -> dict[str, int]:
    """Check the store as a killed writer left it; return row counts."""
    from robot_rl.replay import ReplayReader
    from robot_rl.replay.inspection import verify_store

    problems = verify_store(path)
    assert problems == [], problems
    r = ReplayReader(path)
    n = r.commit().length
    cols = r.read(0, n, length=n)
    keys = np.stack([cols["robot_id"].astype(np.uint64), cols["actor_session"], cols["seq"]], 1)
    assert len(np.unique(keys, axis=0)) == n, "duplicated rows"
    for (rob, ses) in set(zip(cols["robot_id"].tolist(), cols["actor_session"].tolist())):
        m = (cols["robot_id"] == rob) & (cols["actor_session"] == ses)
        exp = _expected(rob, ses, cols["seq"][m])
        for k, v in exp.items():
            np.testing.assert_array_equal(cols[k][m], v, err_msg=f"torn row in column {k}")
    for (rob, ses), wm in acked.items():
        m = (cols["robot_id"] == rob) & (cols["actor_session"] == ses)
        present = set(cols["seq"][m].tolist())
        missing = set(range(wm + 1)) - present
        assert not missing, f"acknowledged rows missing: {sorted(missing)[:10]}"
    demo = cols["robot_id"] == DEMO[0]
    if demo.any():
        per_episode = Counter(cols["episode_id"][demo].tolist())
        assert set(per_episode.values()) == {DEMO_EP_LEN}, "a demo episode is partly stored"
    return {"rows": n, "demo_rows": int(demo.sum())}


class Tail:
    """A reader tailing the store from the parent, checking every row it sees."""

    def __init__(self, path: Path) -> None:
        from robot_rl.replay import ReplayReader

        self.reader = ReplayReader(path)
        self.seen = 0
        self.rows_checked = 0

    def poll(self) -> None:
        n = self.reader.commit().length
        assert n >= self.seen, "the commit point went backwards"
        if n == self.seen:
            return
        cols = self.reader.read(self.seen, n, length=n)
        for (rob, ses) in set(zip(cols["robot_id"].tolist(), cols["actor_session"].tolist())):
            m = (cols["robot_id"] == rob) & (cols["actor_session"] == ses)
            exp = _expected(rob, ses, cols["seq"][m])
            for k, v in exp.items():
                np.testing.assert_array_equal(cols[k][m], v, err_msg=f"reader saw a torn {k}")
        self.rows_checked += n - self.seen
        self.seen = n


# --------------------------------------------------------------------------- the campaign


def run_campaign(tmp: Path, plan: list[tuple[str, int]], seed: int) -> dict:
    """``plan``: (phase, k) for deterministic kills, ("random", 0) for timed ones."""
    from robot_rl.replay import ReplayWriter
    from robot_rl.replay.durable import PHASE_NAMES

    path = tmp / "replay.zarr"
    ReplayWriter(path, *_specs(), _config(False)).close()
    rng = np.random.default_rng(seed)
    acked: dict[tuple[int, int], int] = {}
    tail = Tail(path)
    kills: Counter = Counter()
    rounds = []
    for i, (phase, k) in enumerate(plan):
        phase_file = tmp / f"phase{i}"
        spec = str(phase_file) + (f";{phase}:{k}" if phase != "random" else "")
        env = {**os.environ, "ROBOT_RL_REPLAY_CRASH": spec}
        wm = acked.get(POLICY, -1)
        demo_done = (acked.get(DEMO, -1) + 1) // DEMO_EP_LEN
        args = {
            "path": str(path), "seed": int(rng.integers(1 << 31)), "fsync": bool(i % 4 == 3),
            "steps": 20_000,
            # an actor re-sends what was not acknowledged, and a little more
            "policy_start": max(0, wm + 1 - int(rng.integers(0, 30))),
            "demo_start": max(0, demo_done - int(rng.integers(0, 2))),
        }
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = None
        t0 = time.monotonic()
        t_ready = None
        while proc.poll() is None:
            if deadline is None and any(ln.startswith("READY") for ln in lines):
                t_ready = time.monotonic()
                deadline = time.monotonic() + (rng.uniform(0.02, 0.5) if phase == "random" else 30)
            if deadline is not None and time.monotonic() >= deadline:
                proc.send_signal(signal.SIGKILL)
                break
            if time.monotonic() - t0 > 60:
                proc.kill()
                raise AssertionError("writer child hung")
            tail.poll()
            time.sleep(0.003)
        t_kill = time.monotonic()
        proc.wait(timeout=30)
        reader.join(timeout=10)
        stderr = proc.stderr.read()
        proc.stderr.close()
        if proc.returncode != -signal.SIGKILL:
            raise AssertionError(f"round {i} ({phase}:{k}): writer exited {proc.returncode} "
                                 f"instead of being killed; stderr:\n{stderr[-2000:]}")
        for ln in lines:
            for part in ln.split("ACK ")[1:]:
                r, s, w = (int(x) for x in part.split())
                acked[(r, s)] = max(acked.get((r, s), -1), w)
        at = PHASE_NAMES[phase_file.read_bytes()[0]]
        kills[at] += 1
        tail.poll()
        counts = check_store(path, acked)
        rounds.append({"plan": f"{phase}:{k}" if phase != "random" else "random", "phase": at,
                       "ready_s": round(t_ready - t0, 2) if t_ready else None,
                       "ran_s": round(t_kill - t_ready, 2) if t_ready else None, **counts})
    return {"kills": len(plan), "by_phase": dict(kills), "rows_committed": rounds[-1]["rows"],
            "acked_policy_seq": acked.get(POLICY), "rows_checked_by_tailing_reader":
            tail.rows_checked, "rounds": rounds}


def _plan(rng: np.random.Generator, per_phase: int, random: int) -> list[tuple[str, int]]:
    plan = []
    for _ in range(per_phase):
        plan += [("chunk_write", int(rng.integers(1, 60))),
                 ("partial_rewrite", int(rng.integers(1, 150))),
                 ("marker_update", int(rng.integers(1, 12)))]
    plan += [("random", 0)] * random
    order = rng.permutation(len(plan))
    return [plan[j] for j in order]


@pytest.mark.unit
def test_sigkill_quick_one_kill_per_phase(tmp_path):
    res = run_campaign(tmp_path, _plan(np.random.default_rng(1), 1, 1), seed=1)
    for phase in ("chunk_write", "partial_rewrite", "marker_update"):
        assert res["by_phase"].get(phase, 0) >= 1, res["by_phase"]
    assert res["rows_checked_by_tailing_reader"] > 0


@pytest.mark.slow
def test_sigkill_at_24_seeded_moments(tmp_path):
    res = run_campaign(tmp_path, _plan(np.random.default_rng(2026), 6, 6), seed=2026)
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}))
    assert res["kills"] >= 20
    for phase in ("chunk_write", "partial_rewrite", "marker_update"):
        assert res["by_phase"].get(phase, 0) >= 6, res["by_phase"]
    assert res["rows_committed"] > 1000


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "--campaign":
        import tempfile

        kills = int(sys.argv[2]) if len(sys.argv) > 2 else 24
        with tempfile.TemporaryDirectory() as d:
            out = run_campaign(Path(d), _plan(np.random.default_rng(2026), kills // 4, kills // 4),
                               seed=2026)
        print(json.dumps(out, indent=1))
