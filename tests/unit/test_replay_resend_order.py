"""Readers of a replay store never assume its rows are in ``seq`` or step order (issue 15).

After the replay node restarts, actors re-send everything not acknowledged and the store keeps
each (robot, actor session, seq) once: rows of an episode land out of step order, seqs out of
order, and an episode's rows on both sides of the restart. Here the same rows are stored twice,
on disk: once in order, once as such resends; every reader must give the same answers for
both -- the mirror's next-row links, the sampler's n-step returns, ``demos list / show``,
``replay info / verify`` -- and what lists episodes or rows orders them by (robot, episode,
step).
"""
import json

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.config import ReplayConfig
from robot_rl.demos import summary as S
from robot_rl.replay import COLUMN_NAMES, ReplayReader, ReplayWriter, Source
from robot_rl.replay.inspection import store_info, verify
from robot_rl.replay.mirror import ReplayMirror
from robot_rl.replay.sampler import ReplaySampler
from robot_rl.replay.schema import empty_columns
from robot_rl.specs import BoxSpec

pytestmark = pytest.mark.unit

OBS = BoxSpec("observation", ("robot", "episode", "step", "pad"), np.full(4, -1e4), np.full(4, 1e4))
ACT = BoxSpec("action", ("a",), [-1], [1])
CFG = ReplayConfig(chunk_rows=4, fsync=False)  # 4-row chunks: the mirror reads 4-row blocks
P, D, I = int(Source.POLICY), int(Source.DEMO), int(Source.INTERVENTION)


def episode(robot, session, seq0, ep, n, end, sources=None):
    """Rows (robot, session, seq, episode, step, reward, terminated, truncated, source) of one
    episode of ``n`` steps; ``end`` "term", "trunc" or None (still running). Rewards are not
    binary fractions, so a sum in another order would show."""
    out = []
    for t in range(n):
        last = t == n - 1
        src = (sources or {}).get(t, D if session == 200 else P)
        out.append((robot, session, seq0 + t, ep, t, np.float32(0.1 * (t + 1) + 0.37 * robot),
                    last and end == "term", last and end == "trunc", src))
    return out


# Robot 0 (session 100): episode 10 terminated at step 5, 11 truncated at 3, 12 terminated at 3.
# Robot 1: demo episode 20 (session 200) terminated at 4; policy episode 21 (session 201) with
# an operator's intervention at steps 2-3, truncated at 5.
E10 = episode(0, 100, 0, 10, 6, "term")
E11 = episode(0, 100, 6, 11, 4, "trunc")
E12 = episode(0, 100, 10, 12, 4, "term")
E20 = episode(1, 200, 0, 20, 5, "term")
E21 = episode(1, 201, 0, 21, 6, "trunc", {2: I, 3: I})
ALL = E10 + E11 + E12 + E20 + E21


def in_time_order():
    """Every row once, in the order the robots produced them (round robin, seq order)."""
    queues = [E10 + E11 + E12, list(E20), list(E21)]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def table(rows):
    cols = empty_columns(len(rows), 4, 1)
    for i, (r, s, q, e, t, rew, term, trunc, src) in enumerate(rows):
        cols["observation"][i] = (r, e, t, 0)
        cols["next_observation"][i] = (r, e, t + 1, 0)
        cols["reward"][i] = rew
        cols["terminated"][i], cols["truncated"][i] = term, trunc
        cols["source"][i], cols["robot_id"][i], cols["actor_session"][i] = src, r, s
        cols["seq"][i], cols["episode_id"][i], cols["step_index"][i] = q, e, t
        cols["stamp_ns"][i] = (1000 * r + s) * 10**9 + q * 50_000_000  # the actor's clock
    return cols


def pick(rows, *keys):
    """The rows of ``rows`` with these (episode, step) keys, in the order given."""
    by = {(x[3], x[4]): x for x in rows}
    return [by[k] for k in keys]


def store_in_order(path):
    with ReplayWriter(path, OBS, ACT, CFG) as w:
        w.append_batch(table(in_time_order()))
    return path


# Before the restart: steps 2-3 of episode 10 are lost on the way (re-sent later), robot 1's
# policy rows arrive in reverse, the demo episode with a gap; episode 12 has begun.
BEFORE = (pick(E10, (10, 0), (10, 1), (10, 4), (10, 5))
          + pick(E21, (21, 2), (21, 1), (21, 0))
          + pick(E20, (20, 0), (20, 1), (20, 3))
          + pick(E11, (11, 0), (11, 1), (11, 2), (11, 3))
          + pick(E12, (12, 0), (12, 1)))
