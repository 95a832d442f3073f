"""``robot-rl demos import``: a rosbag2 recording -> whole demo episodes in a replay store.

Two phases, so that a bad bag imports nothing:

1. :func:`plan_import` reads and checks every message (:func:`robot_rl.demos.bag.read_bag`),
   cuts episodes, resamples them to the control rate, builds every row and validates it with the
   store's own checks (:func:`robot_rl.replay.schema.validate_columns`), and checks an existing
   store's spec. Any problem raises ``ValueError`` naming it. ``--dry-run`` stops here.
2. :func:`write_plan` opens the store's single writer (created with the config's specs if
   missing; refused if another writer holds it or its spec differs) and appends each episode
   with :meth:`ReplayWriter.append_episode`: one commit per episode, all of its rows or none.

**Episode boundaries**, in this order: a ``--episodes`` time-ranges file if given; else the
teleop topic's episode marks (``TeleopCommand.episode_mark``: success / failure end an episode
at the mark, discard drops it, a trailing stretch without a mark is not imported -- the same
rule as live recording: nothing reaches the store until marked); else the whole bag. Within its
window an episode starts at the first *driving* command: a teleop command with the deadman held
(or a non-zero applied command), whose time also fixes the phase of the control-period grid, so
a command stream published at the control rate lands on the grid's ticks.

**A lab's own recording** (``teleop_source``: spacenav Twist + Joy, or a gamepad's Joy; no
``rl/teleop``): the device is first replayed through the teleop node's own
:class:`~robot_rl.teleop.TeleopMapper` in bag time (:func:`robot_rl.demos.device.replay_device`:
one command per control period from the first device message on, deadman, mark buttons and input
timeout as live), and that command stream is then treated exactly as a recorded teleop topic
below (marks cut the episodes; the commands lie on the grid). With ``topics.goal`` the goal comes
from a ``PointStamped`` / ``PoseStamped`` topic (in the robot base frame: the URDF's root link,
or ``goal_frame``) and is held like the task state's.

**Resampling** to ``sim.control_hz`` (period ``dt``), ticks ``t_k = t_0 + k dt`` in bag time
(the recorder's receive timestamps, the one clock every topic shares):

* joint positions and velocities at ``t_k``: **linear interpolation** between the two joint
  states around ``t_k`` (any rate; no extrapolation: the grid stays inside the joint-state
  stream; a gap longer than ``max_gap`` is refused);
* task state (goal, object pose) at ``t_k``: **last value** (zero-order hold);
* the action of step ``k`` (held over ``[t_k, t_k+1)``): teleop -- the last command at or before
  ``t_k + jitter * dt`` (a command that is late by recording jitter still belongs to its tick),
  zero while the deadman is released (the arm is stopped); applied commands -- their
  time-weighted mean over ``[t_k, t_k+1)`` mapped into the action space with
  :meth:`ActionMapper.to_action` at ``q(t_k)`` (what the robot did over the step, whatever rate
  the commands came at). A command older than ``max_gap`` at a tick is refused.
* a step across a jump of the joint states (a joint faster than twice its velocity limit: a
  reset or a glitch) is refused, except at the start of an episode, where it is skipped (the
  sim resets the arm when the operator marks the end of the previous episode).

Rows: observation ``task.observation`` of the snapshot at ``t_k`` (``ee_pos`` from the URDF's
forward kinematics), next observation at ``t_k+1``, reward ``task.reward`` of the state at
``t_k+1`` (as the gym env), ``terminated`` at the first step whose next state is a success when
``task.terminate_on_success`` (the episode ends there, as in the env), otherwise ``truncated``
on the last row; ``source`` = demo, ``policy_version`` 0, ``stamp_ns`` = ``t_k``.

**Exactly-once**: ``actor_session`` is derived from the recording and the import settings: a
digest of the joint states (timestamps + bytes; not the path, so a copied or re-encoded bag is
the same recording) in bits 32..61, and a hash of everything else that shapes the rows (every
message read, task, robot, control rate, topics, boundaries; for a device recording the resolved
teleop mapping, for a goal topic the base frame's name) in bits 0..31; bit 62 is set, so
it is never 0. ``seq`` runs 0, 1, ...
over the imported rows, ``episode_id = episode_id_for(session, i)``. Re-importing the same bag
with the same settings adds nothing (every key is a duplicate); an import interrupted after some
episodes completes on the next run. Importing the same recording with other settings would store
the demonstrations twice and is refused unless ``allow_reimport``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.config import Config
from robot_rl.demos.bag import (
    MARK_DISCARD,
    MARK_NAMES,
    MARK_NONE,
    MARK_SUCCESS,
    BagData,
    TopicNames,
    read_bag,
)

#: Bit 62 marks a bag-derived session (and keeps it non-zero).
_SESSION_FLAG = 1 << 62


def episode_id_for(session: int, counter: int) -> int:
    """The actors' rule (``robot_rl.actor.episode_id_for``): the session's low 40 bits, then a
    24-bit counter."""
    return ((session & ((1 << 40) - 1)) << 24) | (counter & ((1 << 24) - 1))


@dataclass(frozen=True)
class ImportOptions:
    """How a bag is imported (the CLI flags of ``robot-rl demos import``).

    Attributes:
        topics: topic names and namespace.
        robot_id: the robot index stored in every row.
        episodes_file: a time-ranges file (YAML or CSV: start, end seconds from the bag start,
            optional success); overrides the bag's episode marks.
        action_source: ``auto`` (teleop if recorded, else applied commands), ``teleop`` or
            ``commands``.
        distro: ROS 2 distro whose standard message types decode the bag.
        max_gap: longest allowed gap (s) in the joint states around a tick, and age of the
            command in effect at a tick; default ``max(0.1, 2 / control_hz)``.
        jitter: fraction of the control period a teleop command may arrive after its tick.
        allow_reimport: import a recording already in the store with other settings.
        teleop_source: ``spacenav`` or ``joy``: the actions come from the recorded device
            topics (``topics.twist`` / ``topics.joy``), replayed through the config's teleop
            mapping (:mod:`robot_rl.demos.device`); ``None``: ``action_source`` decides.
        goal_frame: the robot base frame's name in the recording (default: the URDF's root
            link); a ``topics.goal`` message with another non-empty ``header.frame_id`` is
            refused.
    """

    topics: TopicNames = TopicNames()
    robot_id: int = 0
    episodes_file: str | None = None
    action_source: str = "auto"
    distro: str = "kilted"
    max_gap: float | None = None
    jitter: float = 0.25
    allow_reimport: bool = False
    teleop_source: str | None = None
    goal_frame: str | None = None


@dataclass
class Segment:
    """A window of the bag that is one episode, before resampling."""

    start_ns: int
    end_ns: int
    origin: str
    #: What the operator / ranges file said: True (success), False (failure), None (unknown).
    labelled_success: bool | None = None


@dataclass
class PlannedEpisode:
    """One episode, resampled and validated, ready to append."""

    number: int
    segment: Segment
    columns: dict[str, np.ndarray]
    success: bool
    final_distance: float
    #: Time of the episode's last state (its last next_observation), bag time.
    end_ns: int = 0

    @property
    def steps(self) -> int:
        return len(self.columns["reward"])

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.columns["reward"], dtype=np.float64))

    def summary(self, bag_start_ns: int) -> dict[str, Any]:
        c = self.columns
        return {"episode": self.number, "episode_id": int(c["episode_id"][0]),
                "origin": self.segment.origin,
                "start_s": round((int(c["stamp_ns"][0]) - bag_start_ns) / 1e9, 3),
                "end_s": round((self.end_ns - bag_start_ns) / 1e9, 3),
                "steps": self.steps, "success": self.success,
                "terminated": bool(c["terminated"][-1]), "truncated": bool(c["truncated"][-1]),
                "return": round(self.episode_return, 4),
                "final_distance": round(self.final_distance, 4),
                "seq": [int(c["seq"][0]), int(c["seq"][-1])]}


@dataclass
class ImportPlan:
    """Everything an import would write, checked; see :func:`plan_import`."""

    bag: BagData
    session: int
    robot_id: int
    control_hz: float
    boundaries: str
    episodes: list[PlannedEpisode]
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    observation_spec: Any = None
    action_spec: Any = None
    #: Rows of this plan the store already holds (same session; filled by the store check).
    already_stored: int = 0

    @property
    def rows(self) -> int:
        return sum(e.steps for e in self.episodes)

    def to_dict(self) -> dict[str, Any]:
        b = self.bag
        return {
            "bag": str(b.path), "storage": b.storage, "files": b.files,
            "duration_s": round((b.end_ns - b.start_ns) / 1e9, 3),
            "topics": [{"role": t.role, "name": t.name, "type": t.msgtype, "messages": t.count,
                        "rate_hz": None if math.isnan(t.rate_hz) else round(t.rate_hz, 2)}
                       for t in b.topics],
            "action_source": b.actions.kind, "boundaries": self.boundaries,
            "control_hz": self.control_hz, "robot_id": self.robot_id,
            "actor_session": self.session, "digest": b.digest,
            "episodes": [e.summary(b.start_ns) for e in self.episodes],
            "rows": self.rows, "successes": sum(e.success for e in self.episodes),
            "already_stored_rows": self.already_stored,
            "dropped": self.dropped, "notes": self.notes,
        }


@dataclass
class ImportResult:
    """What an import did (``written`` False for a dry run)."""

    plan: ImportPlan
    store: str
    written: bool
    added_rows: int = 0
    duplicate_rows: int = 0
    created_store: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "store": self.store, "written": self.written,
                "added_rows": self.added_rows, "duplicate_rows": self.duplicate_rows,
                "created_store": self.created_store}


# --------------------------------------------------------------------------- ranges file


_TRUE = {"1", "true", "yes", "y", "success", "succeeded", "ok"}
_FALSE = {"0", "false", "no", "n", "failure", "failed", "fail"}


def _parse_success(v: Any, where: str) -> bool | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{where}: success must be true/false (or empty), got {v!r}")


def _seconds(v: Any, what: str, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be seconds from the bag start, got {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{where}: {what} must be finite seconds >= 0, got {v!r}")
    return x


def load_ranges(path: str | Path) -> list[tuple[float, float, bool | None]]:
    """Episode time ranges from a YAML or CSV file: ``(start_s, end_s, success or None)``.

    YAML: a list (or ``{episodes: [...]}``) of ``{start: 1.5, end: 9.0, success: true}`` or
    ``[1.5, 9.0, true]``. CSV: ``start,end[,success]`` per line, an optional header line,
    ``#`` comments. Seconds from the bag's start; ranges must not overlap.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"--episodes {p}: cannot read: {e.strerror or e}") from None
    raw: list[tuple[str, Any, Any, Any]] = []
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--episodes {p}: not valid YAML: {e}") from None
        if isinstance(doc, dict):
            doc = doc.get("episodes")
        if not isinstance(doc, list):
            raise ValueError(f"--episodes {p}: expected a list of {{start, end, success}} "
                             "entries (or a mapping with key 'episodes')")
        for i, e in enumerate(doc):
            where = f"--episodes {p}: entry {i}"
            if isinstance(e, dict):
                unknown = set(e) - {"start", "end", "success"}
                if unknown or "start" not in e or "end" not in e:
                    raise ValueError(f"{where}: expected keys start, end[, success], got "
                                     f"{sorted(e)}")
                raw.append((where, e["start"], e["end"], e.get("success")))
            elif isinstance(e, (list, tuple)) and len(e) in (2, 3):
                raw.append((where, e[0], e[1], e[2] if len(e) == 3 else None))
            else:
                raise ValueError(f"{where}: expected {{start, end, success}} or "
                                 f"[start, end, success], got {e!r}")
    else:
        rows = [r for r in csv.reader(text.splitlines())]
        for lineno, r in enumerate(rows, 1):
            cells = [c.strip() for c in r]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            where = f"--episodes {p}: line {lineno}"
            if lineno == 1 or not raw:
                try:
                    float(cells[0])
                except ValueError:
                    if cells[0].lower() == "start":
                        continue  # header
            if len(cells) not in (2, 3):
                raise ValueError(f"{where}: expected start,end[,success], got {','.join(cells)}")
            raw.append((where, cells[0], cells[1], cells[2] if len(cells) == 3 else None))
    out: list[tuple[float, float, bool | None, str]] = []
    for where, s, e, ok in raw:
        start, end = _seconds(s, "start", where), _seconds(e, "end", where)
        if not start < end:
            raise ValueError(f"{where}: start {start:g} s must be before end {end:g} s")
        out.append((start, end, _parse_success(ok, where), where))
    if not out:
        raise ValueError(f"--episodes {p}: no episode ranges in the file")
    out.sort(key=lambda r: r[0])
    for a, b in zip(out, out[1:]):
        if b[0] < a[1]:
            raise ValueError(f"--episodes {p}: ranges overlap: {a[0]:g}-{a[1]:g} s ({a[3]}) and "
                             f"{b[0]:g}-{b[1]:g} s ({b[3]})")
    return [(s, e, ok) for s, e, ok, _ in out]


