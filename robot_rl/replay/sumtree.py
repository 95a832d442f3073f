"""A sum-tree in numpy, vectorised: priorities at the leaves, sums in the inner nodes.

Leaves ``0..capacity-1`` live at ``tree[size + i]`` (``size`` = capacity rounded up to a power of
two); node ``k`` holds ``tree[2k] + tree[2k+1]``; the total is ``tree[1]``. Every operation works
on a whole batch of indices at once:

* :meth:`SumTree.set` writes leaves and recomputes their ancestors level by level (``log2 size``
  vectorised steps; parents are recomputed from their children, so no rounding error builds up
  however many updates there are);
* :meth:`SumTree.find` descends from the root for a batch of prefix sums ``u``: go left if
  ``u < tree[left]``, else subtract ``tree[left]`` and go right -- the leaf ``i`` returned
  satisfies ``sum(p[:i]) <= u < sum(p[:i+1])``, so ``P(i) = p_i / total`` for ``u ~ U[0, total)``.
  A subtree whose sum is 0 is never entered, so empty leaves are never returned.
"""
from __future__ import annotations

import numpy as np


class SumTree:
    """Sum-tree over ``capacity`` non-negative float64 leaves (all 0 at the start)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.size = 1 << max(0, (self.capacity - 1).bit_length())
        self.depth = self.size.bit_length() - 1
        self.tree = np.zeros(2 * self.size, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    @property
    def leaves(self) -> np.ndarray:
        """View of the leaf values (do not write through it; use :meth:`set`)."""
        return self.tree[self.size:self.size + self.capacity]

    def get(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[self.size + np.asarray(idx, np.int64)]

    def set(self, idx: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``idx`` to ``values`` (>= 0, finite) and update the sums above them."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size == 0:
            return
        values = np.broadcast_to(np.asarray(values, np.float64), idx.shape)
        if (idx < 0).any() or (idx >= self.capacity).any():
            raise ValueError(f"leaf index out of range [0, {self.capacity})")
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("priorities must be finite and >= 0")
        node = idx + self.size
        tree = self.tree
        tree[node] = values
        # All leaves sit at one depth, so each pass handles one whole level; a repeated parent
        # is recomputed twice from the same (final) children, which is harmless.
        for _ in range(self.depth):
            node >>= 1
            tree[node] = tree[2 * node] + tree[2 * node + 1]

    def set_all(self, values: np.ndarray) -> None:
        """Replace every leaf (``len(values) <= capacity``; the rest become 0) and rebuild."""
        values = np.asarray(values, np.float64)
        if len(values) > self.capacity:
            raise ValueError(f"{len(values)} values for {self.capacity} leaves")
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("priorities must be finite and >= 0")
        self.tree[:] = 0.0
        self.tree[self.size:self.size + len(values)] = values
        lo = self.size
        while lo > 1:
            half = lo // 2
            self.tree[half:lo] = self.tree[lo:2 * lo:2] + self.tree[lo + 1:2 * lo:2]
            lo = half

    def find(self, u: np.ndarray) -> np.ndarray:
        """Leaf index for each prefix sum ``u`` (``0 <= u < total``), vectorised."""
        u = np.array(u, np.float64, copy=True)
        node = np.ones(u.shape, np.int64)
        tree = self.tree
        for _ in range(self.depth):
            left = 2 * node
            lsum = tree[left]
            right = (u >= lsum) & (tree[left + 1] > 0)
            # rounding can leave u >= lsum with an empty right side: stay left then
            right |= lsum <= 0
            u = np.where(right, u - lsum, u)
            node = left + right
        return node - self.size

    def grow(self, capacity: int) -> SumTree:
        """A bigger tree with the same leaves."""
        t = SumTree(capacity)
        t.set_all(self.leaves)
        return t