# After it: each actor re-sends what was never acknowledged, in its own order, including rows
# already stored (dropped as duplicates), then goes on.
AFTER = (pick(E21, (21, 5), (21, 3), (21, 4), (21, 1))
         + pick(E12, (12, 3), (12, 2), (12, 1))
         + pick(E10, (10, 3), (10, 2), (10, 5))
         + pick(E20, (20, 4), (20, 2), (20, 0)))


def resent_store(path, at_restart=lambda: None):
    """The same rows as re-sends across a replay restart (``at_restart()`` runs between)."""
    with ReplayWriter(path, OBS, ACT, CFG) as w:
        for chunk in (BEFORE[:5], BEFORE[5:11], BEFORE[11:]):
            w.append_batch(table(chunk))
            w.flush()
    at_restart()
    with ReplayWriter(path, OBS, ACT, CFG) as w:  # the restarted replay node
        res = w.append_batch(table(AFTER))
        assert res.duplicates == 4
    return path


@pytest.fixture
def stores(tmp_path):
    a = store_in_order(tmp_path / "in_order.zarr")
    b = resent_store(tmp_path / "resent.zarr")
    rows = ReplayReader(b).read(0, len(ReplayReader(b)), ("seq", "step_index"))
    assert len(rows["seq"]) == len(ALL)
    assert not (np.diff(rows["step_index"][:4].astype(int)) == 1).all()  # really out of order
    return a, b


def key_of(obs):
    r, e, t, _ = obs.tolist()
    return int(r), int(e), int(t)


def links(m: ReplayMirror):
    """(robot, episode, step) of each mirrored row -> that of its linked next row (or None)."""
    n = m.capacity + m.n_demo
    out = {}
    for s in np.flatnonzero(m.slot_row[:n] >= 0):
        nxt = m.next_slot[s]
        out[key_of(m.cols["observation"][s])] = (None if nxt < 0 else
                                                key_of(m.cols["observation"][nxt]))
    return out


def expected_links():
    out = {}
    for r, _s, _q, e, t, _rew, term, trunc, _src in ALL:
        last = term or trunc or not any(x[0] == r and x[3] == e and x[4] == t + 1 for x in ALL)
        out[(r, e, t)] = None if last else (r, e, t + 1)
    return out


def test_mirror_links_each_row_to_the_next_step_of_its_episode_whatever_the_store_order(tmp_path):
    ma = ReplayMirror(store_in_order(tmp_path / "a.zarr"), capacity=100, block_rows=4)
    ma.refresh()
    # the learner runs through the replay restart: it mirrors the rows stored before it, then
    # the re-sent ones (4-row blocks: episodes cross block and refresh edges)
    b = tmp_path / "b.zarr"
    mirrors = []

    def learner_refreshes():
        mirrors.append(ReplayMirror(b, capacity=100, block_rows=4))
        assert mirrors[0].refresh().rows == len(BEFORE)

    resent_store(b, learner_refreshes)
    mb = mirrors[0]
    mb.refresh()
    assert (mb.n_demo, mb.n_online) == (ma.n_demo, ma.n_online) == (7, 18)
    assert links(ma) == links(mb) == expected_links()


@pytest.mark.parametrize("seed", range(12))
def test_mirror_links_survive_any_resend_order(tmp_path, seed):
    """Seeded shuffles of every row, re-sends of stored ones, three restarts, the mirror
    refreshed at some of them; with a small online ring (capacity 3..11) rows are evicted too,
    and links may only join kept rows."""
    rng = np.random.default_rng(seed)
    rows = [ALL[i] for i in rng.permutation(len(ALL))]
    cuts = sorted(rng.integers(0, len(rows), 3).tolist())
    parts = [rows[:cuts[0]], rows[cuts[0]:cuts[1]], rows[cuts[1]:cuts[2]], rows[cuts[2]:]]
    parts[-1] = parts[-1] + [rows[i] for i in rng.integers(0, len(rows), 5)]  # re-sent again
    path, m = tmp_path / "s.zarr", None
    capacity = 100 if seed % 2 else int(rng.integers(3, 12))
    for part in parts:
        with ReplayWriter(path, OBS, ACT, CFG) as w:
            for sub in np.array_split(np.arange(len(part)), int(rng.integers(1, 4))):
                if len(sub):
                    w.append_batch(table([part[i] for i in sub]))
                    w.flush()
        if m is None:
            m = ReplayMirror(path, capacity=capacity, block_rows=4)
        if rng.random() < 0.7:
            m.refresh()
    m.refresh()
    got = links(m)
    ends = {(x[0], x[3], x[4]) for x in ALL if x[6] or x[7]}
    want = {k: None if k in ends or (k[0], k[1], k[2] + 1) not in got else (k[0], k[1], k[2] + 1)
            for k in got}
    assert got == want
    if capacity == 100:
        assert got == expected_links()


