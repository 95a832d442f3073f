"""The learner's in-memory mirror of a replay store: what the sampler draws from.

The store is the durable log; sampling reads RAM (random reads from zarr manage a few batches a
second). :meth:`ReplayMirror.refresh` tails the store -- it re-reads the commit marker and copies
the newly committed rows into numpy arrays -- and keeps, per DESIGN §4:

* every **demo and intervention** row, for ever (the *demo pool*, in store order);
* the newest ``capacity`` **policy** rows (the *online pool*, a ring): the online row of rank
  ``k`` (its position among all policy rows of the store) sits at ring position
  ``k mod capacity``, so older online rows drop out of sampling oldest-first, and the layout
  depends only on the store, not on when or in how many steps it was mirrored (a resumed learner
  gets the same pools).

Rows live in *slots* of the column arrays, and a slot is the row's place in its pool: slots
``0 .. capacity-1`` are the ring (online row of rank k at slot ``k mod capacity``, overwritten
when a newer online row evicts it), slots ``capacity + d`` the demo pool (its d-th row). So a
sampled position needs no table lookup, and the slot doubles as the handle the sampler returns.
The ring's part of the arrays is allocated at once but only touched as it fills (``np.zeros``
pages cost no memory until written); the demo part grows geometrically.

**Episode links.** Rows of several robots interleave in the store, and an episode's rows need not
be contiguous (or even in order, after a re-send). Each slot therefore records the slot of the
*next row of the same episode* -- same ``(robot_id, episode_id)``, ``step_index + 1`` -- or -1
when there is none (yet): the row ended the episode (terminated or truncated), its successor is
not committed yet, or was evicted. n-step returns follow these links. Links are made when rows
are mirrored: vectorised within a block (sort by robot, episode, step), and through two small
dictionaries for the rows at block edges (an episode still running, or a successor that arrived
before its predecessor).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.replay.schema import COLUMN_BY_NAME, Source
from robot_rl.replay.store import ReplayReader

#: Columns the mirror keeps per slot (what a training batch needs).
MIRROR_COLUMNS = ("observation", "action", "next_observation", "reward", "terminated",
                  "truncated", "source")
#: Columns read only while linking episodes.
_LINK_COLUMNS = ("robot_id", "episode_id", "step_index")


@dataclass(frozen=True)
class RefreshResult:
    """What one :meth:`ReplayMirror.refresh` added.

    Attributes:
        rows: store rows read (committed rows newly seen, kept or not).
        demo_positions: demo-pool positions filled, ``range(d0, d1)``.
        online_positions: ring positions (re)written, in the order written.
    """

    rows: int
    demo_positions: range
    online_positions: np.ndarray


class ReplayMirror:
    """In-memory copy of the committed rows of a store, in a demo pool and an online ring.

    Args:
        source: a :class:`ReplayReader` or a store path / URL.
        capacity: online rows kept for sampling (``ReplayConfig.capacity``).
        block_rows: rows read from the store per step while refreshing (bounds temporary memory).
    """

    def __init__(self, source: ReplayReader | str | Path, capacity: int, *,
                 block_rows: int = 1 << 16, storage_options: dict[str, Any] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.reader = source if isinstance(source, ReplayReader) else ReplayReader(
            source, storage_options=storage_options)
        self.capacity = int(capacity)
        self.block_rows = max(int(block_rows), self.reader.chunk_rows)
        self.observation_spec = self.reader.observation_spec
        self.action_spec = self.reader.action_spec
        self.obs_dim, self.act_dim = self.observation_spec.dim, self.action_spec.dim
        #: store rows processed so far (the commit point this mirror reflects)
        self.mirrored = 0
        self.n_demo = 0
        self.online_seen = 0  # policy rows in the mirrored part of the store (evicted included)
        # slots: [0, capacity) the ring, [capacity, capacity + demo room) the demo pool
        self._demo_room = 0
        self.cols: dict[str, np.ndarray] = {}
        self.slot_row = np.zeros(0, np.int64)   # store row of each slot, -1: empty
        self.next_slot = np.zeros(0, np.int64)  # next row of the same episode, -1: none
        self.prev_slot = np.zeros(0, np.int64)
        self._alloc(0)
        # episode edges waiting for a partner: key (robot, episode, step) -> (slot, row)
        self._succ_wanted: dict[tuple[int, int, int], tuple[int, int]] = {}
        self._pred_wanted: dict[tuple[int, int, int], tuple[int, int]] = {}
        self._purge_at = 1 << 14

    # ------------------------------------------------------------------ sizes

    @property
    def n_online(self) -> int:
        """Online rows available for sampling (<= capacity)."""
        return min(self.online_seen, self.capacity)

    def __len__(self) -> int:
        return self.n_demo + self.n_online

    def demo_rows(self) -> np.ndarray:
        """Store rows of the demo pool, by position."""
        return self.slot_row[self.capacity:self.capacity + self.n_demo]

    def online_rows(self) -> np.ndarray:
        """Store rows of the online ring, by ring position."""
        return self.slot_row[:self.n_online]

    def _alloc(self, demo_room: int) -> None:
        """(Re)allocate the arrays for the ring plus ``demo_room`` demo slots; keep the data."""
        cap = self.capacity
        total = cap + demo_room
        used = [(0, self.n_online), (cap, cap + self.n_demo)]  # copy only what is filled
        shapes = {"observation": (self.obs_dim,), "next_observation": (self.obs_dim,),
                  "action": (self.act_dim,)}
        for name in MIRROR_COLUMNS:
            new = np.zeros((total, *shapes.get(name, ())), COLUMN_BY_NAME[name].dtype)
            if name in self.cols:
                for a, b in used:
                    new[a:b] = self.cols[name][a:b]
            self.cols[name] = new
        for attr in ("slot_row", "next_slot", "prev_slot"):
            old = getattr(self, attr)
            new = np.full(total, -1, np.int64)
            for a, b in used:
                if b > a:
                    new[a:b] = old[a:b]
            setattr(self, attr, new)
        self._demo_room = demo_room

    def _ensure_demo_room(self, n: int) -> None:
        if n > self._demo_room:
            self._alloc(max(n, 2 * self._demo_room, 1024))

    # ------------------------------------------------------------------ refresh

    def refresh(self, until: int | None = None) -> RefreshResult:
        """Mirror the rows committed since the last call (up to row ``until`` if given).

        ``until`` beyond the commit point is refused (``ValueError``); so is going backwards.
        """
        length = self.reader.commit().length
        if until is not None:
            if until > length:
                raise ValueError(f"until={until} is beyond the store's commit point ({length} rows)")
            if until < self.mirrored:
                raise ValueError(f"until={until} is before rows already mirrored ({self.mirrored})")
            length = until
        start = self.mirrored
        d0 = self.n_demo
        if length <= start:
            return RefreshResult(0, range(d0, d0), np.zeros(0, np.int64))
        # Which rows will be kept: all demo/intervention rows, and of the policy rows only those
        # among the newest `capacity` after this refresh (older ones would be evicted anyway).
        src = self.reader.read(start, length, ("source",), length=length)["source"]
        online = src == Source.POLICY
        n_on = int(online.sum())
        first_kept_rank = self.online_seen + n_on - self.capacity  # ranks below this: not kept
        rank = self.online_seen + np.cumsum(online) - 1
        keep = ~online | (rank >= first_kept_rank)
        # room for every new demo row at once (growing block by block would copy more often)
        self._ensure_demo_room(self.n_demo + int((~online).sum()))
        written: list[np.ndarray] = []
        for a in range(start, length, self.block_rows):
            b = min(a + self.block_rows, length)
            k = keep[a - start:b - start]
            if k.any():
                written.append(self._ingest_block(a, b, k, rank[a - start:b - start],
                                                  online[a - start:b - start], length))
        self.online_seen += n_on
        self.mirrored = length
        if len(self._succ_wanted) + len(self._pred_wanted) > self._purge_at:
            self._purge_links()
        pos = np.concatenate(written) if written else np.zeros(0, np.int64)
        return RefreshResult(length - start, range(d0, self.n_demo), pos)

    def _ingest_block(self, a: int, b: int, keep: np.ndarray, rank: np.ndarray,
                      online: np.ndarray, length: int) -> np.ndarray:
        data = self.reader.read(a, b, MIRROR_COLUMNS + _LINK_COLUMNS, length=length)
        idx = np.flatnonzero(keep)
        rows = a + idx
        is_on = online[idx]
        n = len(idx)
        # --- slots: an online row goes to its ring position (evicting the row there, if any),
        # a demo row to the next demo slot
        slots = np.empty(n, np.int64)
        ring_pos = rank[idx][is_on] % self.capacity
        slots[is_on] = ring_pos
        n_d = n - len(ring_pos)
        slots[~is_on] = self.capacity + self.n_demo + np.arange(n_d)
        self.n_demo += n_d
        evicted = ring_pos[self.slot_row[ring_pos] >= 0]
        if len(evicted):
            self._unlink(evicted)
        # --- data
        for name in MIRROR_COLUMNS:
            self.cols[name][slots] = data[name][idx]
        self.slot_row[slots] = rows
        self.next_slot[slots] = -1
        self.prev_slot[slots] = -1
        # --- episode links
        ends = data["terminated"][idx] | data["truncated"][idx]
        self._link(slots, rows, data["robot_id"][idx], data["episode_id"][idx],
                   data["step_index"][idx], ends)
        return ring_pos.astype(np.int64)

    def _unlink(self, slots: np.ndarray) -> None:
        """Cut the episode links into and out of slots about to be reused."""
        p = self.prev_slot[slots]
        ok = p >= 0
        p, s = p[ok], slots[ok]
        hit = self.next_slot[p] == s
        self.next_slot[p[hit]] = -1
        nx = self.next_slot[slots]
        ok = nx >= 0
        nx, s = nx[ok], slots[ok]
        hit = self.prev_slot[nx] == s
        self.prev_slot[nx[hit]] = -1

    def _connect(self, a: int, b: int) -> None:
        self.next_slot[a] = b
        self.prev_slot[b] = a

    def _link(self, slots: np.ndarray, rows: np.ndarray, robot: np.ndarray, episode: np.ndarray,
              step: np.ndarray, ends: np.ndarray) -> None:
        order = np.lexsort((rows, step, episode, robot))
        s, r, e, t, end = slots[order], robot[order], episode[order], step[order], ends[order]
        row = rows[order]
        n = len(s)
        if n == 0:
            return
        same = (r[1:] == r[:-1]) & (e[1:] == e[:-1])
        consecutive = same & (t[1:].astype(np.int64) == t[:-1].astype(np.int64) + 1)
        link = consecutive & ~end[:-1]
        self.next_slot[s[:-1][link]] = s[1:][link]
        self.prev_slot[s[1:][link]] = s[:-1][link]
        # block edges: heads may have a predecessor from an earlier block, tails a successor
        head = np.ones(n, bool)
        head[1:] = ~consecutive
        tail = np.ones(n, bool)
        tail[:-1] = ~consecutive
        tail &= ~end
        succ, pred = self._succ_wanted, self._pred_wanted
        slot_row = self.slot_row
        for i in np.flatnonzero(head & (t > 0)).tolist():
            key = (int(r[i]), int(e[i]), int(t[i]))
            got = succ.pop(key, None)
            if got is not None and slot_row[got[0]] == got[1] and self.next_slot[got[0]] < 0:
                self._connect(got[0], int(s[i]))
            else:
                pred[(key[0], key[1], key[2] - 1)] = (int(s[i]), int(row[i]))
        for i in np.flatnonzero(tail).tolist():
            key = (int(r[i]), int(e[i]), int(t[i]))
            got = pred.pop(key, None)
            if got is not None and slot_row[got[0]] == got[1] and self.prev_slot[got[0]] < 0:
                self._connect(int(s[i]), got[0])
            else:
                succ[(key[0], key[1], key[2] + 1)] = (int(s[i]), int(row[i]))

    def _purge_links(self) -> None:
        """Drop waiting edges whose slot was reused by another row since."""
        for d in (self._succ_wanted, self._pred_wanted):
            stale = [k for k, (slot, row) in d.items() if self.slot_row[slot] != row]
            for k in stale:
                del d[k]
        self._purge_at = max(1 << 14, 2 * (len(self._succ_wanted) + len(self._pred_wanted)))

