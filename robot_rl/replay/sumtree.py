"""A sum-tree in numpy, vectorised: priorities at the leaves, sums in the inner nodes.

Leaves ``0..capacity-1`` live at ``tree[size + i]`` (``size`` = capacity rounded up to a power of
two); node ``k`` holds ``tree[2k] + tree[2k+1]``. Every operation works on a whole batch of
indices at once.

The top of the tree is kept differently: the *top level* ``t = min(depth, TOP)`` (at most
``2**TOP`` nodes) is the highest level stored as sums; above it, instead of ``t`` more levels
of nodes, :meth:`SumTree.find` uses the prefix sums of the top level (one ``np.cumsum``, cached
until the next update), and ``total`` is their last element. Same results as a full tree, fewer
numpy calls per batch (each level costs a handful of them; the top ``TOP`` levels would cost as
much as the bottom ones but hold only a few thousand nodes).

* :meth:`SumTree.set` writes leaves and recomputes their ancestors up to the top level, level by
  level (parents are recomputed from their children, so no rounding error builds up however many
  updates there are);
* :meth:`SumTree.find` maps prefix sums ``u`` to leaves: ``searchsorted`` in the top level's
  prefix sums, then down the tree: go left if ``u < tree[left]``, else subtract ``tree[left]`` and
  go right. The leaf ``i`` returned satisfies ``sum(p[:i]) <= u < sum(p[:i+1])``, so for
  ``u ~ U[0, total)`` leaf i is drawn with probability ``P(i) = p_i / total``. A leaf of
  priority 0 is never returned.
"""
from __future__ import annotations

import numpy as np


class SumTree:
    """Sum-tree over ``capacity`` non-negative float64 leaves (all 0 at the start)."""

    #: the top level holds at most 2**TOP nodes; the levels above it are prefix sums
    TOP = 12

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.size = 1 << max(0, (self.capacity - 1).bit_length())
        self.depth = self.size.bit_length() - 1  # levels below the root
        self.top = min(self.depth, self.TOP)     # top level: nodes [2**top, 2**(top+1))
        self.tree = np.zeros(2 * self.size, np.float64)
        self._cs: np.ndarray | None = None

    # ------------------------------------------------------------------ reads

    def _prefix(self) -> np.ndarray:
        """Prefix sums of the top level (cached until the next update)."""
        if self._cs is None:
            t = self.top
            self._cs = np.cumsum(self.tree[1 << t:2 << t])
        return self._cs

    @property
    def total(self) -> float:
        return float(self._prefix()[-1])

    @property
    def leaves(self) -> np.ndarray:
        """View of the leaf values (do not write through it; use :meth:`set`)."""
        return self.tree[self.size:self.size + self.capacity]

    def get(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[self.size + np.asarray(idx, np.int64)]

    # ------------------------------------------------------------------ writes

    def set(self, idx: np.ndarray, values: np.ndarray, *, checked: bool = False) -> None:
        """Set leaves ``idx`` to ``values`` (>= 0, finite) and update the sums above them.

        ``checked=True`` skips the argument checks (for callers that validated already).
        """
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size == 0:
            return
        values = np.asarray(values, np.float64)
        if values.shape != idx.shape:
            values = np.broadcast_to(values, idx.shape)
        if not checked:
            if idx.min() < 0 or idx.max() >= self.capacity:
                raise ValueError(f"leaf index out of range [0, {self.capacity})")
            if not (np.isfinite(values).all() and values.min() >= 0):
                raise ValueError("priorities must be finite and >= 0")
        tree = self.tree
        self._cs = None
        node = idx + self.size
        tree[node] = values
        # All leaves sit at one depth, so each pass handles one whole level; a repeated parent
        # is recomputed twice from the same (final) children, which is harmless.
        left = np.empty_like(node)
        for _ in range(self.depth - self.top):
            node >>= 1
            np.left_shift(node, 1, out=left)
            s = np.take(tree, left)
            left |= 1
            s += np.take(tree, left)
            tree[node] = s

    def set_all(self, values: np.ndarray) -> None:
        """Replace every leaf (``len(values) <= capacity``; the rest become 0) and rebuild."""
        values = np.asarray(values, np.float64)
        if len(values) > self.capacity:
            raise ValueError(f"{len(values)} values for {self.capacity} leaves")
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("priorities must be finite and >= 0")
        self._cs = None
        self.tree[:] = 0.0
        self.tree[self.size:self.size + len(values)] = values
        lo = self.size
        while lo > (1 << self.top):
            half = lo // 2
            self.tree[half:lo] = self.tree[lo:2 * lo:2] + self.tree[lo + 1:2 * lo:2]
            lo = half

    # ------------------------------------------------------------------ sampling

    def find(self, u: np.ndarray) -> np.ndarray:
        """Leaf index for each prefix sum ``u`` (``0 <= u < total``), vectorised."""
        u0 = np.asarray(u, np.float64)
        u, node = self._top_search(u0)
        tree = self.tree
        lsum = np.empty_like(u)
        right = np.empty(u.shape, bool)
        for _ in range(self.depth - self.top):  # five in-place numpy calls per level
            node <<= 1
            np.take(tree, node, out=lsum)
            np.greater_equal(u, lsum, out=right)
            u -= lsum * right
            node += right
        leaf = node - self.size
        # Rounding (u within an ulp of a subtree's sum) can end on an empty leaf; redo those
        # few with the descent that never enters an empty subtree.
        empty = tree[node] <= 0
        if empty.any():
            leaf[empty] = self._find_safe(u0[empty])
        return leaf

    def _top_search(self, u0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-level node holding each ``u``, and ``u`` minus the mass before that node."""
        cs = self._prefix()
        i = np.searchsorted(cs, u0, side="right")  # first node whose prefix sum exceeds u
        over = i >= len(cs)
        if over.any():  # u >= total (rounding): the last node with mass
            i[over] = int(np.flatnonzero(np.diff(cs, prepend=0.0) > 0)[-1])
        u = u0 - np.where(i > 0, cs[i - 1], 0.0)
        return u, i + (1 << self.top)

    def _find_safe(self, u0: np.ndarray) -> np.ndarray:
        u, node = self._top_search(u0)
        tree = self.tree
        for _ in range(self.depth - self.top):
            left = 2 * node
            lsum = tree[left]
            right = ((u >= lsum) & (tree[left + 1] > 0)) | (lsum <= 0)
            u = np.where(right, u - lsum, u)
            node = left + right
        return node - self.size

    def grow(self, capacity: int) -> SumTree:
        """A bigger tree with the same leaves."""
        t = SumTree(capacity)
        t.set_all(self.leaves)
        return t