# --------------------------------------------------------------------------- segmentation


def segments_from_marks(bag: BagData) -> tuple[list[Segment], list[str]]:
    """Episodes delimited by the teleop stream's marks, and what was dropped (and why)."""
    a = bag.actions
    segs: list[Segment] = []
    dropped: list[str] = []
    start: int | None = None

    def rel(t: int) -> str:
        return f"{(t - bag.start_ns) / 1e9:.3f} s"

    what = "replayed device command" if a.kind == "device" else "teleop message"
    for i in range(len(a.t)):
        t, mark = int(a.t[i]), int(a.mark[i])
        if start is None and a.deadman[i] and mark == MARK_NONE:
            start = t
        if mark == MARK_NONE:
            continue
        name = MARK_NAMES[mark]
        if start is None:
            dropped.append(f"{name} mark at {rel(t)} ({what} {i}) with no driven step "
                           "before it: ignored")
        elif mark == MARK_DISCARD:
            dropped.append(f"{rel(start)}-{rel(t)}: discarded by the operator "
                           f"({what} {i})")
        else:
            segs.append(Segment(start, t, f"marked {name}", mark == MARK_SUCCESS))
        start = None
    if start is not None:
        dropped.append(f"{rel(start)}-{rel(int(a.t[-1]))}: no episode mark after it (the "
                       "recording ended mid-episode): not imported")
    return segs, dropped


