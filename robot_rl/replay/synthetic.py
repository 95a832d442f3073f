"""Deterministic synthetic transitions, for tests, the crash test and the benchmark.

Every value of a synthetic row is a function of (robot_id, actor_session, seq), so a checker can
recompute what a row must contain from its key alone (:func:`expected_rows`) -- that is how the
crash test proves that no row it reads is torn.
"""
from __future__ import annotations

import numpy as np

from robot_rl.replay.schema import Source, empty_columns
from robot_rl.specs import BoxSpec


def make_specs(obs_dim: int = 20, act_dim: int = 7) -> tuple[BoxSpec, BoxSpec]:
    """An observation spec with bounds [-100, 100] and an action spec [-1, 1]^act_dim."""
    obs = BoxSpec("observation", tuple(f"o{i}" for i in range(obs_dim)),
                  np.full(obs_dim, -100.0), np.full(obs_dim, 100.0))
    act = BoxSpec("action", tuple(f"a{i}" for i in range(act_dim)),
                  -np.ones(act_dim), np.ones(act_dim))
    return obs, act


def _phase(robot_id: np.ndarray, session: np.ndarray, seq: np.ndarray) -> np.ndarray:
    return ((seq % 1000).astype(np.float64) * 0.001 + (session % 97).astype(np.float64) * 0.01
            + robot_id.astype(np.float64) * 0.1)


def synthetic_rows(seqs: np.ndarray | range, *, obs_dim: int = 20, act_dim: int = 7,
                   robot_id: int = 0, actor_session: int = 1, episode_len: int = 50,
                   source: int = Source.POLICY, episode_base: int = 0) -> dict[str, np.ndarray]:
    """Rows for ``seqs`` of one (robot_id, actor_session): episodes of ``episode_len`` steps,
    the last one truncated (time limit). Episode ids are ``episode_base + seq // episode_len``."""
    seq = np.asarray(seqs, dtype=np.uint64)
    n = len(seq)
    cols = empty_columns(n, obs_dim, act_dim)
    r = np.full(n, robot_id, np.uint16)
    s = np.full(n, actor_session, np.uint64)
    ph = _phase(r, s, seq)
    j = np.arange(obs_dim)
    cols["observation"][:] = np.sin(ph[:, None] + j) * 10
    cols["next_observation"][:] = np.sin(ph[:, None] + 0.001 + j) * 10
    cols["action"][:] = np.cos(ph[:, None] * 3 + np.arange(act_dim)) * 0.9
    cols["reward"][:] = -ph.astype(np.float32)
    step = (seq % np.uint64(episode_len)).astype(np.uint32)
    cols["truncated"][:] = step == episode_len - 1
    cols["terminated"][:] = False
    cols["source"][:] = source
    cols["robot_id"][:] = r
    cols["actor_session"][:] = s
    cols["seq"][:] = seq
    cols["episode_id"][:] = np.uint64(episode_base) + seq // np.uint64(episode_len)
    cols["step_index"][:] = step
    cols["stamp_ns"][:] = seq.astype(np.int64) * 50_000_000
    cols["policy_version"][:] = seq // np.uint64(1000)
    cols["safety_rules"][:] = (seq % np.uint64(7) == 0).astype(np.uint32)
    return cols


def expected_rows(cols: dict[str, np.ndarray], *, obs_dim: int, act_dim: int,
                  episode_len: int = 50, source: int = Source.POLICY) -> dict[str, np.ndarray]:
    """What :func:`synthetic_rows` would have produced for the keys found in ``cols``."""
    out = empty_columns(len(cols["seq"]), obs_dim, act_dim)
    for (r, s) in set(zip(cols["robot_id"].tolist(), cols["actor_session"].tolist())):
        m = (cols["robot_id"] == r) & (cols["actor_session"] == s)
        part = synthetic_rows(cols["seq"][m], obs_dim=obs_dim, act_dim=act_dim, robot_id=r,
                              actor_session=s, episode_len=episode_len, source=source)
        for k, v in part.items():
            out[k][m] = v
    return out


def row_kwargs(cols: dict[str, np.ndarray], i: int) -> dict:
    """Row ``i`` of a column dict as keyword arguments for ``ReplayWriter.append``."""
    return {k: (v[i] if v.ndim > 1 else v[i].item()) for k, v in cols.items()}


def write_synthetic_store(path, *, obs_dim: int, act_dim: int, online: int = 600,
                          demo: int = 100, episode_len: int = 25, chunk_rows: int = 256):
    """A replay store at ``path`` with ``online`` synthetic policy rows (actor session 1) and
    ``demo`` demonstration rows (session 2, episode ids from 10,000); returns ``path``. What
    the learner tests train on."""
    from robot_rl.config import ReplayConfig
    from robot_rl.replay.store import ReplayWriter

    obs, act = make_specs(obs_dim, act_dim)
    with ReplayWriter(path, obs, act, ReplayConfig(fsync=False, chunk_rows=chunk_rows)) as w:
        w.append_batch(synthetic_rows(range(online), obs_dim=obs_dim, act_dim=act_dim,
                                      episode_len=episode_len))
        w.append_batch(synthetic_rows(range(demo), obs_dim=obs_dim, act_dim=act_dim,
                                      episode_len=episode_len, actor_session=2,
                                      source=Source.DEMO, episode_base=10_000))
        w.flush()
    return path
