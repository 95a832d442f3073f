"""Mirror + sampler: n-step returns (written-out values), demo fraction, capacity, PER, state."""
import numpy as np
import pytest
import torch

from robot_rl.config import ReplayConfig
from robot_rl.replay import ReplayWriter, Source
from robot_rl.replay.mirror import ReplayMirror
from robot_rl.replay.sampler import Batch, ReplaySampler
from robot_rl.replay.schema import empty_columns
from robot_rl.replay.sumtree import SumTree
from robot_rl.replay.synthetic import make_specs, synthetic_rows
from robot_rl.specs import BoxSpec

pytestmark = pytest.mark.unit

OBS = BoxSpec("observation", ("robot", "episode", "step", "pad"), np.full(4, -1e4), np.full(4, 1e4))
ACT = BoxSpec("action", ("a",), [-1], [1])
CFG = ReplayConfig(chunk_rows=4, fsync=False)


def table(spec_rows):
    """Rows from (robot, episode, step, reward, terminated, truncated, source) tuples.

    observation = (robot, episode, step, 0), next_observation = (robot, episode, step + 1, 0),
    so a batch says by itself which rows it holds. Sessions: one per (robot, source).
    """
    n = len(spec_rows)
    cols = empty_columns(n, 4, 1)
    seqs: dict[tuple, int] = {}
    for i, (r, e, t, rew, term, trunc, src) in enumerate(spec_rows):
        sess = 10 * r + src
        seq = seqs.get((r, sess), 0)
        seqs[(r, sess)] = seq + 1
        cols["observation"][i] = (r, e, t, 0)
        cols["next_observation"][i] = (r, e, t + 1, 0)
        cols["reward"][i] = rew
        cols["terminated"][i], cols["truncated"][i] = term, trunc
        cols["source"][i], cols["robot_id"][i], cols["actor_session"][i] = src, r, sess
        cols["seq"][i], cols["episode_id"][i], cols["step_index"][i] = seq, e, t
    return cols


def store(tmp_path, spec_rows, name="s.zarr"):
    p = tmp_path / name
    with ReplayWriter(p, OBS, ACT, CFG) as w:
        w.append_batch(table(spec_rows))
    return p


P, D, I = Source.POLICY, Source.DEMO, Source.INTERVENTION

# Robot 0, episode 10: rewards 1..5, terminated at step 4. Robot 1, episode 20: rewards 10..40,
# truncated at step 3 (its step 1 an operator's intervention). Robot 0, episode 11: two steps so
# far, not ended (its successor is not committed yet). The robots' rows interleave.
ROWS = [
    (0, 10, 0, 1.0, 0, 0, P), (1, 20, 0, 10.0, 0, 0, P), (0, 10, 1, 2.0, 0, 0, P),
    (1, 20, 1, 20.0, 0, 0, I), (0, 10, 2, 3.0, 0, 0, P), (1, 20, 2, 30.0, 0, 0, P),
    (0, 10, 3, 4.0, 0, 0, P), (1, 20, 3, 40.0, 0, 1, P), (0, 10, 4, 5.0, 1, 0, P),
    (0, 11, 0, 100.0, 0, 0, P), (0, 11, 1, 200.0, 0, 0, P),
]

# gamma = 0.5, n = 3: (robot, episode, step) -> (G, m, nstep_discount, step of the bootstrap obs)
EXPECTED_N3 = {
    (0, 10, 0): (1 + 0.5 * 2 + 0.25 * 3, 3, 0.125, 3),
    (0, 10, 1): (2 + 0.5 * 3 + 0.25 * 4, 3, 0.125, 4),
    (0, 10, 2): (3 + 0.5 * 4 + 0.25 * 5, 3, 0.0, 5),    # reaches the termination: no bootstrap
    (0, 10, 3): (4 + 0.5 * 5, 2, 0.0, 5),
    (0, 10, 4): (5.0, 1, 0.0, 5),
    (1, 20, 0): (10 + 0.5 * 20 + 0.25 * 30, 3, 0.125, 3),  # through the intervention row
    (1, 20, 1): (20 + 0.5 * 30 + 0.25 * 40, 3, 0.125, 4),  # ends on the truncated row: bootstrap
    (1, 20, 2): (30 + 0.5 * 40, 2, 0.25, 4),               # truncation: gamma^2, s_4 of the time limit
    (1, 20, 3): (40.0, 1, 0.5, 4),
    (0, 11, 0): (100 + 0.5 * 200, 2, 0.25, 2),             # successor not committed yet
    (0, 11, 1): (200.0, 1, 0.5, 2),
}