def segments_from_ranges(bag: BagData, ranges: list[tuple[float, float, bool | None]],
                         source: str) -> list[Segment]:
    dur = (bag.end_ns - bag.start_ns) / 1e9
    segs = []
    for i, (s, e, ok) in enumerate(ranges):
        if s >= dur:
            raise ValueError(f"--episodes {source}: range {i} starts at {s:g} s, after the bag's "
                             f"end ({dur:.3f} s from its start)")
        if e > dur + 1e-9:
            raise ValueError(f"--episodes {source}: range {i} ends at {e:g} s, after the bag's "
                             f"end ({dur:.3f} s from its start)")
        segs.append(Segment(bag.start_ns + round(s * 1e9), bag.start_ns + round(e * 1e9),
                            f"range {i} ({s:g}-{e:g} s)", ok))
    return segs


# --------------------------------------------------------------------------- resampling


class _Context:
    """The task, action map and kinematics of one config."""

    def __init__(self, cfg: Config) -> None:
        from robot_rl.actions import ActionMapper
        from robot_rl.kinematics import Kinematics
        from robot_rl.tasks import make_task

        self.cfg = cfg
        self.task = make_task(cfg.task, cfg.robot)
        self.kin = Kinematics.from_profile(cfg.robot)
        self.mapper = ActionMapper(cfg.task, cfg.robot, self.kin)
        self.obs_spec = self.task.observation_spec
        self.obs_fields = self.task.obs_spec  # named fields: what the store records
        self.act_spec = self.mapper.spec
        self.hz = float(cfg.sim.control_hz)
        self.dt_ns = 1e9 / self.hz
        #: Jump intervals of the joint states (:func:`jump_intervals`), set per bag.
        self.jumps: np.ndarray | None = None