def nstep_table(m: ReplayMirror, seed: int):
    s = ReplaySampler(m, gamma=0.5, n_step=3, seed=seed)
    s.refresh()
    b = s.sample(4000)
    out = {}
    for i in range(len(b.rows)):
        k = key_of(b.observation[i])
        v = (round(b.nstep_return[i].item(), 6), b.nstep_length[i].item(),
             b.nstep_discount[i].item(), key_of(b.nstep_next_observation[i]))
        assert out.setdefault(k, v) == v, k
    return out


def test_nstep_returns_are_the_same_for_resent_rows(stores):
    a, b = stores
    ta = nstep_table(ReplayMirror(a, capacity=100, block_rows=4), seed=1)
    tb = nstep_table(ReplayMirror(b, capacity=100, block_rows=4), seed=2)
    assert len(ta) == len(ALL)
    assert ta == tb
    # written out for robot 0 episode 10 (rewards 0.1 .. 0.6, terminated at step 5)
    assert ta[(0, 10, 2)] == (round(0.3 + 0.5 * 0.4 + 0.25 * 0.5, 6), 3, 0.125, (0, 10, 5))
    assert ta[(0, 10, 4)] == (round(0.5 + 0.5 * 0.6, 6), 2, 0.0, (0, 10, 6))


def test_demos_list_and_show_count_the_same_episodes_and_steps(stores):
    a, b = stores
    sa, sb = S.summary(a), S.summary(b)
    sa.pop("path"), sb.pop("path")
    assert sa == sb
    assert sa["by_source"]["demo"]["episodes"] == 1 and sa["by_source"]["demo"]["rows"] == 5
    assert sa["by_source"]["intervention"]["episodes"] == 1
    ea, eb = S.episodes(a), S.episodes(b)
    assert ea == eb
    assert [(e["robot_id"], e["episode_id"]) for e in ea] == [(1, 20), (1, 21)]
    assert ea[0]["complete"] and ea[0]["steps"] == [0, 4] and ea[0]["success"]
    assert ea[0]["return"] == pytest.approx(sum(float(x[5]) for x in E20))


def test_episode_rows_come_back_in_step_order(stores):
    a, b = stores
    for r, e in {(x[0], x[3]) for x in ALL}:
        ra, rb = S.episode_rows(a, e, r)["rows"], S.episode_rows(b, e, r)["rows"]
        for name in COLUMN_NAMES:
            np.testing.assert_array_equal(ra[name], rb[name], err_msg=f"{name} of {r}/{e}")
        np.testing.assert_array_equal(rb["step_index"], np.arange(len(rb["step_index"])))


def test_cli_json_exports_are_ordered_by_robot_episode_step(stores, capsys):
    a, b = stores
    outs = []
    for p in (a, b):
        assert main(["demos", "show", str(p), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
        assert main(["demos", "show", str(p), "--episode", "12", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["rows"])
    assert outs[0] == outs[2] and outs[1] == outs[3]
    assert outs[3]["step_index"] == [0, 1, 2, 3] and outs[3]["seq"] == [10, 11, 12, 13]


def test_replay_info_and_verify_agree(stores):
    a, b = stores
    ia, ib = store_info(a), store_info(b)
    for k in ("path", "created", "commit", "allocated_rows", "size_on_disk_bytes", "writer"):
        ia.pop(k), ib.pop(k)
    assert ia == ib
    assert ia["episodes"] == 5 and ia["episode_ends"] == {"terminated": 3, "truncated": 2}
    assert verify(a).ok and verify(b).ok
