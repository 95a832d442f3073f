"""``robot-rl demos list / show``: what demonstration and intervention episodes a store holds.

Read-only, through :class:`robot_rl.replay.ReplayReader` (committed rows only; safe while the
replay node writes). An episode is (robot_id, episode_id); only its demo / intervention rows
are counted here (an intervention is a stretch of steps inside a policy episode).

Nothing here depends on the order of the rows in the store: after a replay restart the actors
re-send what was not acknowledged, so an episode's rows may be stored out of step order and
apart. Episodes are listed by (robot_id, episode_id), an episode's rows taken by step_index.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SOURCE_NAMES = {0: "policy", 1: "demo", 2: "intervention"}
_COLS = ("source", "robot_id", "actor_session", "episode_id", "step_index", "reward",
         "terminated", "truncated", "stamp_ns", "seq")


def _read(path: str | Path, columns: tuple[str, ...] = _COLS) -> tuple[Any, dict[str, np.ndarray]]:
    from robot_rl.replay import ReplayReader

    r = ReplayReader(path)
    n = len(r)
    return r, r.read(0, n, columns, length=n)


def episodes(path: str | Path, *, sources: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """One dict per (robot_id, episode_id) with rows of ``sources``, ordered by (robot_id,
    episode_id) -- not by where the rows happen to be in the store."""
    _, c = _read(path)
    return _episodes(c, sources)


def _episodes(c: dict[str, np.ndarray], sources: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = np.flatnonzero(np.isin(c["source"], sources))
    if rows.size == 0:
        return []
    # the selected rows by (robot, episode, step): each episode one run, its rows in step order
    rows = rows[np.lexsort((rows, c["step_index"][rows], c["episode_id"][rows],
                            c["robot_id"][rows]))]
    r, e = c["robot_id"][rows], c["episode_id"][rows]
    starts = np.flatnonzero(np.concatenate(([True], (r[1:] != r[:-1]) | (e[1:] != e[:-1]))))
    out = []
    for a, b in zip(starts.tolist(), starts[1:].tolist() + [len(rows)]):
        idx = rows[a:b]
        steps = c["step_index"][idx]
        src = sorted({SOURCE_NAMES.get(int(s), str(int(s))) for s in c["source"][idx]})
        stamps = c["stamp_ns"][idx]
        out.append({
            "robot_id": int(c["robot_id"][idx[0]]),
            "episode_id": int(c["episode_id"][idx[0]]),
            "source": "+".join(src),
            "actor_session": int(c["actor_session"][idx[0]]),
            "rows": int(idx.size),
            "steps": [int(steps[0]), int(steps[-1])],
            "complete": bool(steps[0] == 0 and np.array_equal(steps, np.arange(steps.size))),
            "success": bool(c["terminated"][idx].any()),
            "truncated": bool(c["truncated"][idx].any()),
            "return": float(np.sum(c["reward"][idx], dtype=np.float64)),
            "start_ns": int(stamps.min()),
            "duration_s": float((int(stamps.max()) - int(stamps.min())) / 1e9),
        })
    return out


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"min": float(a.min()), "mean": float(a.mean()), "max": float(a.max())}


def summary(path: str | Path) -> dict[str, Any]:
    """Counts, lengths, successes, returns by source, robot and session."""
    r, c = _read(path)
    eps = _episodes(c, (1, 2))
    total = len(c["source"])
    rows_by_source = {name: int((c["source"] == s).sum()) for s, name in SOURCE_NAMES.items()}

    def group(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"episodes": len(items), "rows": sum(e["rows"] for e in items),
                "successes": sum(e["success"] for e in items),
                "length": _stats([e["rows"] for e in items]),
                "return": _stats([e["return"] for e in items])}

    by_source = {}
    for name in ("demo", "intervention"):
        items = [e for e in eps if name in e["source"].split("+")]
        by_source[name] = group(items)
    by_robot = {str(rid): group([e for e in eps if e["robot_id"] == rid])
                for rid in sorted({e["robot_id"] for e in eps})}
    sessions = {}
    for s in sorted({e["actor_session"] for e in eps}):
        items = [e for e in eps if e["actor_session"] == s]
        sessions[hex(s)] = {**group(items), "robots": sorted({e["robot_id"] for e in items}),
                            "sources": sorted({e["source"] for e in items})}
    return {"path": str(path), "rows": total, "rows_by_source": rows_by_source,
            "by_source": by_source, "by_robot": by_robot, "sessions": sessions,
            "observation": list(r.observation_spec.names), "action": list(r.action_spec.names)}


def episode_rows(path: str | Path, episode_id: int, robot_id: int | None = None
                 ) -> dict[str, Any]:
    """Every committed row of one episode (all sources), ordered by step."""
    from robot_rl.replay import COLUMN_NAMES

    r, c = _read(path, tuple(COLUMN_NAMES))
    sel = c["episode_id"] == np.uint64(episode_id)
    if robot_id is not None:
        sel &= c["robot_id"] == robot_id
    idx = np.flatnonzero(sel)
    if idx.size == 0:
        who = "" if robot_id is None else f" of robot {robot_id}"
        raise ValueError(f"{path}: no episode {episode_id}{who} in the store")
    robots = sorted({int(x) for x in c["robot_id"][idx]})
    if len(robots) > 1:
        raise ValueError(f"{path}: episode {episode_id} exists for robots {robots}; "
                         "choose one with --robot")
    idx = idx[np.argsort(c["step_index"][idx], kind="stable")]
    return {"robot_id": robots[0], "episode_id": int(episode_id),
            "observation_names": list(r.observation_spec.names),
            "action_names": list(r.action_spec.names),
            "rows": {name: c[name][idx] for name in COLUMN_NAMES}}
