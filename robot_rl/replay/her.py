"""Hindsight experience replay (Andrychowicz et al. 2017) at sample time.

The store keeps what happened; the sampler rewrites part of each batch as if the episode had
asked for a goal the robot did reach. For a sampled row ``t`` of an episode, with probability
``k / (k + 1)`` (``k`` relabels per original, as Stable-Baselines3's ``n_sampled_goal``) its
desired goal ``g`` is replaced by the *achieved goal* of another row ``t'`` of the same episode --
the achieved goal after that row's step, read from its next observation:

* ``future``: ``t'`` uniform in ``t .. T`` (the rows from ``t`` on, ``t`` itself included, as
  Stable-Baselines3 draws it);
* ``final``: ``t' = T``, the episode's last row;
* ``episode``: ``t'`` uniform over the whole episode.

``T`` and the episode's first row are where the mirror's episode links end (a running episode's
newest committed row, or a row whose neighbour was evicted). The relabelled row gets ``g`` written
into the desired-goal part of both its observation and next observation, the reward
``task.compute_reward(achieved_next, g)`` and ``terminated = task.compute_terminated(achieved_next,
g)`` (truncated is cleared where that is true: the env never reports both). Demo and intervention
rows are relabelled like any other. n-step returns would need every reward of the walk relabelled
too: HER with ``n_step > 1`` is refused, as is prioritized replay (a relabelled row's TD error is
not its stored row's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

STRATEGIES = ("future", "final", "episode")


@dataclass(frozen=True)
class HindsightRelabeler:
    """What the sampler needs to relabel goals (:func:`relabeler_for_task` builds it).

    Attributes:
        strategy: ``future``, ``final`` or ``episode``.
        k: relabelled rows per original (a fraction ``k / (k + 1)`` of every batch).
        achieved, desired: where the achieved and desired goal sit in the observation.
        compute_reward, compute_terminated: the task's vectorised functions of
            ``(achieved_goal, desired_goal)``.
        max_walk: the longest episode walked (a bound on the link walks; the task's
            ``max_steps`` is enough).
    """

    strategy: str
    k: int
    achieved: slice
    desired: slice
    compute_reward: Callable[[np.ndarray, np.ndarray], Any]
    compute_terminated: Callable[[np.ndarray, np.ndarray], Any]
    max_walk: int = 10_000

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"her: strategy {self.strategy!r}, expected one of {STRATEGIES}")
        if int(self.k) < 1:
            raise ValueError(f"her_k: expected >= 1 relabels per original, got {self.k}")
        n_a = self.achieved.stop - self.achieved.start
        n_d = self.desired.stop - self.desired.start
        if n_a != n_d or n_a < 1:
            raise ValueError(f"her: achieved goal ({n_a} elements) and desired goal ({n_d}) must "
                             "have the same length")

    @property
    def fraction(self) -> float:
        return self.k / (self.k + 1.0)

    def describe(self) -> str:
        return f"her={self.strategy} k={self.k} ({self.fraction:.0%} of each batch relabelled)"

    # ------------------------------------------------------------------ sampling

    def _walk_length(self, links: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Steps that can be taken from each start along ``links`` (-1 ends a chain)."""
        n = np.zeros(len(start), np.int64)
        cur = start.copy()
        for _ in range(self.max_walk):
            nxt = links[cur]
            go = nxt >= 0
            if not go.any():
                break
            n += go
            cur = np.where(go, nxt, cur)
        return n

    @staticmethod
    def _walk(links: np.ndarray, start: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The slot ``steps[i]`` links away from ``start[i]`` (``steps`` within the chain)."""
        cur = start.copy()
        left = steps.copy()
        while True:
            go = left > 0
            if not go.any():
                return cur
            nxt = links[cur]
            cur = np.where(go & (nxt >= 0), nxt, cur)  # a chain's end: stay there
            left = np.where(nxt >= 0, left - go, 0)

    def goal_slots(self, next_slot: np.ndarray, prev_slot: np.ndarray, slots: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
        """For each sampled slot, the slot whose achieved goal becomes its goal."""
        fwd = self._walk_length(next_slot, slots)
        if self.strategy == "final":
            return self._walk(next_slot, slots, fwd)
        if self.strategy == "future":
            j = (rng.random(len(slots)) * (fwd + 1)).astype(np.int64)  # 0 .. fwd
            return self._walk(next_slot, slots, j)
        back = self._walk_length(prev_slot, slots)
        j = (rng.random(len(slots)) * (back + fwd + 1)).astype(np.int64) - back  # -back .. fwd
        out = self._walk(next_slot, slots, np.maximum(j, 0))
        before = j < 0
        if before.any():
            out[before] = self._walk(prev_slot, slots[before], -j[before])
        return out

    def relabel(self, mirror: Any, rng: np.random.Generator, slots: np.ndarray,
                obs: np.ndarray, next_obs: np.ndarray, reward: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        """Relabel a fraction of a batch in place (numpy arrays the sampler gathered); return
        the mask of relabelled rows."""
        mask = rng.random(len(slots)) < self.fraction
        if not mask.any():
            return mask
        idx = np.flatnonzero(mask)
        src = self.goal_slots(mirror.next_slot, mirror.prev_slot, slots[idx], rng)
        goal = mirror.cols["next_observation"][src, self.achieved]
        obs[idx, self.desired] = goal
        next_obs[idx, self.desired] = goal
        achieved = next_obs[idx, self.achieved]
        reward[idx] = np.asarray(self.compute_reward(achieved, goal), dtype=reward.dtype)
        term = np.asarray(self.compute_terminated(achieved, goal), dtype=bool)
        terminated[idx] = term
        truncated[idx] = np.where(term, 0, truncated[idx])
        return mask


def relabeler_for_task(task: Any, strategy: str, k: int) -> HindsightRelabeler:
    """The relabeler of a goal-conditioned task (``robot_rl.tasks``): its goal slices and
    vectorised ``compute_reward`` / ``compute_terminated``."""
    sl = task.goal_slices
    return HindsightRelabeler(
        strategy, int(k), sl["achieved_goal"], sl["desired_goal"],
        compute_reward=task.compute_reward, compute_terminated=task.compute_terminated,
        max_walk=int(task.config.max_steps) + 1)