def check_nstep(batch: Batch, expected, gamma=0.5):
    seen = set()
    for i in range(len(batch.rows)):
        r, e, t, _ = batch.observation[i].tolist()
        key = (int(r), int(e), int(t))
        g, m, disc, boot = expected[key]
        seen.add(key)
        assert batch.nstep_return[i].item() == pytest.approx(g), key
        assert batch.nstep_length[i].item() == m, key
        assert batch.nstep_discount[i].item() == pytest.approx(disc), key
        assert batch.nstep_next_observation[i].tolist() == [r, e, boot, 0], key
        # 1-step fields alongside
        assert batch.next_observation[i].tolist() == [r, e, t + 1, 0]
        assert batch.discount[i].item() == pytest.approx(gamma * (1 - batch.terminated[i].item()))
    return seen


def test_nstep_returns_at_termination_truncation_and_episode_boundaries(tmp_path):
    m = ReplayMirror(store(tmp_path, ROWS), capacity=100)
    s = ReplaySampler(m, gamma=0.5, n_step=3, seed=1)
    s.refresh()
    assert (m.n_demo, m.n_online) == (1, 10)
    seen = check_nstep(s.sample(400), EXPECTED_N3)
    assert seen == set(EXPECTED_N3)  # every row drawn at least once


def test_nstep_picks_up_a_successor_committed_later_and_out_of_order_rows(tmp_path):
    p = tmp_path / "o.zarr"
    w = ReplayWriter(p, OBS, ACT, CFG)
    w.append_batch(table(ROWS))
    w.flush()
    m = ReplayMirror(p, capacity=100)
    s = ReplaySampler(m, gamma=0.5, n_step=3, seed=2)
    s.refresh()
    # episode 11 goes on: step 3 arrives before step 2 (a re-send after a lost message)
    more = table([(0, 11, 3, 400.0, 1, 0, P), (0, 11, 2, 300.0, 0, 0, P)])
    more["actor_session"][:] = 99
    w.append_batch(more)
    w.close()
    assert s.refresh() == 2
    exp = dict(EXPECTED_N3)
    exp[(0, 11, 0)] = (100 + 0.5 * 200 + 0.25 * 300, 3, 0.125, 3)
    exp[(0, 11, 1)] = (200 + 0.5 * 300 + 0.25 * 400, 3, 0.0, 4)
    exp[(0, 11, 2)] = (300 + 0.5 * 400, 2, 0.0, 4)
    exp[(0, 11, 3)] = (400.0, 1, 0.0, 4)
    assert check_nstep(s.sample(600), exp) == set(exp)


def test_one_step_fields_and_n1_aliases(tmp_path):
    m = ReplayMirror(store(tmp_path, ROWS), capacity=100)
    s = ReplaySampler(m, gamma=0.9, n_step=1, seed=0)
    s.refresh()
    b = s.sample(64)
    assert b.nstep_return is b.reward and b.nstep_next_observation is b.next_observation
    assert b.observation.dtype == torch.float32 and b.observation.shape == (64, 4)
    assert b.action.shape == (64, 1) and b.indices.dtype == torch.int64
    assert torch.equal(b.weights, torch.ones(64))
    term = b.observation[:, 2] == 4  # only (0, 10, 4) is terminated
    term &= b.observation[:, 1] == 10
    assert torch.equal(b.terminated.bool(), term)
    assert torch.allclose(b.discount, torch.where(term, 0.0, 0.9))
    assert torch.equal(b.is_demo, b.source == I)


# --------------------------------------------------------------------------- pools


def demo_online_store(tmp_path, n_demo=100, n_online=1000, capacity=10_000, name="p.zarr"):
    p = tmp_path / name
    with ReplayWriter(p, *make_specs(4, 2), ReplayConfig(chunk_rows=64, fsync=False)) as w:
        w.append_batch(synthetic_rows(range(n_online), obs_dim=4, act_dim=2, actor_session=1))
        w.append_batch(synthetic_rows(range(n_demo), obs_dim=4, act_dim=2, actor_session=2,
                                      source=D, episode_base=10**6))
    return ReplayMirror(p, capacity=capacity)


