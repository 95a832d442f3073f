"""Exactly-once ingest: which (robot_id, actor_session, seq) keys the writer has already handled.

An actor numbers its transitions ``seq = 0, 1, 2, ...`` within a session and keeps each one until
it is acknowledged; after a crash of the replay (or a lost message) it re-sends everything not
acknowledged. The writer must store each key once, and acknowledge only what is durable.

Per (robot_id, actor_session) the state is a *watermark* ``w`` -- every seq in ``0..w`` has been
handled -- plus the set of handled seqs above ``w + 1`` (out-of-order arrivals). A seq is
*handled* when it was stored, or rejected as invalid (a bad row does not become good by being
re-sent, and must not block the acknowledgement of the rows after it). In-order traffic keeps the
set empty, so a check is a dictionary lookup and one comparison, and the state is O(sessions),
not O(rows).

The acknowledgement for a session is its watermark at the last commit: "every seq <= w of this
session is durably stored (or was refused)" -- the promise ``ReplayAck.committed_seq`` makes.
A session whose seq 0 was never seen has no acknowledgement yet (``-1``).

On reopen the state is rebuilt from the committed columns: the seqs of each session give the
watermark and the set above it. Rejected rows are not in the columns, so the watermarks are also
kept in the commit marker and the larger of the two is used.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


class SessionState:
    """Handled seqs of one (robot_id, actor_session): watermark + out-of-order set."""

    __slots__ = ("wm", "above")

    def __init__(self, wm: int = -1, above: Iterable[int] = ()) -> None:
        self.wm = wm
        self.above: set[int] = set(above)
        self._settle()

    def _settle(self) -> None:
        above = self.above
        if above:
            wm = self.wm
            while wm + 1 in above:
                wm += 1
                above.discard(wm)
            self.wm = wm
            # entries at or below the watermark are implied by it
            if any(s <= wm for s in above):
                self.above = {s for s in above if s > wm}

    def seen(self, seq: int) -> bool:
        return seq <= self.wm or seq in self.above

    def add(self, seq: int) -> None:
        """Mark ``seq`` handled (call only if not :meth:`seen`)."""
        if seq == self.wm + 1:
            self.wm = seq
            if self.above:
                self._settle()
        else:
            self.above.add(seq)

    def add_sorted_unique(self, seqs: np.ndarray) -> None:
        """Mark many seqs (sorted, unique, none seen) handled, vectorised where possible."""
        if len(seqs) == 0:
            return
        first = int(seqs[0])
        last = int(seqs[-1])
        if first == self.wm + 1 and last - first == len(seqs) - 1:
            self.wm = last
            if self.above:
                self._settle()
            return
        # leading contiguous run, then the rest into the set
        if first == self.wm + 1:
            expected = np.arange(first, first + len(seqs), dtype=np.uint64)
            run = int(np.argmin(seqs == expected)) if not np.array_equal(seqs, expected) else len(seqs)
            self.wm = int(seqs[run - 1])
            seqs = seqs[run:]
        self.above.update(int(s) for s in seqs)
        self._settle()


class DedupIndex:
    """All sessions' :class:`SessionState`, keyed by ``(robot_id, actor_session)``."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[int, int], SessionState] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def state(self, robot_id: int, session: int) -> SessionState:
        key = (robot_id, session)
        st = self.sessions.get(key)
        if st is None:
            st = self.sessions[key] = SessionState()
        return st

    def check_and_add(self, robot_id: int, session: int, seq: int) -> bool:
        """True if the key is new (and now marked handled); False for a duplicate."""
        st = self.sessions.get((robot_id, session))
        if st is None:
            st = self.sessions[(robot_id, session)] = SessionState()
        if seq <= st.wm or seq in st.above:
            return False
        if seq == st.wm + 1:
            st.wm = seq
            if st.above:
                st._settle()
        else:
            st.above.add(seq)
        return True

    def filter_new(self, robot_id: np.ndarray, session: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Mask of rows whose key is new (first occurrence, not seen before); marks them handled.

        Vectorised for the usual case of one session per batch with in-order seqs.
        """
        n = len(seq)
        if n == 0:
            return np.zeros(0, bool)
        r0, s0 = int(robot_id[0]), int(session[0])
        if robot_id.min() == robot_id.max() and session.min() == session.max():
            # the usual batch: one session, consecutive seqs right after its watermark
            st = self.sessions.get((r0, s0))
            first, last = int(seq[0]), int(seq[-1])
            if st is not None and not st.above and first == st.wm + 1 and last - first == n - 1 \
                    and (n == 1 or (np.diff(seq) == 1).all()):
                st.wm = last
                return np.ones(n, bool)
            groups = [(r0, s0, np.arange(n))]
        else:
            key = np.empty(n, dtype=[("r", "<u2"), ("s", "<u8")])
            key["r"], key["s"] = robot_id, session
            uniq, inv = np.unique(key, return_inverse=True)
            groups = [(int(u["r"]), int(u["s"]), np.flatnonzero(inv == g))
                      for g, u in enumerate(uniq)]
        new = np.zeros(n, bool)
        for r, s, idx in groups:
            st = self.state(r, s)
            sq = seq[idx]
            # fast path: strictly increasing, all above the watermark, nothing out of order
            if not st.above and int(sq[0]) > st.wm and (len(sq) == 1 or (np.diff(sq.astype(np.int64)) > 0).all()):
                new[idx] = True
                st.add_sorted_unique(sq)
                continue
            for j, q in zip(idx, sq.tolist()):
                if not (q <= st.wm or q in st.above):
                    new[j] = True
                    st.add(q)
        return new

    def watermarks(self) -> dict[tuple[int, int], int]:
        """``{(robot_id, session): watermark}`` (``-1``: seq 0 not handled yet)."""
        return {k: st.wm for k, st in self.sessions.items()}

    @classmethod
    def rebuild(cls, robot_id: np.ndarray, session: np.ndarray, seq: np.ndarray,
                watermarks: dict[tuple[int, int], int] | None = None) -> DedupIndex:
        """State from committed columns (plus watermarks saved in the commit marker)."""
        idx = cls()
        for k, wm in (watermarks or {}).items():
            idx.sessions[k] = SessionState(int(wm))
        n = len(seq)
        if n:
            order = np.lexsort((seq, session, robot_id))
            r, s, q = robot_id[order], session[order], seq[order]
            brk = np.flatnonzero((r[1:] != r[:-1]) | (s[1:] != s[:-1])) + 1
            starts = np.concatenate([[0], brk])
            ends = np.concatenate([brk, [n]])
            for a, b in zip(starts.tolist(), ends.tolist()):
                st = idx.state(int(r[a]), int(s[a]))
                sq = q[a:b]  # sorted (lexsort above): drop repeats without np.unique's hashing
                sq = sq[np.concatenate(([True], sq[1:] != sq[:-1]))]
                sq = sq[sq.astype(np.int64) > st.wm] if st.wm >= 0 else sq
                sq = sq[~np.isin(sq, np.fromiter(st.above, np.uint64, len(st.above)))] if st.above else sq
                st.add_sorted_unique(sq)
        return idx