def jump_intervals(t: np.ndarray, q: np.ndarray, dq_max: np.ndarray, slack: float = 1e-3
                   ) -> np.ndarray:
    """Per pair of consecutive joint states: does some joint move faster than twice its
    velocity limit (+ ``slack`` rad)? A robot cannot; a reset or a glitch can."""
    if len(t) < 2:
        return np.zeros(0, bool)
    dt = np.diff(t).astype(np.float64) / 1e9
    return (np.abs(np.diff(q, axis=0)) > 2.0 * dq_max * dt[:, None] + slack).any(axis=1)


def _jumpy_steps(t: np.ndarray, jumps: np.ndarray, tk: np.ndarray) -> np.ndarray:
    """Per step ``(tk[k], tk[k+1])``: does a jump interval ``(t[m], t[m+1])`` overlap it?"""
    cj = np.concatenate([[0], np.cumsum(jumps)])
    lo = np.maximum(np.searchsorted(t, tk[:-1], side="right") - 1, 0)  # t[lo] <= tk, t[lo+1] > tk
    hi = np.searchsorted(t, tk[1:], side="left") - 1  # last m with t[m] < tk[k+1]
    hi = np.clip(hi, lo - 1, len(jumps) - 1)
    return (cj[hi + 1] - cj[lo]) > 0


def _ticks(t0: int, t_end: int, dt_ns: float) -> np.ndarray:
    k = int(math.floor((t_end - t0) / dt_ns + 1e-9))
    if k < 0:
        return np.zeros(0, np.int64)
    tk = t0 + np.round(np.arange(k + 1) * dt_ns).astype(np.int64)
    return tk[tk <= t_end]


def _fail(what: str, ep: str, t_ns: int, bag: BagData, msg: str) -> ValueError:
    return ValueError(f"bag {bag.path}: {what}, {ep} at t={(t_ns - bag.start_ns) / 1e9:.3f} s "
                      f"from the bag start: {msg}")


