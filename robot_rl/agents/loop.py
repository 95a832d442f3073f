"""The training loop of the in-process trainer and of the learner node: one object, ROS-free.

Both drive a :class:`TrainingLoop` around their :class:`~robot_rl.agents.base.LearnerBase` and
:class:`~robot_rl.replay.ReplaySampler`; they differ only in how they learn of new env steps,
and they do their own I/O (env stepping or store tailing, files, messages)::

    in-process trainer (robot_rl.agents.trainer)     learner node (ros_nodes/learner_node.py)
    ---------------------------------------------    ------------------------------------------
    per env step:  loop.env_step()                   per timer tick:
                   (the step earns its updates,        loop.take_in(store commit length)
                    run at once)                       r = loop.train(deadline=now + slice_s)
    episode end:   writer.flush(); loop.join()         r.publish -> publish the policy
    loop.eval_due() -> evaluate                        loop.eval_due() -> evaluate
    loop.checkpoint_due() -> save; loop.saved(path)    loop.checkpoint_due() -> save; saved(path)

**New rows earn their updates first, then join the pool.** An update is sampled from the rows
the sampler's pool (its :class:`~robot_rl.replay.ReplayMirror`) held before the rows that earned
it: the trainer's steps earn updates while their episode is still open, and the episode joins
the pool when it ends; the node's rows earn theirs when it takes them in, and join once those
updates are done. So, given the same rows committed at the same points and the same seed, the
two make the same updates, bit for bit on CPU, however the node slices its work
(tests/unit/test_agents_loop.py). When the node is behind the data -- newer rows are committed
before the updates of the ones it holds are done -- the rows it holds join at once, so the pool
stays fresh whatever the backlog. Rows also join at once while the pool holds less than a batch
(nothing can be sampled yet).

**Pacing** (:class:`~robot_rl.agents.schedule.UpdateSchedule`): after ``n`` env steps (policy
rows; demo rows earn nothing) the learner has done ``floor((n - warmup_steps) * utd_ratio)``
updates, and none before the pool holds a batch (``batch_size`` rows). ``pacing="floor"``
(``agent.utd_pacing``, the learner node in real time): that many at least, and more whenever
:meth:`train` is called with nothing due (as fast as the hardware allows, once warmed up).
``total_updates`` > 0 stops updates there.

**Cadences.** ``publish_every`` updates: :meth:`train` stops after the update that reaches a
multiple, so the caller publishes at exactly that count. ``eval_every`` env steps:
:meth:`eval_due` / :meth:`eval_started`. Checkpoints every ``checkpoint_every_steps`` env steps
(trainer) or ``checkpoint_every_s`` seconds when there are new updates (node):
:meth:`checkpoint_due` / :meth:`saved`, which keeps the newest ``keep_checkpoints``
(0: all) in ``checkpoint_dir``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.agents.schedule import UTD_PACINGS, UpdateSchedule


class Every:
    """Fires at multiples of ``period``: due once ``x >= next``; :meth:`fired` moves ``next`` to
    the first multiple above ``x`` (``next = (x // period + 1) * period``)."""

    def __init__(self, period: int, start: int = 0, *, name: str = "period") -> None:
        if int(period) < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {period}")
        self.period = int(period)
        self.next = (int(start) // self.period + 1) * self.period

    def due(self, x: int) -> bool:
        return x >= self.next

    def fired(self, x: int) -> None:
        self.next = (int(x) // self.period + 1) * self.period


def prune_checkpoints(directory: Path, keep: int, protect: Path | None = None) -> list[str]:
    """Remove all but the newest ``keep`` ``ckpt_*.safetensors`` (+ ``.json`` sidecars, removed
    first: never a lone sidecar) in ``directory``, never ``protect``; ``keep`` 0 keeps all.
    Returns what could not be removed (``"path: error"``)."""
    if keep < 0:
        raise ValueError(f"keep_checkpoints: expected >= 0, got {keep}")
    problems: list[str] = []
    if not keep:
        return problems
    for old in sorted(Path(directory).glob("ckpt_*.safetensors"))[:-keep]:
        if protect is not None and old == protect:
            continue
        for f in (old.with_suffix(".json"), old):
            try:
                f.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"{f}: {e}")
    return problems


@dataclass
class TrainReport:
    """What one :meth:`TrainingLoop.train` call did."""

    #: updates run
    updates: int = 0
    #: the last update reached a multiple of ``publish_every``: publish the policy now
    publish: bool = False
    #: the last update's metrics (0-d tensors, as ``learner.step`` returns them; {} if none ran)
    metrics: dict[str, Any] = field(default_factory=dict)


class TrainingLoop:
    """Update pacing, the updates themselves, and the publish / evaluation / checkpoint cadences.

    Args:
        learner: the learner (``step(batch)``, ``num_steps``, ``last_priorities``).
        sampler: its :class:`~robot_rl.replay.ReplaySampler` (PER priorities updated after each
            step when ``sampler.prioritized``).
        utd_ratio, warmup_steps: the schedule (``agent.utd_ratio``, ``agent.warmup_steps``).
        pacing: ``"cap"`` or ``"floor"`` (``agent.utd_pacing``; see the module docstring).
        device: where batches go (``batch.to(device)`` unless it is the CPU).
        total_updates: stop updating there (0: never).
        publish_every: updates between publications (None: the caller never publishes).
        eval_every: env steps between evaluations (None: no evaluation).
        checkpoint_dir, checkpoint_every_steps, checkpoint_every_s, keep_checkpoints:
            checkpoint cadence (env steps, or seconds with new updates; None: neither) and pruning.
        clock: monotonic seconds (for ``checkpoint_every_s``).
    """

    def __init__(self, learner: Any, sampler: Any, *, utd_ratio: float, warmup_steps: int,
                 pacing: str = "cap", device: Any = None, total_updates: int = 0,
                 publish_every: int | None = None, eval_every: int | None = None,
                 checkpoint_dir: str | Path | None = None,
                 checkpoint_every_steps: int | None = None,
                 checkpoint_every_s: float | None = None, keep_checkpoints: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if pacing not in UTD_PACINGS:
            raise ValueError(f"agent.utd_pacing: expected one of {list(UTD_PACINGS)}, got "
                             f"{pacing!r}")
        if total_updates < 0:
            raise ValueError(f"total_updates: expected >= 0, got {total_updates}")
        if checkpoint_every_s is not None and not checkpoint_every_s > 0:
            raise ValueError(f"checkpoint_every_s: expected seconds > 0, got {checkpoint_every_s}")
        if keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints: expected >= 0, got {keep_checkpoints}")
        if (checkpoint_every_steps or checkpoint_every_s) and checkpoint_dir is None:
            raise ValueError("checkpoint_dir: a checkpoint cadence needs a directory")
        self.learner = learner
        self.sampler = sampler
        self.schedule = UpdateSchedule(utd_ratio, warmup_steps)
        self.pacing = pacing
        self.batch_size = int(learner.config.batch_size)
        self.device = device
        self.on_cpu = device is None or getattr(device, "type", str(device)) == "cpu"
        self.total_updates = int(total_updates)
        self.clock = clock
        #: env steps (policy rows) counted so far: the schedule's clock
        self.env_steps = 0
        #: store rows taken in (the node; they join the pool up to here)
        self.taken = sampler.mirror.mirrored
        #: policy rows taken in per robot id (the node's intake; counted since this loop started)
        self.robot_steps: dict[int, int] = {}
        self.last_metrics: dict[str, Any] = {}
        self._publish = Every(publish_every, name="publish_every") if publish_every else None
        self._eval = Every(eval_every, name="run.eval_every") if eval_every else None
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self._ckpt_steps = (Every(checkpoint_every_steps, name="run.checkpoint_every")
                            if checkpoint_every_steps else None)
        self.checkpoint_every_s = checkpoint_every_s
        self.keep_checkpoints = int(keep_checkpoints)
        self.last_checkpoint: Path | None = None
        #: learner.num_steps at the last checkpoint (None: none written by this loop)
        self.checkpoint_updates: int | None = None
        self._ckpt_time = clock()

    # ------------------------------------------------------------------ restore

    def restore(self, *, env_steps: int, updates_done: int) -> None:
        """Continue a run: its env-step count and the updates its schedule has counted; the
        cadences restart from there (a resumed run fires where the uninterrupted one would)."""
        self.env_steps = int(env_steps)
        self.schedule.done = int(updates_done)
        self.taken = self.sampler.mirror.mirrored
        n = self.learner.num_steps
        if self._publish is not None:
            self._publish.fired(n)
        if self._eval is not None:
            self._eval.fired(self.env_steps)
        if self._ckpt_steps is not None:
            self._ckpt_steps.fired(self.env_steps)

    # ------------------------------------------------------------------ rows in

    @property
    def pool_ready(self) -> bool:
        """The pool holds a batch (updates can run)."""
        return len(self.sampler.mirror) >= self.batch_size

    def env_step(self) -> TrainReport:
        """The in-process trainer took one env step (its row is not in the store yet): count it
        and run the updates it earned (sampled from the pool as it is)."""
        self.env_steps += 1
        return self.train()

    def join(self, until: int | None = None) -> int:
        """Rows join the pool: the sampler mirrors committed rows up to ``until`` (None: all the
        store has committed); returns the rows read."""
        rows = self.sampler.refresh(until)
        self.taken = max(self.taken, self.sampler.mirror.mirrored)
        return rows

    def take_in(self, committed: int, max_rows: int | None = None) -> int:
        """The learner node: the store has committed ``committed`` rows. Rows taken in earlier
        join the pool if their updates are done, or now that newer rows wait (see the module
        docstring); then up to ``max_rows`` newer rows are taken in: their policy rows count as
        env steps (per robot id too) and earn updates. Returns the policy rows taken in."""
        mirror = self.sampler.mirror
        if self.taken > mirror.mirrored and committed > self.taken:
            self.join(self.taken)  # behind the data: the pool stays fresh
        n_policy = 0
        if committed > self.taken:
            until = committed if max_rows is None else min(committed, self.taken + int(max_rows))
            from robot_rl.replay.schema import Source

            cols = mirror.reader.read(self.taken, until, ("source", "robot_id"), length=committed)
            policy = cols["source"] == Source.POLICY
            n_policy = int(policy.sum())
            ids, counts = np.unique(cols["robot_id"][policy], return_counts=True)
            for rid, c in zip(ids.tolist(), counts.tolist()):
                self.robot_steps[rid] = self.robot_steps.get(rid, 0) + c
            self.env_steps += n_policy
            self.taken = until
        if self.taken > mirror.mirrored and not self.pool_ready:
            self.join(self.taken)  # nothing can be sampled yet: hold nothing back
        self._join_if_done()
        return n_policy

    # ------------------------------------------------------------------ updates

    def pretrain(self, n: int, *, deadline: float | None = None) -> int:
        """An offline warm start: up to ``n`` updates on the pool as it is -- a fresh run's store:
        its demonstration rows -- before the learner's first policy, not counted by the schedule
        (the env steps still earn their own). The caller runs it once, on a fresh start only.
        Batches are drawn with replacement, so fewer demo rows than a batch do (ten short
        demonstrations can be 150 rows). Stops at ``deadline`` (``time.perf_counter()``
        seconds; at least one update runs); runs nothing without demo rows. Returns the updates
        run."""
        if n < 0:
            raise ValueError(f"agent.pretrain_updates: expected >= 0, got {n}")
        if not n or not self.sampler.mirror.n_demo:
            return 0
        done = 0
        while done < n:
            self.last_metrics = self._update()
            done += 1
            if deadline is not None and time.perf_counter() >= deadline:
                break
        return done

    def target(self) -> int:
        """Updates the schedule asks for now (capped by ``total_updates``)."""
        t = self.schedule.target(self.env_steps)
        return min(t, self.total_updates) if self.total_updates else t

    def due(self) -> int:
        """Updates the schedule asks for and the learner has not done (0 while the pool holds
        less than a batch, or at ``total_updates``)."""
        if not self.pool_ready:
            return 0
        left = self.schedule.target(self.env_steps) - self.schedule.done
        if self.total_updates:
            left = min(left, self.total_updates - self.learner.num_steps)
        return max(0, left)

    @property
    def finished(self) -> bool:
        """``total_updates`` reached."""
        return bool(self.total_updates) and self.learner.num_steps >= self.total_updates

    def train(self, *, max_updates: int | None = None, deadline: float | None = None) -> TrainReport:
        """Run the updates due: all of them, or until ``max_updates`` ran, or the first update
        that ends past ``deadline`` (``time.perf_counter()`` seconds; at least one runs), or the
        update that reaches a publication (``report.publish``). With ``pacing="floor"`` and
        nothing due, updates go on (once warmed up) until a bound or a publication."""
        rep = TrainReport()
        n = self.due()
        if max_updates is not None:
            n = min(n, int(max_updates))
        # floor pacing: past the schedule too, as long as a bound stops it
        more = (self.pacing == "floor" and self.pool_ready and not self.finished
                and self.env_steps > self.schedule.warmup
                and (max_updates is not None or deadline is not None))
        if n <= 0 and not more or max_updates == 0:
            self._join_if_done()
            return rep
        learner = self.learner
        while True:
            rep.metrics = self._update()
            self.schedule.done += 1
            rep.updates += 1
            n -= 1
            if self._publish is not None and self._publish.due(learner.num_steps):
                self._publish.fired(learner.num_steps)
                rep.publish = True
                break
            if max_updates is not None and rep.updates >= max_updates:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            if n <= 0 and not (more and not self.finished):
                break
        self.last_metrics = rep.metrics
        self._join_if_done()
        return rep

    def _update(self) -> dict[str, Any]:
        """One learner step on a sampled batch (+ its PER priorities); its metrics."""
        sampler = self.sampler
        batch = sampler.sample(self.batch_size)
        metrics = self.learner.step(batch if self.on_cpu else batch.to(self.device, True))
        if sampler.prioritized:
            sampler.update_priorities(batch.indices, self.learner.last_priorities.cpu(),
                                      rows=batch.rows)
        return metrics

    def _join_if_done(self) -> None:
        """Rows taken in whose updates are all done join the pool now."""
        if self.taken > self.sampler.mirror.mirrored and self.due() == 0:
            self.join(self.taken)

    # ------------------------------------------------------------------ cadences

    def eval_due(self) -> bool:
        """An evaluation is due (every ``eval_every`` env steps)."""
        return self._eval is not None and self._eval.due(self.env_steps)

    def eval_started(self) -> None:
        """The caller starts the due evaluation (at the current env steps)."""
        self._eval.fired(self.env_steps)

    def checkpoint_due(self) -> bool:
        """A checkpoint is due: ``checkpoint_every_steps`` env steps reached, or
        ``checkpoint_every_s`` passed with updates since the last checkpoint."""
        if self._ckpt_steps is not None and self._ckpt_steps.due(self.env_steps):
            return True
        return (self.checkpoint_every_s is not None
                and self.clock() - self._ckpt_time >= self.checkpoint_every_s
                and self.learner.num_steps != self.checkpoint_updates)

    def checkpoint_path(self, n: int) -> Path:
        """``<checkpoint_dir>/ckpt_<n:09d>.safetensors`` (the trainer numbers by env steps, the
        node by updates)."""
        return self.checkpoint_dir / f"ckpt_{int(n):09d}.safetensors"

    def checkpoint_tried(self) -> None:
        """A checkpoint was considered now (written or not): the time cadence restarts."""
        self._ckpt_time = self.clock()
        if self._ckpt_steps is not None:
            self._ckpt_steps.fired(self.env_steps)

    def saved(self, path: Path) -> list[str]:
        """A checkpoint was written at ``path``: note it and prune the directory (newest
        ``keep_checkpoints`` kept); returns what could not be removed."""
        self.checkpoint_tried()
        self.last_checkpoint = Path(path)
        self.checkpoint_updates = self.learner.num_steps
        return prune_checkpoints(self.checkpoint_dir or Path(path).parent, self.keep_checkpoints,
                                 protect=Path(path))