def test_demo_fraction_is_honoured_in_every_batch(tmp_path):
    m = demo_online_store(tmp_path)
    s = ReplaySampler(m, demo_fraction=0.25, seed=3)
    s.refresh()
    for _ in range(20):
        b = s.sample(64)
        assert int(b.is_demo.sum()) == 16
    # PER keeps the split too
    sp = ReplaySampler(m, demo_fraction=0.5, prioritized=True, seed=3)
    for _ in range(5):
        assert int(sp.sample(256).is_demo.sum()) == 128


def test_union_sampling_follows_the_pool_sizes(tmp_path):
    m = demo_online_store(tmp_path)
    s = ReplaySampler(m, demo_fraction=None, seed=4)
    s.refresh()
    k = sum(int(s.sample(256).is_demo.sum()) for _ in range(200))
    n = 200 * 256
    p = 100 / 1100
    assert abs(k - n * p) < 4 * np.sqrt(n * p * (1 - p))


def test_online_rows_beyond_capacity_drop_out_oldest_first_demos_stay(tmp_path):
    p = tmp_path / "c.zarr"
    obs, act = make_specs(4, 2)
    online = synthetic_rows(range(25), obs_dim=4, act_dim=2, actor_session=1, episode_len=5)
    demo = synthetic_rows(range(5), obs_dim=4, act_dim=2, actor_session=2, source=D,
                          episode_len=5, episode_base=100)
    inc = ReplayMirror.__new__(ReplayMirror)  # placeholder, created after the first commit
    with ReplayWriter(p, obs, act, ReplayConfig(chunk_rows=4, fsync=False)) as w:
        for i in range(0, 25, 3):  # demos interleaved with online rows, committed in steps
            w.append_batch({k: v[i:i + 3] for k, v in online.items()})
            if i // 3 < 5:
                w.append_batch({k: v[i // 3:i // 3 + 1] for k, v in demo.items()})
            w.flush()
            if i == 0:
                inc = ReplayMirror(p, capacity=10)
            inc.refresh()
    bulk = ReplayMirror(p, capacity=10)
    bulk.refresh()
    for m in (inc, bulk):
        assert (m.n_demo, m.n_online) == (5, 10)
        seqs = m.reader.read(0, m.mirrored)["seq"]
        src = m.reader.read(0, m.mirrored)["source"]
        ring_rows = m.online_rows()
        assert sorted(seqs[ring_rows].tolist()) == list(range(15, 25))  # the newest 10
        assert all(src[ring_rows] == P)
        demo_rows = m.demo_rows()
        assert seqs[demo_rows].tolist() == [0, 1, 2, 3, 4] and all(src[demo_rows] == D)
    # the pools are the same whether mirrored step by step or at once
    np.testing.assert_array_equal(inc.online_rows(), bulk.online_rows())
    np.testing.assert_array_equal(inc.demo_rows(), bulk.demo_rows())
    # evicted rows take their episode links with them: online row 15 starts an episode
    s = ReplaySampler(inc, gamma=0.5, n_step=5, seed=0)
    b = s.sample(500)
    seq_of = {int(r): int(q) for r, q in zip(b.rows, inc.reader.read(0, inc.mirrored)["seq"][b.rows.numpy()])}
    for i in range(500):
        if not b.is_demo[i]:
            q = seq_of[int(b.rows[i])]
            assert b.nstep_length[i] == min(5, 5 - q % 5)  # never walks outside its episode


def test_an_intervention_row_loses_its_evicted_successor(tmp_path):
    # episode: intervention (kept for ever), then policy rows that the ring evicts
    rows = [(0, 1, 0, 1.0, 0, 0, I), (0, 1, 1, 2.0, 0, 0, P), (0, 1, 2, 4.0, 0, 0, P)]
    rows += [(1, 2, t, 0.0, 0, 0, P) for t in range(3)]
    m = ReplayMirror(store(tmp_path, rows), capacity=3)
    s = ReplaySampler(m, gamma=0.5, n_step=3, demo_fraction=1.0, seed=0)
    s.refresh()
    b = s.sample(8)
    assert torch.all(b.nstep_length == 1) and torch.allclose(b.nstep_return, torch.ones(8))
    assert torch.allclose(b.nstep_discount, torch.full((8,), 0.5))
    m2 = ReplayMirror(m.reader, capacity=5)  # with room, the chain goes on
    s2 = ReplaySampler(m2, gamma=0.5, n_step=3, demo_fraction=1.0, seed=0)
    s2.refresh()
    b = s2.sample(8)
    assert torch.allclose(b.nstep_return, torch.full((8,), 1 + 0.5 * 2 + 0.25 * 4))


# --------------------------------------------------------------------------- PER


def test_sumtree_matches_a_brute_force_prefix_search():
    rng = np.random.default_rng(0)
    t = SumTree(37)
    p = rng.random(37)
    p[[3, 10, 11]] = 0.0
    t.set(np.arange(37), p)
    assert t.total == pytest.approx(p.sum())
    u = rng.random(10_000) * p.sum()
    expect = np.searchsorted(np.cumsum(p), u, side="right")
    np.testing.assert_array_equal(t.find(u), expect)
    assert not np.isin(t.find(u), [3, 10, 11]).any()
    t.set([5, 5], [2.0, 3.0])
    assert t.total == pytest.approx(p.sum() - p[5] + 3.0)
    g = t.grow(100)
    assert g.total == pytest.approx(t.total) and g.capacity == 100
    with pytest.raises(ValueError, match="finite and >= 0"):
        t.set([0], [np.nan])


def test_per_sampling_frequencies_match_priorities(tmp_path):
    m = demo_online_store(tmp_path, n_demo=0, n_online=8)
    cfg = ReplayConfig(prioritized=True, per_alpha=0.6, per_eps=1e-3, per_beta0=0.4)
    s = ReplaySampler(m, config=cfg, seed=5)
    s.refresh()
    td = np.array([0.1, 0.5, 1.0, 2.0, 0.0, 4.0, 0.3, 8.0])
    assert s.update_priorities(np.arange(8), td) == 8
    leaf = (td + 1e-3) ** 0.6
    np.testing.assert_allclose(s.priorities(np.arange(8)), leaf)
    counts = np.zeros(8)
    draws = 2000
    for _ in range(draws):
        b = s.sample(32)
        counts += np.bincount(b.indices.numpy(), minlength=8)
    expected = draws * 32 * leaf / leaf.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 24.32  # chi-square, 7 degrees of freedom, p = 0.001


def test_importance_weights_follow_the_formula_and_beta_anneals(tmp_path):
    m = demo_online_store(tmp_path, n_demo=2, n_online=2)
    cfg = ReplayConfig(prioritized=True, per_alpha=1.0, per_eps=1e-3, per_demo_eps=1.0,
                       per_beta0=0.5, per_beta_steps=4)
    s = ReplaySampler(m, config=cfg, demo_fraction=0.5, seed=6)
    s.refresh()
    # handles: online 0, 1; demo capacity+0, capacity+1
    h = np.array([0, 1, m.capacity, m.capacity + 1])
    s.update_priorities(h, [1.0, 3.0, 0.0, 2.0])
    leaf = np.array([1.001, 3.001, 1.001, 3.001])  # demo rows get eps_D = 1 on top
    np.testing.assert_allclose(s.priorities(h), leaf)
    assert s.beta == 0.5
    b = s.sample(4)
    # fixed fraction 1/2: P(i) = 0.5 * p_i / sum over the pool; N = 4
    prob = {int(k): 0.5 * leaf[j] / (leaf[0] + leaf[1]) for j, k in enumerate(h)}
    w = np.array([(4 * prob[int(k)]) ** -0.5 for k in b.indices])
    np.testing.assert_allclose(b.weights.numpy(), w / w.max(), rtol=1e-6)
    for _ in range(3):
        s.sample(4)
    assert s.beta == 1.0 and s.sample_count == 4


def test_priority_updates_for_replaced_rows_are_skipped(tmp_path):
    m = demo_online_store(tmp_path, n_demo=0, n_online=4, capacity=4)
    s = ReplaySampler(m, prioritized=True, seed=0)
    s.refresh()
    b = s.sample(4)
    stale_rows = b.rows.clone()
    stale_rows[0] += 1
    assert s.update_priorities(b.indices, torch.zeros(4), rows=stale_rows) == 3
    with pytest.raises(ValueError, match=r"priorities\[1\] = -1.0 must be finite and >= 0"):
        s.update_priorities(b.indices[:2], [0.0, -1.0])
    with pytest.raises(ValueError, match="expected 4 values"):
        s.update_priorities(b.indices, [0.0])


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_restored_sampler_continues_exactly(tmp_path, prioritized):
    p = tmp_path / "r.zarr"
    obs, act = make_specs(4, 2)
    data = synthetic_rows(range(300), obs_dim=4, act_dim=2, episode_len=7)
    demo = synthetic_rows(range(40), obs_dim=4, act_dim=2, actor_session=5, source=D,
                          episode_base=999)
    w = ReplayWriter(p, obs, act, ReplayConfig(chunk_rows=16, fsync=False))
    w.append_batch({k: v[:200] for k, v in data.items()})
    w.append_batch(demo)
    w.flush()
    kw = dict(gamma=0.9, n_step=3, demo_fraction=0.5, prioritized=prioritized, seed=11)
    a = ReplaySampler(ReplayMirror(p, capacity=150), **kw)
    a.refresh()
    for _ in range(5):
        b = a.sample(32)
        a.update_priorities(b.indices, b.nstep_return.abs(), rows=b.rows)
    a.save(tmp_path / "sampler.safetensors")
    w.append_batch({k: v[200:] for k, v in data.items()})  # the store grows meanwhile
    w.close()
    c = ReplaySampler(ReplayMirror(p, capacity=150), **kw)
    c.load(tmp_path / "sampler.safetensors")
    for sampler in (a, c):
        sampler.refresh()
    for _ in range(6):
        x, y = a.sample(32), c.sample(32)
        for name in Batch._fields:
            assert torch.equal(getattr(x, name), getattr(y, name)), name
        for sampler, batch in ((a, x), (c, y)):
            sampler.update_priorities(batch.indices, batch.reward.abs() * 3, rows=batch.rows)
    other = ReplaySampler(ReplayMirror(p, capacity=150), **{**kw, "n_step": 2})
    with pytest.raises(ValueError, match="n_step was 3 when saved, is 2 now"):
        other.load(tmp_path / "sampler.safetensors")


def test_empty_mirror_and_bad_arguments(tmp_path):
    p = tmp_path / "e.zarr"
    ReplayWriter(p, OBS, ACT, CFG).close()
    s = ReplaySampler(ReplayMirror(p, capacity=10))
    s.refresh()
    with pytest.raises(ValueError, match="the replay mirror is empty"):
        s.sample(4)
    with pytest.raises(ValueError, match="demo_fraction must be in"):
        ReplaySampler(s.mirror, demo_fraction=1.5)
    with pytest.raises(ValueError, match=r"until=5 is beyond the store's commit point \(0 rows\)"):
        s.mirror.refresh(until=5)


def test_mirror_rows_match_the_store_across_growth_and_eviction(tmp_path):
    p = tmp_path / "g.zarr"
    obs, act = make_specs(4, 2)
    w = ReplayWriter(p, obs, act, ReplayConfig(chunk_rows=32, fsync=False))
    m = ReplayMirror(p, capacity=300, block_rows=64)
    seq = {"online": 0, "demo": 0}
    rng = np.random.default_rng(7)
    for step in range(12):  # online and demo rows in uneven steps; the demo part grows twice
        k_on, k_d = int(rng.integers(0, 200)), int(rng.integers(0, 400))
        w.append_batch(synthetic_rows(range(seq["online"], seq["online"] + k_on), obs_dim=4,
                                      act_dim=2, actor_session=1, episode_len=9))
        w.append_batch(synthetic_rows(range(seq["demo"], seq["demo"] + k_d), obs_dim=4, act_dim=2,
                                      actor_session=2, source=D, episode_len=9, episode_base=10**6))
        seq["online"] += k_on
        seq["demo"] += k_d
        w.flush()
        m.refresh()
        store = m.reader.read(0, m.mirrored)
        filled = np.flatnonzero(m.slot_row >= 0)
        assert len(filled) == m.n_demo + m.n_online
        for name in ("observation", "action", "next_observation", "reward", "source"):
            np.testing.assert_array_equal(m.cols[name][filled], store[name][m.slot_row[filled]])
        # every link joins consecutive steps of one episode
        a = np.flatnonzero(m.next_slot >= 0)
        b = m.next_slot[a]
        ra, rb = m.slot_row[a], m.slot_row[b]
        assert (store["episode_id"][ra] == store["episode_id"][rb]).all()
        assert (store["step_index"][rb] == store["step_index"][ra] + 1).all()
        assert (m.prev_slot[b] == a).all()
    w.close()
    assert m.n_demo == seq["demo"] and m.n_online == min(300, seq["online"])