def build_episode(bag: BagData, seg: Segment, number: int, ctx: _Context, *, session: int,
                  robot_id: int, seq0: int, max_gap: float, jitter: float
                  ) -> PlannedEpisode | str:
    """Resample one segment into validated rows, or a string saying why it has no step."""
    from robot_rl.replay.schema import Source, empty_columns, validate_columns
    from robot_rl.tasks import TaskSnapshot

    js, acts, task = bag.joints, bag.actions, bag.task
    ep = f"episode {number} ({seg.origin})"
    names = {t.role: t.name for t in bag.topics}
    names.setdefault("device", " + ".join(names[r] for r in ("twist", "joy") if r in names))
    rel = lambda t: f"{(t - bag.start_ns) / 1e9:.3f} s"  # noqa: E731
    in_win = (acts.t >= seg.start_ns) & (acts.t <= seg.end_ns) & acts.deadman
    if not in_win.any():
        return f"{rel(seg.start_ns)}-{rel(seg.end_ns)} ({seg.origin}): no driving command " \
               f"on {names[acts.kind]} in it: not imported"
    t0 = int(acts.t[np.flatnonzero(in_win)[0]])
    lo = max(int(js.t[0]), int(task.t[0]))
    if t0 < lo:  # shift by whole periods, keeping the grid's phase
        t0 += int(round(math.ceil((lo - t0) / ctx.dt_ns) * ctx.dt_ns))
    tk = _ticks(t0, min(seg.end_ns, int(js.t[-1])), ctx.dt_ns)
    # steps whose motion includes a jump (a reset / teleport: faster than twice the velocity
    # limit between two joint states): leading ones are skipped (a reset just before the
    # operator drives again), any later one is an error
    if len(tk) >= 2 and ctx.jumps is not None:
        bad = _jumpy_steps(js.t, ctx.jumps, tk)
        if bad.any():
            lead = int(np.argmin(bad)) if not bad.all() else len(bad)
            tk = tk[lead:]
            bad = bad[lead:]
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                m = int(np.flatnonzero(ctx.jumps & (js.t[1:] > tk[k]) & (js.t[:-1] < tk[k + 1]))[0])
                d = np.abs(js.q[m + 1] - js.q[m])
                jn = int(np.argmax(d))
                raise _fail(f"topic {names['joint_states']}", ep, int(js.t[m]), bag,
                            f"joint {ctx.cfg.robot.joint_names[jn]} jumps by {d[jn]:.3f} rad in "
                            f"{(js.t[m + 1] - js.t[m]) / 1e9:.3f} s (messages {m} and {m + 1}), "
                            "faster than twice its velocity limit: a reset or a glitch inside "
                            "the episode; cut it out with --episodes")
    if len(tk) < 2:
        return f"{rel(seg.start_ns)}-{rel(seg.end_ns)} ({seg.origin}): shorter than one " \
               f"control period ({1 / ctx.hz:g} s) of joint states and commands: not imported"
    max_gap_ns = max_gap * 1e9

    # joint states: linear interpolation
    i = np.searchsorted(js.t, tk, side="right") - 1
    j = np.minimum(i + 1, len(js.t) - 1)
    span = (js.t[j] - js.t[i]).astype(np.float64)
    gap = np.flatnonzero((span > max_gap_ns) & (tk > js.t[i]))  # a tick on a sample needs none
    if gap.size:
        g = gap[0]
        raise _fail(f"topic {names['joint_states']}", ep, int(tk[g]), bag,
                    f"no joint state for {span[g] / 1e9:.3f} s (messages {i[g]} and {j[g]}); "
                    f"more than max_gap {max_gap:g} s (--max-gap)")
    w = np.divide(tk - js.t[i], span, out=np.zeros(len(tk)), where=span > 0)[:, None]
    q = js.q[i] + w * (js.q[j] - js.q[i])
    dq = js.dq[i] + w * (js.dq[j] - js.dq[i])

    # task state: last value; one stamped at (or after) the episode's end belongs to the next
    # episode (the sim publishes the next goal when the operator marks the end)
    ti = np.searchsorted(task.t, np.minimum(tk, seg.end_ns - 1), side="right") - 1
    goal = task.goal[ti]
    obj = task.object_pose[ti] if task.object_pose is not None else None

    # actions, held over each step
    K = len(tk) - 1
    if acts.kind in ("teleop", "device"):
        ai = np.searchsorted(acts.t, tk[:-1] + int(jitter * ctx.dt_ns), side="right") - 1
        age = tk[:-1] - acts.t[ai]
        stale = np.flatnonzero(age > max_gap_ns)
        if stale.size:
            s = stale[0]
            raise _fail(f"topic {names[acts.kind]}", ep, int(tk[s]), bag,
                        f"the last command is {age[s] / 1e9:.3f} s old (message {ai[s]}); more "
                        f"than max_gap {max_gap:g} s (--max-gap)")
        actions = np.where(acts.deadman[ai][:, None], acts.values[ai], 0.0)
    else:
        ci = np.searchsorted(acts.t, tk, side="right") - 1
        age = tk - acts.t[ci]
        stale = np.flatnonzero(age > max_gap_ns)
        if stale.size:
            s = stale[0]
            raise _fail(f"topic {names['commands']}", ep, int(tk[s]), bag,
                        f"the last command is {age[s] / 1e9:.3f} s old (message {ci[s]}); more "
                        f"than max_gap {max_gap:g} s (--max-gap)")
        # integral of the zero-order-hold command signal, at the command times and the ticks
        dts = np.diff(acts.t).astype(np.float64) / 1e9
        F = np.concatenate([np.zeros((1, acts.values.shape[1])),
                            np.cumsum(acts.values[:-1] * dts[:, None], axis=0)])
        Fk = F[ci] + acts.values[ci] * ((tk - acts.t[ci]) / 1e9)[:, None]
        mean_dq = (Fk[1:] - Fk[:-1]) / (np.diff(tk).astype(np.float64) / 1e9)[:, None]
        actions = np.stack([ctx.mapper.to_action(mean_dq[k], q[k]) for k in range(K)])

    # observations, rewards, outcomes
    t_ = ctx.task
    obs = np.empty((K + 1, ctx.obs_spec.dim), np.float32)
    dist = np.empty(K + 1)
    for k in range(K + 1):
        s = TaskSnapshot(q=q[k], dq=dq[k], ee_pos=ctx.kin.ee_position(q[k]), goal=goal[k],
                         object_pose=None if obj is None else obj[k])
        obs[k] = t_.observation(s)
        dist[k] = t_.distance(s)
    success = dist[1:] < ctx.cfg.task.success_threshold
    n = K
    terminated = np.zeros(K, bool)
    truncated = np.zeros(K, bool)
    if ctx.cfg.task.terminate_on_success and success.any():
        n = int(np.flatnonzero(success)[0]) + 1
        terminated[n - 1] = True
    else:
        truncated[K - 1] = True
    cols = empty_columns(n, ctx.obs_spec.dim, ctx.act_spec.dim)
    cols["observation"][:] = obs[:n]
    cols["next_observation"][:] = obs[1:n + 1]
    cols["action"][:] = actions[:n]
    cols["reward"][:] = [t_.reward_from_distance(d) for d in dist[1:n + 1]]
    cols["terminated"][:] = terminated[:n]
    cols["truncated"][:] = truncated[:n]
    cols["source"][:] = Source.DEMO
    cols["robot_id"][:] = robot_id
    cols["actor_session"][:] = session
    cols["seq"][:] = np.arange(seq0, seq0 + n)
    cols["episode_id"][:] = episode_id_for(session, number)
    cols["step_index"][:] = np.arange(n)
    cols["stamp_ns"][:] = tk[:n]
    res = validate_columns(cols, ctx.obs_spec, ctx.act_spec,
                           check_bounds=ctx.cfg.replay.check_bounds)
    if not res.keep.all():
        k = int(np.flatnonzero(~res.keep)[0])
        detail = res.examples[str(res.reasons[k])].split(": ", 1)[-1]
        raise _fail(f"{ep}", f"step {k}", int(tk[k]), bag,
                    f"the row would be refused by the store: {detail}")
    return PlannedEpisode(number, seg, res.columns, bool(success[:n].any()), float(dist[n]),
                          int(tk[n]))


