"""Sampling typed torch batches from the in-memory mirror: uniform or prioritized, with n-step.

Sampling loop of a learner::

    sampler = ReplaySampler(ReplayMirror(store_path, cfg.replay.capacity), gamma=0.99, n_step=3,
                            demo_fraction=0.5, config=cfg.replay, seed=cfg.run.seed)
    while training:
        sampler.refresh()                       # pick up newly committed rows (cheap if none)
        batch = sampler.sample(256)             # Batch of torch tensors (CPU)
        td = learner.step(batch.to(device))     # uses batch.weights for PER
        sampler.update_priorities(batch.indices, td.abs(), rows=batch.rows)

**Demo fraction.** With ``demo_fraction = f`` every batch holds ``round(f * B)`` rows of the
demo pool (demo and intervention rows, kept for ever) and the rest from the online pool (SERL /
RLPD use f = 0.5); when one pool is empty the other fills the batch. ``None`` samples the union
of both pools at their natural proportions (DDPGfD's single buffer).

**Prioritized replay** (Schaul et al. 2016; DDPGfD, Vecerik et al. 2017). Priorities live in one
sum-tree per pool (:mod:`robot_rl.replay.sumtree`); a leaf holds ``p_i^alpha`` with

    p_i = |delta_i| + eps + eps_D * [i is a demo/intervention row]

(``update_priorities`` takes ``|delta_i|``, or DDPGfD's ``delta^2 + lambda3 |grad_a Q|^2``);
new rows get the largest leaf seen so far, so each is sampled soon. Draws are stratified: the
pool's total mass is cut into equal segments and one prefix sum is drawn uniformly in each. The
probability of drawing row i is

    P(i) = f * p_i^alpha / sum_demo p^alpha        (demo row,   fixed fraction f)
    P(i) = (1 - f) * p_i^alpha / sum_online p^alpha (online row, fixed fraction f)
    P(i) = p_i^alpha / sum_all p^alpha              (demo_fraction None)

and its importance weight ``w_i = (N * P(i))^-beta / max_j w_j`` (N = rows in both pools, the max
over the batch), with ``beta`` annealed linearly from ``beta0`` to 1 over ``per_beta_steps``
calls of :meth:`ReplaySampler.sample`. Uniform sampling returns weights of 1.

**n-step targets** follow the per-row "next row of the same episode" links of the mirror, so
rows of interleaved robots never mix. From row t, with m <= n the number of rows actually used,

    G_t^(n) = sum_{k=0}^{m-1} gamma^k r_{t+k}
    target  = G_t^(n) + nstep_discount * Q'(nstep_next_observation, pi'(...)),
    nstep_discount = gamma^m * (1 - terminated_{t+m-1})

The walk stops after a terminated row (no bootstrap: discount 0), after a truncated row
(time limit: bootstrap from that row's ``next_observation`` with ``gamma^m``), and where the
successor is not in the mirror (not committed yet, or evicted: bootstrap from the last row's
``next_observation``, a shorter return). The 1-step fields (``reward``, ``next_observation``,
``discount = gamma * (1 - terminated)``) come alongside, for DDPGfD's mix of 1-step and n-step
losses. With ``n_step = 1`` the n-step fields are the 1-step tensors themselves.

**State** (:meth:`ReplaySampler.state_dict` / :meth:`save` / :meth:`load`): the priorities,
RNG state, counters and the store rows in both pools, as safetensors + JSON metadata (never
pickle). A learner that restores it continues with exactly the batches the saved one would
have drawn next.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from robot_rl.config import ReplayConfig
from robot_rl.replay.her import HindsightRelabeler
from robot_rl.replay.mirror import ReplayMirror
from robot_rl.replay.schema import Source
from robot_rl.replay.sumtree import SumTree

STATE_FORMAT = "robot_rl.replay.sampler/1"
_POLICY = int(Source.POLICY)


class Batch(NamedTuple):
    """A training batch (CPU torch tensors, first axis = batch).

    Attributes:
        observation, action, next_observation: float32 (B, dim) -- s_t, a_t, s_{t+1}.
        reward: float32 (B,) -- r_t.
        terminated, truncated: float32 (B,) 0/1.
        discount: float32 (B,) -- gamma * (1 - terminated): the 1-step bootstrap factor.
        nstep_return: float32 (B,) -- G_t^(n) (see the module docstring).
        nstep_discount: float32 (B,) -- gamma^m * (1 - terminated at the last row used).
        nstep_next_observation: float32 (B, obs_dim) -- where the n-step target bootstraps.
        nstep_length: int64 (B,) -- m, the rewards summed (1..n).
        weights: float32 (B,) -- importance weights (1 for uniform sampling).
        indices: int64 (B,) -- the rows' slots in the mirror (ring position, or capacity + demo
            position), for :meth:`ReplaySampler.update_priorities`.
        rows: int64 (B,) -- store rows (to detect rows replaced since sampling).
        is_demo: bool (B,) -- row from the demo pool (demo or intervention).
        source: uint8 (B,) -- 0 policy, 1 demo, 2 intervention.
    """

    observation: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_observation: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    discount: torch.Tensor
    nstep_return: torch.Tensor
    nstep_discount: torch.Tensor
    nstep_next_observation: torch.Tensor
    nstep_length: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    rows: torch.Tensor
    is_demo: torch.Tensor
    source: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch on ``device``."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


class ReplaySampler:
    """Uniform or prioritized sampling (with n-step targets) from a :class:`ReplayMirror`.

    Not thread-safe (one learner thread samples, refreshes and updates priorities).

    Args:
        mirror: the in-memory mirror to sample (refreshed through :meth:`refresh`).
        gamma: discount factor.
        n_step: n of the n-step return (1: plain 1-step).
        demo_fraction: share of each batch from the demo pool, or ``None`` for the union.
        config: PER settings (``prioritized``, ``per_alpha``, ``per_beta0``, ``per_beta_steps``,
            ``per_eps``, ``per_demo_eps``); ``prioritized`` below overrides the config's.
        seed: seed of the sampler's RNG (numpy PCG64).
    """

    def __init__(self, mirror: ReplayMirror, *, gamma: float = 0.99, n_step: int = 1,
                 demo_fraction: float | None = None, config: ReplayConfig | None = None,
                 prioritized: bool | None = None, seed: int = 0,
                 her: HindsightRelabeler | None = None) -> None:
        cfg = config or ReplayConfig()
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if demo_fraction is not None and not 0 <= demo_fraction <= 1:
            raise ValueError(f"demo_fraction must be in [0, 1] or None, got {demo_fraction}")
        self.mirror = mirror
        self.gamma = float(gamma)
        self.n_step = int(n_step)
        self.demo_fraction = None if demo_fraction is None else float(demo_fraction)
        self.prioritized = cfg.prioritized if prioritized is None else bool(prioritized)
        if her is not None and n_step > 1:
            raise ValueError(f"hindsight relabelling ({her.strategy}) with n_step {n_step}: the "
                             "n-step return would need every reward of the walk relabelled; "
                             "use n_step 1 with HER")
        if her is not None and self.prioritized:
            raise ValueError(f"hindsight relabelling ({her.strategy}) with prioritized replay: a "
                             "relabelled row's TD error is not its stored row's; use uniform "
                             "sampling with HER")
        #: hindsight goal relabelling (:mod:`robot_rl.replay.her`), or None
        self.her = her
        self.alpha = cfg.per_alpha
        self.beta0 = cfg.per_beta0
        self.beta_steps = cfg.per_beta_steps
        self.eps = cfg.per_eps
        self.demo_eps = cfg.per_demo_eps
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.sample_count = 0
        self.max_leaf = 1.0
        self._gpow = self.gamma ** np.arange(self.n_step + 1)
        self._uniform_key: tuple | None = None
        self._uniform_cache: tuple = ()
        self._demo_tree = SumTree(1024)
        self._online_tree = SumTree(mirror.capacity)
        self._prioritize_mirrored_rows()

    # ------------------------------------------------------------------ refresh

    def refresh(self, until: int | None = None) -> int:
        """Mirror newly committed rows (see :meth:`ReplayMirror.refresh`); return rows read."""
        res = self.mirror.refresh(until)
        if self.prioritized:
            if res.demo_positions:
                self._ensure_demo_tree(res.demo_positions.stop)
                self._demo_tree.set(np.arange(res.demo_positions.start, res.demo_positions.stop),
                                    self.max_leaf)
            if len(res.online_positions):
                self._online_tree.set(res.online_positions, self.max_leaf)
        return res.rows

    def _prioritize_mirrored_rows(self) -> None:
        """Give every row already in the mirror the initial priority (at construction)."""
        m = self.mirror
        if not self.prioritized:
            return
        if m.n_demo:
            self._ensure_demo_tree(m.n_demo)
            self._demo_tree.set(np.arange(m.n_demo), self.max_leaf)
        if m.n_online:
            self._online_tree.set(np.arange(m.n_online), self.max_leaf)

    def _ensure_demo_tree(self, n: int) -> None:
        if n > self._demo_tree.capacity:
            self._demo_tree = self._demo_tree.grow(max(n, 2 * self._demo_tree.capacity))

    @property
    def beta(self) -> float:
        """The importance-weight exponent for the next sample: beta0 -> 1 linearly."""
        return self.beta0 + (1.0 - self.beta0) * min(1.0, self.sample_count / self.beta_steps)

    # ------------------------------------------------------------------ sampling

    def _split(self, batch_size: int) -> int:
        """Rows of the batch drawn from the demo pool (fixed-fraction mode)."""
        n_d, n_o = self.mirror.n_demo, self.mirror.n_online
        if n_d == 0:
            return 0
        if n_o == 0:
            return batch_size
        return int(round(batch_size * self.demo_fraction))

    def _draw_uniform(self, B: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform positions in the pools: ``floor(U * n)`` with ``U ~ U[0, 1)`` (53 bits).

        ``U <= 1 - 2**-53`` makes ``U * n`` round below ``n`` for every ``n < 2**53``, so no
        clamp is needed.
        """
        m = self.mirror
        n_d, n_o = m.n_demo, min(m.online_seen, m.capacity)
        cap = m.capacity
        x = self.rng.random(B)
        if self.demo_fraction is None:
            u = (x * (n_d + n_o)).astype(np.int64)
            slots = np.where(u < n_d, cap + u, u - n_d)
            return slots, slots
        key = (B, n_d, n_o)
        if self._uniform_key != key:  # per-row pool sizes and handle offsets, cached
            k = self._split(B)
            scale = np.full(B, float(n_o))
            scale[:k] = n_d
            offset = np.zeros(B, np.int64)
            offset[:k] = cap
            self._uniform_key, self._uniform_cache = key, (k, scale, offset)
        _k, scale, offset = self._uniform_cache
        slots = (x * scale).astype(np.int64)
        slots += offset
        return slots, slots

    def _stratified(self, tree: SumTree, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k positions from ``tree`` by stratified proportional sampling, and their leaves."""
        total = tree.total
        u = (np.arange(k) + self.rng.random(k)) * (total / k)
        pos = tree.find(np.minimum(u, np.nextafter(total, 0)))
        return pos, tree.get(pos)

    def _draw_prioritized(self, B: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.mirror
        n_d, n_o = m.n_demo, m.n_online
        td, to = self._demo_tree, self._online_tree
        if self.demo_fraction is None:
            sd, so = td.total if n_d else 0.0, to.total if n_o else 0.0
            total = sd + so
            u = (np.arange(B) + self.rng.random(B)) * (total / B)
            u = np.minimum(u, np.nextafter(total, 0))
            demo = u < sd
            pos = np.empty(B, np.int64)
            if demo.any():
                pos[demo] = td.find(u[demo])
            if (~demo).any():
                pos[~demo] = to.find(np.minimum(u[~demo] - sd, np.nextafter(so, 0)))
            leaf = np.where(demo, td.get(np.where(demo, pos, 0)), to.get(np.where(demo, 0, pos)))
            prob = leaf / total
        else:
            k = self._split(B)
            pd, ld = self._stratified(td, k) if k else (np.zeros(0, np.int64), np.zeros(0))
            po, lo = self._stratified(to, B - k) if B - k else (np.zeros(0, np.int64), np.zeros(0))
            demo = np.zeros(B, bool)
            demo[:k] = True
            pos = np.concatenate([pd, po])
            fd = k / B if n_o else 1.0
            fd = fd if n_d else 0.0
            prob = np.concatenate([fd * ld / td.total if k else ld,
                                   (1.0 - fd) * lo / to.total if B - k else lo])
        slots = np.where(demo, m.capacity + pos, pos)
        n = n_d + n_o
        w = (n * prob) ** (-self.beta)
        w /= w.max()
        return slots, slots, w

    def sample(self, batch_size: int) -> Batch:
        """Draw one batch (see the module docstring for the distribution and the targets)."""
        m = self.mirror
        if batch_size < 1 or m.n_demo + m.online_seen == 0:
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            raise ValueError("the replay mirror is empty: nothing committed yet (call refresh())")
        if self.prioritized:
            handles, slots, w = self._draw_prioritized(batch_size)
            weights = torch.from_numpy(w.astype(np.float32))
        else:
            handles, slots = self._draw_uniform(batch_size)
            weights = torch.ones(batch_size, dtype=torch.float32)
        self.sample_count += 1
        c = m.cols
        take = np.take  # rows of 2-D columns: np.take; 1-D columns: indexing (faster in numpy)
        obs_np = take(c["observation"], slots, axis=0)
        nobs_np = take(c["next_observation"], slots, axis=0)
        rew_np = c["reward"][slots]
        term_np = c["terminated"][slots].astype(np.float32)
        trunc_np = c["truncated"][slots].astype(np.float32)
        if self.her is not None:  # copies above: the mirror keeps what happened
            self.her.relabel(m, self.rng, slots, obs_np, nobs_np, rew_np, term_np, trunc_np)
        src = c["source"][slots]
        reward = torch.from_numpy(rew_np)
        nobs = torch.from_numpy(nobs_np)
        discount = torch.from_numpy((self.gamma * (1.0 - term_np)).astype(np.float32))
        if self.n_step == 1:
            n_ret, n_disc, n_next = reward, discount, nobs
            n_len = torch.ones(batch_size, dtype=torch.int64)
        else:
            g, d, last, length = self._nstep(slots, rew_np, term_np)
            n_ret, n_disc = torch.from_numpy(g), torch.from_numpy(d)
            n_next = torch.from_numpy(take(c["next_observation"], last, axis=0))
            n_len = torch.from_numpy(length)
        return Batch(
            torch.from_numpy(obs_np),
            torch.from_numpy(take(c["action"], slots, axis=0)),
            reward,
            nobs,
            torch.from_numpy(term_np),
            torch.from_numpy(trunc_np),
            discount,
            n_ret,
            n_disc,
            n_next,
            n_len,
            weights,
            torch.from_numpy(handles),
            torch.from_numpy(m.slot_row[slots]),
            torch.from_numpy(src != _POLICY),
            torch.from_numpy(src),
        )

    def _nstep(self, slots: np.ndarray, rew: np.ndarray, term: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """n-step return, bootstrap discount, last slot used and m for each start slot.

        Walks the mirror's next-row-of-the-episode links; the mirror never links a row that
        ended its episode (terminated or truncated), so a missing link is where every walk stops.
        """
        c = self.mirror.cols
        nxt = self.mirror.next_slot
        reward = c["reward"]
        g = rew.astype(np.float64)
        cur = slots
        length = np.ones(len(slots), np.int64)
        for k in range(1, self.n_step):
            cand = nxt[cur]
            go = cand >= 0
            if not go.any():
                break
            cur = np.where(go, cand, cur)
            g += (self._gpow[k] * go) * reward[cur]
            length += go
        last_term = c["terminated"][cur] if self.n_step > 1 else term.astype(bool)
        disc = self._gpow[length] * ~last_term
        return g.astype(np.float32), disc.astype(np.float32), cur, length

    # ------------------------------------------------------------------ priorities

    def update_priorities(self, indices: Any, priorities: Any, rows: Any = None) -> int:
        """Set priorities ``p = |delta|`` (>= 0) of sampled rows; return how many were set.

        ``indices`` are :attr:`Batch.indices`; pass :attr:`Batch.rows` as ``rows`` to skip rows
        whose ring position was taken by a newer row since the batch was drawn.
        """
        if not self.prioritized:
            return 0
        h = _numpy(indices).astype(np.int64).reshape(-1)
        p = _numpy(priorities).astype(np.float64).reshape(-1)
        if h.shape != p.shape:
            raise ValueError(f"priorities: expected {h.shape[0]} values (one per index), got "
                             f"{p.shape[0]}")
        if not (np.isfinite(p).all() and (len(p) == 0 or p.min() >= 0)):
            bad = int(np.flatnonzero(~np.isfinite(p) | (p < 0))[0])
            raise ValueError(f"priorities[{bad}] = {p[bad]} must be finite and >= 0")
        m = self.mirror
        demo = h >= m.capacity
        pos = np.where(demo, h - m.capacity, h)
        if len(h) and (pos.min() < 0 or (pos >= np.where(demo, m.n_demo, m.n_online)).any()):
            raise ValueError("indices: not handles of the current mirror (use Batch.indices)")
        if rows is not None:
            r = _numpy(rows).astype(np.int64).reshape(-1)
            if r.shape != h.shape:
                raise ValueError(f"rows: expected {h.shape[0]} values, got {r.shape[0]}")
            ok = m.slot_row[h] == r
            h, p, demo = h[ok], p[ok], demo[ok]
        leaf = (p + self.eps + self.demo_eps * demo) ** self.alpha
        if demo.any():
            self._demo_tree.set(h[demo] - m.capacity, leaf[demo], checked=True)
        if not demo.all():
            self._online_tree.set(h[~demo], leaf[~demo], checked=True)
        if len(leaf):
            self.max_leaf = max(self.max_leaf, float(leaf.max()))
        return len(leaf)

    def priorities(self, indices: Any) -> np.ndarray:
        """Current leaf values ``p^alpha`` of handles (for tests and diagnostics)."""
        h = _numpy(indices).astype(np.int64).reshape(-1)
        demo = h >= self.mirror.capacity
        out = np.empty(h.shape, np.float64)
        out[demo] = self._demo_tree.get(h[demo] - self.mirror.capacity)
        out[~demo] = self._online_tree.get(h[~demo])
        return out

    # ------------------------------------------------------------------ state

    def _settings(self) -> dict[str, Any]:
        return {"capacity": self.mirror.capacity, "gamma": self.gamma, "n_step": self.n_step,
                "demo_fraction": self.demo_fraction, "prioritized": self.prioritized,
                "alpha": self.alpha, "beta0": self.beta0, "beta_steps": self.beta_steps,
                "eps": self.eps, "demo_eps": self.demo_eps,
                "her": None if self.her is None else [self.her.strategy, self.her.k]}

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)``: everything a resumed learner needs to continue exactly."""
        m = self.mirror
        arrays = {
            "demo_rows": m.demo_rows().copy(),
            "online_rows": m.online_rows().copy(),
            "demo_priorities": self._demo_tree.leaves[: m.n_demo].copy(),
            "online_priorities": self._online_tree.leaves[: m.n_online].copy(),
        }
        meta = {
            "format": STATE_FORMAT,
            "settings": self._settings(),
            "mirrored": m.mirrored,
            "sample_count": self.sample_count,
            "max_leaf": self.max_leaf,
            "rng": self.rng.bit_generator.state,
        }
        return arrays, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output. The mirror is refreshed up to the saved commit
        point first (it must not be past it); settings and pool rows must match."""
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"sampler state: format {meta.get('format')!r}, expected "
                             f"{STATE_FORMAT!r}")
        mine = self._settings()
        for k, v in meta["settings"].items():
            if mine.get(k) != v:
                raise ValueError(f"sampler state: {k} was {v!r} when saved, is {mine.get(k)!r} now")
        m = self.mirror
        saved = int(meta["mirrored"])
        if m.mirrored > saved:
            raise ValueError(f"sampler state: the mirror already holds {m.mirrored} rows, the state "
                             f"was saved at {saved}; restore into a fresh mirror")
        self.refresh(until=saved)
        for name, mine_rows in (("demo_rows", m.demo_rows()), ("online_rows", m.online_rows())):
            if not np.array_equal(mine_rows, arrays[name]):
                raise ValueError(f"sampler state: {name} differ from the store's (another store, "
                                 "or a different capacity?)")
        if self.prioritized:
            self._ensure_demo_tree(max(m.n_demo, 1))
            self._demo_tree.set_all(arrays["demo_priorities"])
            self._online_tree.set_all(arrays["online_priorities"])
        self.sample_count = int(meta["sample_count"])
        self.max_leaf = float(meta["max_leaf"])
        state = meta["rng"]
        self.rng = np.random.Generator(np.random.PCG64())
        self.rng.bit_generator.state = state

    def save(self, path: str | Path) -> None:
        """Write the state as a safetensors file (arrays) with JSON metadata."""
        from safetensors.numpy import save_file

        arrays, meta = self.state_dict()
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path),
                  metadata={"robot_rl_replay_sampler": json.dumps(meta)})

    def load(self, path: str | Path) -> None:
        """Restore a state written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta_raw = (f.metadata() or {}).get("robot_rl_replay_sampler")
            if meta_raw is None:
                raise ValueError(f"{path}: not a replay sampler state (no metadata)")
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        self.load_state_dict(arrays, json.loads(meta_raw))


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