# --------------------------------------------------------------------------- plan / write


def _settings_hash(cfg: Config, bag: BagData, boundaries: str, segments: list[Segment],
                   opts: ImportOptions, extra: dict[str, Any] | None = None) -> int:
    """32 bits over everything that shapes the rows besides the joint states (not file paths:
    the segments carry a ranges file's content)."""
    doc = {
        "v": 1, "control_hz": cfg.sim.control_hz,
        "task": cfg.task.model_dump(mode="json"), "robot": cfg.robot.model_dump(mode="json"),
        "topics": {t.role: t.name for t in bag.topics}, "action_source": bag.actions.kind,
        "boundaries": boundaries, "segments": [[s.start_ns, s.end_ns] for s in segments],
        "jitter": opts.jitter, "digest": bag.digest,
        # a device / goal-topic import's own settings (only then: earlier sessions keep theirs)
        **(extra or {}),
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "little")


#: A session's low bits: the settings (and full content) hash; above them the recording's.
_SETTINGS_BITS = 32


def bag_session_prefix(motion_digest: str) -> int:
    """The recording's part of a session id (bits 32..62), from its joint-state digest."""
    h = int.from_bytes(hashlib.sha256(bytes.fromhex(motion_digest)).digest()[:8], "little")
    return ((h & ((1 << 30) - 1)) << _SETTINGS_BITS) | _SESSION_FLAG


def plan_import(bag_path: str | Path, cfg: Config, opts: ImportOptions = ImportOptions(),
                store: str | Path | None = None) -> ImportPlan:
    """Read, check, cut and resample a bag into episodes; nothing is written.

    With ``store``: an existing store must have the config's specs, and a recording already
    imported there with other settings is refused (unless ``opts.allow_reimport``).
    Raises ``ValueError`` (:class:`~robot_rl.demos.bag.BagError` for the bag itself) naming
    the problem.
    """
    if not 0 <= opts.robot_id <= 0xFFFF:
        raise ValueError(f"--robot-id: expected 0..65535, got {opts.robot_id}")
    if not 0 <= opts.jitter < 1:
        raise ValueError(f"--jitter: expected a fraction of the control period in [0, 1), "
                         f"got {opts.jitter}")
    ctx = _Context(cfg)
    max_gap = opts.max_gap if opts.max_gap is not None else max(0.1, 2.0 / ctx.hz)
    if not max_gap > 0:
        raise ValueError(f"--max-gap: expected seconds > 0, got {max_gap}")
    ranges = load_ranges(opts.episodes_file) if opts.episodes_file else None
    mapper = _device_mapper(cfg, opts.teleop_source) if opts.teleop_source else None
    if opts.goal_frame is not None and not opts.topics.goal:
        raise ValueError("--goal-frame: only with --goal-topic")
    base_frame = (opts.goal_frame or ctx.kin.base_link) if opts.topics.goal else ""
    bag = read_bag(bag_path, joint_names=cfg.robot.joint_names, action_dim=ctx.act_spec.dim,
                   task_name=cfg.task.name, needs_object=ctx.task.has_object,
                   topics=opts.topics, distro=opts.distro, action_source=opts.action_source,
                   teleop_source=opts.teleop_source, base_frame=base_frame)
    ctx.jumps = jump_intervals(bag.joints.t, bag.joints.q,
                               np.asarray(cfg.robot.limits.dq_max, dtype=np.float64))
    notes: list[str] = []
    dropped: list[str] = []
    extra: dict[str, Any] = {}
    if bag.device is not None:
        from dataclasses import asdict

        from robot_rl.demos.device import replay_device

        bag.actions, device_notes = replay_device(bag.device, bag.joints, mapper, ctx.dt_ns,
                                                  bag.end_ns)
        notes += device_notes
        extra["device"] = {"source": bag.device.source, "mapping": asdict(mapper.m)}
    if opts.topics.goal:
        extra["goal_frame"] = base_frame
    has_marks = bag.actions.kind in ("teleop", "device") and bool(
        (bag.actions.mark != MARK_NONE).any())
    if ranges is not None:
        boundaries = f"ranges file {opts.episodes_file}"
        segments = segments_from_ranges(bag, ranges, str(opts.episodes_file))
        if has_marks:
            notes.append("the bag's episode marks are ignored: --episodes was given")
    elif has_marks:
        boundaries = "episode marks"
        segments, dropped = segments_from_marks(bag)
    else:
        boundaries = "whole bag"
        segments = [Segment(bag.start_ns, bag.end_ns, "whole bag")]
    mode = "ranges" if ranges is not None else "marks" if has_marks else "whole"
    session = bag_session_prefix(bag.motion_digest) | _settings_hash(cfg, bag, mode, segments,
                                                                      opts, extra)
    episodes: list[PlannedEpisode] = []
    seq = 0
    for seg in segments:
        ep = build_episode(bag, seg, len(episodes), ctx, session=session,
                           robot_id=opts.robot_id, seq0=seq, max_gap=max_gap, jitter=opts.jitter)
        if isinstance(ep, str):
            dropped.append(ep)
            continue
        episodes.append(ep)
        seq += ep.steps
        if seg.labelled_success is not None and seg.labelled_success != ep.success:
            said = "success" if seg.labelled_success else "failure"
            notes.append(f"episode {ep.number} ({seg.origin}): labelled {said} but the task's "
                         f"success function says {'success' if ep.success else 'no success'} "
                         f"(final distance {ep.final_distance:.3f} m); stored as the task says")
    if not episodes:
        why = "; ".join(dropped) or "no episode in the bag"
        raise ValueError(f"bag {bag.path}: nothing to import ({why})")
    plan = ImportPlan(bag, session, opts.robot_id, ctx.hz, boundaries, episodes, dropped, notes,
                      ctx.obs_fields, ctx.act_spec)
    if store is not None:
        _check_store(plan, Path(store), ctx, opts)
    return plan


def _device_mapper(cfg: Config, source: str):
    """The teleop node's mapper for ``source``: the config's ``teleop`` section with ``input``
    set to it (refused if the section configures another device's axes or buttons)."""
    from robot_rl.demos.bag import TELEOP_SOURCES
    from robot_rl.teleop import TeleopMapper

    if source not in TELEOP_SOURCES:
        raise ValueError(f"--teleop-source: expected {' or '.join(TELEOP_SOURCES)}, "
                         f"got {source!r}")
    t = cfg.teleop
    if t.input != source:
        explicit = [f for f in ("axes", "axis_scale", "shift_button", "shift_axes",
                                "deadman_button", "success_button", "failure_button",
                                "discard_button") if getattr(t, f) is not None]
        if explicit:
            fields = ", ".join("teleop." + f for f in explicit)
            raise ValueError(f"--teleop-source {source}: the config's teleop section is for "
                             f"teleop.input={t.input} and sets {fields}; set "
                             f"teleop.input={source} (and that device's axes / buttons)")
        cfg = cfg.model_copy(update={"teleop": t.model_copy(update={"input": source})})
    return TeleopMapper.from_config(cfg)


def _check_store(plan: ImportPlan, store: Path, ctx: _Context, opts: ImportOptions) -> None:
    """Spec of an existing store, earlier imports of the same recording (read-only)."""
    from robot_rl.replay import ReplayReader

    if not (store / "zarr.json").is_file():
        return  # created by the writer
    reader = ReplayReader(store)
    reader.layout.check_matches(ctx.obs_fields, ctx.act_spec, str(store))
    sessions = reader.commit().sessions
    prefix = plan.session >> _SETTINGS_BITS
    others = sorted(s for (r, s) in sessions
                    if r == plan.robot_id and s >> _SETTINGS_BITS == prefix and s != plan.session)
    if others and not opts.allow_reimport:
        raise ValueError(
            f"bag {plan.bag.path}: this recording is already in {store} for robot "
            f"{plan.robot_id}, imported with other settings (actor_session "
            f"{', '.join(hex(s) for s in others)}); importing it again would store the "
            "demonstrations twice. Use the same config and options to complete that import, "
            "or --allow-reimport to add it anyway")
    wm = sessions.get((plan.robot_id, plan.session))
    if wm is not None and wm >= 0:
        plan.already_stored = sum(int((e.columns["seq"] <= wm).sum()) for e in plan.episodes)


def write_plan(plan: ImportPlan, store: str | Path, cfg: Config) -> ImportResult:
    """Append the planned episodes, each whole (one commit per episode).

    The writer creates a missing store with the plan's specs, refuses a store with other specs
    (:class:`~robot_rl.replay.StoreError`) and one another writer holds
    (:class:`~robot_rl.replay.StoreLockedError`).
    """
    from robot_rl.replay import ReplayWriter

    store = Path(store)
    created = not (store / "zarr.json").is_file()
    result = ImportResult(plan, str(store), written=True, created_store=created)
    # demo rows hold the operator's command whatever replay.policy_action says: keep the
    # setting of an existing store rather than refuse one that learns from proposals
    with ReplayWriter(store, plan.observation_spec, plan.action_spec, cfg.replay,
                      adopt_policy_action=True) as w:
        for ep in plan.episodes:
            r = w.append_episode(ep.columns)
            result.added_rows += r.accepted
            result.duplicate_rows += r.duplicates
    return result


def import_bag(bag_path: str | Path, store: str | Path, cfg: Config,
               opts: ImportOptions = ImportOptions(), *, dry_run: bool = False) -> ImportResult:
    """Plan (validate everything), then write unless ``dry_run``."""
    plan = plan_import(bag_path, cfg, opts, store)
    if dry_run:
        return ImportResult(plan, str(store), written=False,
                            created_store=not (Path(store) / "zarr.json").is_file())
    return write_plan(plan, store, cfg)
