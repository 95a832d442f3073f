"""replay_node: the single writer of the run's replay store (DESIGN §2, §4). One per graph.

A thin adapter around :class:`robot_rl.replay.ReplayWriter`, which does all the validation,
deduplication and committing:

* subscribes ``transitions_topic`` (default ``/rl/transitions``, ``Transition``,
  ``TRANSITION_QOS``) and appends every message to ``<run_dir>/replay.zarr`` (``run_dir``
  parameter, default ``run.root/run.name`` of the config). Bad rows (NaN/inf, wrong lengths,
  out of bounds, unknown source...) are refused and counted by reason; re-sent rows (same
  ``(robot_id, actor_session, seq)``) are stored once;
* commits every ``replay.flush_interval`` s and then publishes, on ``ack_topic`` (default
  ``/rl/replay_ack``, ``ReplayAck``, ``ACK_QOS``), the new ``committed_seq`` of every session whose
  acknowledgement moved; every ``ack_period`` s it re-publishes the acknowledgement of every
  session heard from in the last ``ack_session_ttl`` s (all stored sessions count as heard at
  start), so an actor that missed one, or outlived a replay restart, still gets it;
* ``/diagnostics`` (1 Hz): rows, received, accepted, duplicates, rejected, ``rejected.<reason>``,
  commits, ingest_per_s, sessions, backlog; a log line per rejection reason (throttled, with the
  writer's example message) and a status line every 10 s;
* on shutdown (Ctrl-C / SIGTERM) it commits what it holds, publishes the last acknowledgements
  (when the ROS context still allows it) and releases the writer lock.

Exit status: 0 after a clean shutdown, 2 for a bad parameter (named), 3 when the store cannot be
opened -- another writer holds it (the message names that process: pid, host, since when,
command), or it was created for another observation/action spec, or it is damaged -- and 1 when
the writer fails while running (e.g. the disk is full).

**Threads and the hot path.** The subscription is ``raw``: the executor thread only takes the
serialized message and queues its bytes. A writer thread owns the ``ReplayWriter`` (it is not
thread-safe) and, every ``batch_period`` s, decodes the queued messages, appends them, commits,
acknowledges and reports. Two reasons, both measured on the 2-core dev VM:

* decoding in rclpy (``Transition`` objects, one Python property set per field) capped the
  receiving side near 7.7k msg/s; the raw bytes of a ``Transition`` whose arrays have the
  spec's lengths have one fixed CDR layout, so a batch of them is decoded with a single
  ``np.frombuffer`` into a structured dtype (:class:`CdrLayout`; checked against
  ``rclpy.serialization`` at start, and per message: length, encapsulation, array lengths).
  Anything else -- other lengths, another encoding -- goes through ``deserialize_message`` and
  the writer's per-row path, which names what is wrong;
* a commit fsyncs ~15-30 files (35-60 ms here); done in the executor thread it would stop the
  takes, and ``TRANSITION_QOS`` (keep-last 1000) overflows after 100 ms at 10k msg/s. In the
  writer thread the fsyncs release the GIL and the executor keeps taking.
"""
from __future__ import annotations

import collections
import copy
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.serialization import deserialize_message, serialize_message

from robot_rl.config import ConfigError
from robot_rl.graph import DIAGNOSTICS_TOPIC, REPLAY_ACK_TOPIC, TRANSITIONS_TOPIC
from robot_rl.replay import ReplayWriter, StoreError, StoreLockedError
from robot_rl.replay.schema import COLUMN_NAMES
from robot_rl.ros_nodes.common import ACK_QOS, TRANSITION_QOS, run_node, status_message
from robot_rl.ros_nodes.params import declare_config
from robot_rl.specs import BoxSpec
from robot_rl_interfaces.msg import ReplayAck, Transition

#: Topic names (absolute: shared by every robot) and their descriptions.
TOPICS = {
    "transitions_topic": (TRANSITIONS_TOPIC, "Transition messages from the actors"),
    "ack_topic": (REPLAY_ACK_TOPIC, "ReplayAck: highest committed seq per actor session"),
    "diagnostics_topic": (DIAGNOSTICS_TOPIC, "diagnostic_msgs/DiagnosticArray, 1 Hz"),
}
STORE_NAME = "replay.zarr"
STATUS_LOG_PERIOD = 10.0  # s between status lines in the log
REJECT_LOG_PERIOD = 10.0  # s between log lines about one rejection reason
BACKLOG_WARN = 50_000  # queued messages that make the node say it is falling behind
#: Depth of the transitions subscription's history (reliable keep-last, else TRANSITION_QOS).
#: Messages wait there until the executor takes them; when it is full the oldest is dropped. At
#: 10k msg/s, 1000 (TRANSITION_QOS) is 100 ms of slack, which a busy 2-core machine exceeds
#: (measured: 15 % loss at 15k msg/s with 1000, none with 10000); 10000 rows are 2.7 MB.
TRANSITIONS_DEPTH = 10_000

EXIT_STORE = 3  # the store cannot be opened (locked, other spec, damaged)
EXIT_FAILED = 1  # the writer failed while running


# --------------------------------------------------------------------------- CDR decoding


def _cdr_fields(obs_dim: int, act_dim: int) -> tuple[list[tuple[str, str, tuple, int]], int]:
    """``(name, dtype, shape, offset)`` of every field of a serialized ``Transition`` whose
    arrays have the given lengths, and its total size (XCDR1: each primitive aligned to its
    size, 8 at most, relative to the payload after the 4-byte encapsulation header)."""
    fields: list[tuple[str, str, tuple, int]] = []
    off = 0

    def put(name: str, dtype: str, shape: tuple = ()) -> None:
        nonlocal off
        size = np.dtype(dtype).itemsize
        off = -(-off // size) * size
        fields.append((name, dtype, shape, 4 + off))
        off += size * int(np.prod(shape, dtype=np.int64))

    for name, dim in (("observation", obs_dim), ("action", act_dim),
                      ("next_observation", obs_dim)):
        put(f"{name}#len", "<u4")
        put(name, "<f4", (dim,))
    put("reward", "<f4")
    put("terminated", "u1")
    put("truncated", "u1")
    put("source", "u1")
    put("robot_id", "<u2")
    put("actor_session", "<u8")
    put("seq", "<u8")
    put("episode_id", "<u8")
    put("step_index", "<u4")
    put("stamp_ns", "<i8")
    put("policy_version", "<u8")
    put("safety_rules", "<u4")
    return fields, 4 + off


@dataclass(frozen=True)
class CdrLayout:
    """The fixed wire layout of ``Transition`` messages with ``obs_dim``/``act_dim`` arrays.

    :meth:`decode` turns a list of serialized messages into the writer's columns in one
    ``np.frombuffer``, for every message that has this layout (right size, little-endian plain
    CDR, array lengths as the spec says); the others are left for the generic path.
    """

    obs_dim: int
    act_dim: int

    def __post_init__(self) -> None:
        fields, size = _cdr_fields(self.obs_dim, self.act_dim)
        dtype = np.dtype({"names": ["#encapsulation"] + [f[0] for f in fields],
                          "formats": [">u2"] + [(f[1], f[2]) if f[2] else f[1] for f in fields],
                          "offsets": [0] + [f[3] for f in fields], "itemsize": size})
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "size", size)

    def decode(self, raws: list[bytes]) -> tuple[dict[str, np.ndarray] | None, np.ndarray]:
        """``(columns of the messages that fit, mask of those messages)``; columns is None when
        none fits. Columns are in message order, restricted to the mask."""
        n = len(raws)
        sizes = np.fromiter(map(len, raws), np.int64, n)
        fits = sizes == self.size
        if not fits.any():
            return None, fits
        good = raws if fits.all() else [r for r, f in zip(raws, fits) if f]
        arr = np.frombuffer(bytearray().join(good), dtype=self.dtype)  # writable copy
        ok = ((arr["#encapsulation"] == 1)  # CDR_LE
              & (arr["observation#len"] == self.obs_dim) & (arr["action#len"] == self.act_dim)
              & (arr["next_observation#len"] == self.obs_dim))
        if not ok.all():
            idx = np.flatnonzero(fits)
            fits[idx[~ok]] = False
            arr = arr[ok]
            if not len(arr):
                return None, fits
        return {name: arr[name] for name in COLUMN_NAMES}, fits

    def self_check(self) -> str | None:
        """Compare :meth:`decode` with rclpy's serialization of a message with distinct values;
        the problem in words, or None if they agree."""
        rng = np.random.default_rng(1)
        ref = {
            "observation": rng.standard_normal(self.obs_dim).astype(np.float32),
            "action": rng.standard_normal(self.act_dim).astype(np.float32),
            "next_observation": rng.standard_normal(self.obs_dim).astype(np.float32),
            "reward": np.float32(-1.25), "terminated": True, "truncated": False, "source": 2,
            "robot_id": 0xBEEF, "actor_session": 0xFEDCBA9876543210, "seq": 0x0123456789ABCDEF,
            "episode_id": 0x1122334455667788, "step_index": 0x99AABBCC,
            "stamp_ns": -0x0123456789ABCDEF, "policy_version": 0x8877665544332211,
            "safety_rules": 0xDEADBEEF,
        }
        msg = Transition(**{k: (v.tolist() if isinstance(v, np.ndarray) else
                                float(v) if isinstance(v, np.floating) else v)
                            for k, v in ref.items()})
        raw = serialize_message(msg)
        cols, fits = self.decode([raw])
        if cols is None:
            return (f"a serialized Transition has {len(raw)} bytes, header {raw[:4].hex()}; "
                    f"expected {self.size} bytes, header 00010000")
        for name, want in ref.items():
            got = cols[name][0]
            if not np.array_equal(np.asarray(got), np.asarray(want, dtype=got.dtype)):
                return f"field {name}: decoded {got!r}, serialized {want!r}"
        return None


def _message_fields(msg: Transition) -> dict[str, Any]:
    """A deserialized ``Transition`` as keyword arguments of :meth:`ReplayWriter.append`."""
    f32 = np.float32
    return dict(
        observation=np.asarray(msg.observation, f32), action=np.asarray(msg.action, f32),
        next_observation=np.asarray(msg.next_observation, f32), reward=msg.reward,
        terminated=msg.terminated, truncated=msg.truncated, source=msg.source,
        robot_id=msg.robot_id, actor_session=msg.actor_session, seq=msg.seq,
        episode_id=msg.episode_id, step_index=msg.step_index, stamp_ns=msg.stamp_ns,
        policy_version=msg.policy_version, safety_rules=msg.safety_rules)


#: Transition.SOURCE_DEMO: rows appended whole episodes at a time
DEMO = 1

# --------------------------------------------------------------------------- the node


class ReplayNode(Node):
    def __init__(self, **kwargs):
        super().__init__("replay_node", **kwargs)
        self.cfg = declare_config(self, ("robot", "task", "replay", "run"))

        def param(name: str, default: Any, doc: str) -> Any:
            return self.declare_parameter(name, default, ParameterDescriptor(description=doc)).value

        names = {k: param(k, v, doc) for k, (v, doc) in TOPICS.items()}
        run_dir = param("run_dir", "", "run directory (the store is <run_dir>/replay.zarr); "
                        "empty: run.root/run.name of the config")
        self.ack_period = float(param("ack_period", 0.5, "s between re-publications of every "
                                      "live session's acknowledgement"))
        self.ack_session_ttl = float(param(
            "ack_session_ttl", 300.0, "s after its last transition that a session's "
            "acknowledgement is still re-published (0: forever)"))
        self.batch_period = float(param("batch_period", 0.02, "s between batches handed from "
                                        "the subscription to the writer"))
        self.fast_decode = bool(param("fast_decode", True, "decode Transition bytes with numpy "
                                      "when they have the spec's fixed layout"))
        depth = int(param("transitions_depth", TRANSITIONS_DEPTH, "history depth of the "
                          "transitions subscription (otherwise TRANSITION_QOS)"))
        if depth < 1:
            raise ConfigError(f"transitions_depth: expected >= 1, got {depth}")
        for name, value in (("ack_period", self.ack_period), ("batch_period", self.batch_period)):
            if not value > 0:
                raise ConfigError(f"{name}: expected > 0 s, got {value}")
        if self.ack_session_ttl < 0:
            raise ConfigError(f"ack_session_ttl: expected >= 0 s, got {self.ack_session_ttl}")

        try:
            from robot_rl.actions import ActionMapper
            from robot_rl.tasks import make_task

            obs_spec = make_task(self.cfg.task, self.cfg.robot).obs_spec
            act_spec: BoxSpec = ActionMapper(self.cfg.task, self.cfg.robot).spec
        except ValueError as e:
            raise ConfigError(f"task: {e}") from None
        self.run_dir = Path(run_dir) if run_dir else self.cfg.run.run_dir
        self.store_path = self.run_dir / STORE_NAME
        self.run_dir.mkdir(parents=True, exist_ok=True)
        existed = (self.store_path / "zarr.json").is_file()
        # StoreLockedError / StoreError propagate to main() (exit 3, message on stderr)
        self.writer = ReplayWriter(self.store_path, obs_spec, act_spec, self.cfg.replay)
        w = self.writer
        log = self.get_logger()
        if w.recovered_lock_from:
            log.warning(f"took over the writer lock of {w.recovered_lock_from}")

        self.layout: CdrLayout | None = None
        if self.fast_decode:
            layout = CdrLayout(obs_spec.dim, act_spec.dim)
            problem = layout.self_check()
            if problem:
                log.warning(f"fast Transition decoding off ({problem}); decoding each message "
                            "with rclpy")
            else:
                self.layout = layout

        # -- state shared between the executor thread and the writer thread --------------------
        self._inbox: collections.deque[bytes] = collections.deque()  # append/popleft: atomic
        self.failure: str | None = None  # set by the writer thread when it gives up
        self._stop = threading.Event()

        # -- writer-thread state -----------------------------------------------------------------
        self.received = 0  # messages taken from the inbox
        #: demo rows waiting for the rest of their episode: (robot, session, episode) -> rows
        self._demo_held: dict[tuple[int, int, int], dict[int, dict[str, Any]]] = {}
        self.demo_episodes = 0
        self.undecodable = 0  # messages not even rclpy could deserialize
        self._published: dict[tuple[int, int], int] = {}  # last ack published per session
        now = time.monotonic()
        self._last_seen = {k: now for k in w.acks()}  # sessions of the store count as heard
        self._commits_seen = w.stats.commits
        self._next_ack = now + self.ack_period
        self._next_diag = now + 1.0
        self._next_status = now + STATUS_LOG_PERIOD
        self._diag_prev = (now, 0, 0)  # time, received, accepted at the last diagnostics
        self._reject_logged: dict[str, tuple[float, int]] = {}  # reason -> (time, count) logged
        self._reject_prev: dict[str, int] = {}  # counts at the last diagnostics
        self._status_prev = (now, 0)

        self.ack_pub = self.create_publisher(ReplayAck, names["ack_topic"], ACK_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, names["diagnostics_topic"], 10)
        qos = copy.copy(TRANSITION_QOS)
        qos.depth = depth
        self.create_subscription(Transition, names["transitions_topic"], self._on_transition,
                                 qos, raw=True)
        self._thread = threading.Thread(target=self._run_writer, name="replay_writer")
        self._thread.start()
        log.info(
            f"replay node {self.get_fully_qualified_name()}: store {self.store_path} "
            f"({'resumed' if existed else 'created'}: {w.committed_length} rows, "
            f"{len(w.acks())} sessions), observation "
            f"{obs_spec.dim}, action {act_spec.dim}, transitions "
            f"{self.resolve_topic_name(names['transitions_topic'])}, acks "
            f"{self.resolve_topic_name(names['ack_topic'])}, flush_interval "
            f"{self.cfg.replay.flush_interval:g}s, fast_decode="
            f"{'on' if self.layout else 'off'}")

    # -- executor thread ---------------------------------------------------------------------

    def _on_transition(self, raw: bytes) -> None:
        self._inbox.append(raw)

    # -- writer thread ---------------------------------------------------------------------

    def _run_writer(self) -> None:
        try:
            while True:
                stopping = self._stop.wait(self.batch_period)
                self._cycle(final=stopping)
                if stopping:
                    break
        except Exception as e:  # noqa: BLE001 - say why, then stop the node (exit 1)
            self.failure = f"replay writer failed: {type(e).__name__}: {e}"
            self._say("fatal", f"{self.failure}; stopping (actors keep their unacknowledged "
                                    "transitions and re-send them to the next replay node)")
            self.context.try_shutdown()
        finally:
            self.writer.close()  # flushes unless the writer is broken; releases the lock

    def _take(self) -> list[bytes]:
        inbox = self._inbox
        n = len(inbox)
        return [inbox.popleft() for _ in range(n)]

    def _ingest(self, raws: list[bytes]) -> None:
        w = self.writer
        self.received += len(raws)
        fits = np.zeros(len(raws), bool)
        if self.layout is not None:
            cols, fits = self.layout.decode(raws)
            if cols is not None:
                self._note_sessions(cols["robot_id"], cols["actor_session"])
                demo = cols["source"] == DEMO
                if demo.any():
                    for i in np.flatnonzero(demo):
                        self._hold_demo_row({k: v[i] for k, v in cols.items()})
                    cols = {k: v[~demo] for k, v in cols.items()}
                if len(cols["seq"]):
                    w.append_batch(cols)
        if fits.all():
            return
        # the generic path (rows out of arrival order relative to the batch: harmless, the
        # store is keyed by (robot_id, actor_session, seq), episodes by (robot_id, episode_id))
        now = time.monotonic()
        for raw, fit in zip(raws, fits):
            if fit:
                continue
            try:
                msg = deserialize_message(raw, Transition)
            except Exception:  # noqa: BLE001 - not a Transition at all
                self.undecodable += 1
                continue
            self._last_seen[(msg.robot_id, msg.actor_session)] = now
            fields = _message_fields(msg)
            if msg.source == DEMO:
                self._hold_demo_row({k: np.asarray(v) for k, v in fields.items()})
            else:
                w.append(**fields)

    def _hold_demo_row(self, row: dict[str, Any]) -> None:
        """Demonstrations are appended whole (DESIGN §4): a demo row waits here until every
        step of its episode, up to the one that ends it, has arrived; then the episode goes to
        the store in one commit (``append_episode``: all rows or none). A re-sent episode that
        is already stored is dropped there as duplicates."""
        key = (int(row["robot_id"]), int(row["actor_session"]), int(row["episode_id"]))
        ep = self._demo_held.setdefault(key, {})
        ep[int(row["step_index"])] = row
        ends = [k for k, r in ep.items() if bool(r["terminated"]) or bool(r["truncated"])]
        if not ends:
            return
        last = min(ends)
        if any(k not in ep for k in range(last + 1)):
            return
        rows = [ep[k] for k in range(last + 1)]
        del self._demo_held[key]
        batch = {name: np.stack([np.asarray(r[name]) for r in rows]) for name in rows[0]}
        res = self.writer.append_episode(batch)
        self.demo_episodes += 1
        self._say("info", f"demo episode {key[2]:#x} of robot {key[0]}: {len(rows)} rows "
                          f"appended whole ({res.accepted} new, {res.duplicates} duplicates"
                          f"{', rejected ' + str(res.rejected) if res.rejected else ''})")

    def _note_sessions(self, robot_id: np.ndarray, session: np.ndarray) -> None:
        now = time.monotonic()
        if len(robot_id) and (robot_id == robot_id[0]).all() and (session == session[0]).all():
            self._last_seen[(int(robot_id[0]), int(session[0]))] = now
            return
        for key in set(zip(robot_id.tolist(), session.tolist())):
            self._last_seen[key] = now

    def _cycle(self, final: bool = False) -> None:
        w = self.writer
        raws = self._take()
        if raws:
            self._ingest(raws)
        if final:
            w.flush()
        else:
            w.maybe_flush()
        now = time.monotonic()
        if w.stats.commits != self._commits_seen:
            self._commits_seen = w.stats.commits
            acks = w.acks()
            self._publish_acks({k: v for k, v in acks.items() if self._published.get(k) != v},
                               best_effort=final)
        if now >= self._next_ack and not final:
            self._next_ack = now + self.ack_period
            self._republish_acks(now)
        if now >= self._next_diag or final:
            self._next_diag = now + 1.0
            self._diagnostics(now, final)

    def _publish_acks(self, acks: dict[tuple[int, int], int], best_effort: bool = False) -> None:
        stamp = time.time_ns()
        for (robot_id, session), seq in acks.items():
            try:
                self.ack_pub.publish(ReplayAck(robot_id=robot_id, actor_session=session,
                                               committed_seq=seq, stamp_ns=stamp))
            except Exception:  # noqa: BLE001 - the context is gone at shutdown
                if best_effort or not self.context.ok():
                    return
                raise
            self._published[(robot_id, session)] = seq

    def _republish_acks(self, now: float) -> None:
        acks = self.writer.acks()
        ttl = self.ack_session_ttl
        if ttl > 0:
            live = {}
            for k, t in list(self._last_seen.items()):
                if now - t > ttl:
                    del self._last_seen[k]
                elif k in acks:
                    live[k] = acks[k]
            acks = live
        self._publish_acks(acks)

    # -- reporting (writer thread) --------------------------------------------------------------

    def _say(self, level: str, text: str) -> None:
        """Log through rclpy, or straight to stderr once the context is shut down (the final
        lines come after Ctrl-C, when /rosout can no longer be published)."""
        if self.context.ok():
            # One call site per severity: rclpy refuses a call site whose severity changes
            # ("Logger severity cannot be changed between calls").
            log = self.get_logger()
            if level == "info":
                log.info(text)
            elif level in ("warn", "warning"):
                log.warning(text)
            elif level == "error":
                log.error(text)
            elif level == "fatal":
                log.fatal(text)
            else:
                log.debug(text)
        else:
            print(f"[{level.upper()}] [{self.get_name()}]: {text}", file=sys.stderr, flush=True)

    def values(self) -> dict[str, Any]:
        """The status values of /diagnostics (writer thread)."""
        w, st = self.writer, self.writer.stats
        rejected = dict(st.rejected)
        if self.undecodable:
            rejected["message.undecodable"] = self.undecodable
        out: dict[str, Any] = {
            "rows": w.committed_length, "received": self.received + len(self._inbox),
            "accepted": st.accepted, "duplicates": st.duplicates,
            "rejected": sum(rejected.values()), "commits": st.commits,
            "pending": w.pending_rows, "backlog": len(self._inbox),
            "sessions": len(w.acks()), "store": str(self.store_path),
            "demo_episodes": self.demo_episodes,
            "demo_rows_held": sum(len(v) for v in self._demo_held.values()),
        }
        out.update({f"rejected.{k}": v for k, v in sorted(rejected.items())})
        return out

    def _diagnostics(self, now: float, final: bool) -> None:
        values = self.values()
        t0, rec0, acc0 = self._diag_prev
        dt = max(now - t0, 1e-9)
        values["ingest_per_s"] = round((values["received"] - rec0) / dt, 1)
        values["accepted_per_s"] = round((values["accepted"] - acc0) / dt, 1)
        self._diag_prev = (now, values["received"], values["accepted"])
        log = self.get_logger()
        fresh = self._log_rejections(now, force=final)
        level, message = "ok", "ok"
        if values["backlog"] > BACKLOG_WARN:
            level, message = "warn", f"falling behind: {values['backlog']} messages queued"
            log.warning(message, throttle_duration_sec=10.0)
        elif fresh:
            level, message = "warn", f"rejecting transitions ({', '.join(sorted(fresh))})"
        try:
            self.diag_pub.publish(status_message(self, level, message, values))
        except Exception:  # noqa: BLE001 - the context is gone at shutdown
            if not final and self.context.ok():
                raise
        if now >= self._next_status or final:
            self._next_status = now + STATUS_LOG_PERIOD
            t1, acc1 = self._status_prev
            self._status_prev = (now, values["accepted"])
            rate = (values["accepted"] - acc1) / max(now - t1, 1e-9)
            self._say("info", f"{'final: ' if final else ''}rows={values['rows']} "
                     f"received={values['received']} accepted={values['accepted']} "
                     f"({rate:.0f}/s) duplicates={values['duplicates']} "
                     f"rejected={values['rejected']} commits={values['commits']} "
                     f"sessions={values['sessions']} backlog={values['backlog']}")

    def _log_rejections(self, now: float, force: bool = False) -> set[str]:
        """One log line per reason with new rejections, at most every REJECT_LOG_PERIOD s per
        reason; returns the reasons with rejections since the previous call."""
        st = self.writer.stats
        counts = dict(st.rejected)
        if self.undecodable:
            counts["message.undecodable"] = self.undecodable
        fresh = {code for code, n in counts.items() if n != self._reject_prev.get(code, 0)}
        self._reject_prev = counts
        for code, n in counts.items():
            t, logged = self._reject_logged.get(code, (-1e18, 0))
            if n != logged and (now - t >= REJECT_LOG_PERIOD or force):
                example = st.examples.get(code, "a message rclpy could not deserialize")
                self._say("warning", f"rejected {n - logged} transition(s) for {code} "
                          f"(total {n}); e.g. {example}")
                self._reject_logged[code] = (now, n)
        return fresh

    # -- shutdown ------------------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the writer thread (it commits, acknowledges and closes the store) first."""
        thread = getattr(self, "_thread", None)
        if thread is not None and thread.is_alive():
            self._stop.set()
            thread.join()
        super().destroy_node()


def main(args=None) -> int:
    made: list[ReplayNode] = []
    # rclpy's SIGTERM handler shuts the context down and then calls the handler installed
    # before it -- by default SIG_DFL, which kills the process before the last commit. A Python
    # handler that does nothing leaves the shutdown to rclpy: spin ends, destroy_node commits.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def make() -> ReplayNode:
        made.append(ReplayNode())
        return made[-1]

    try:
        code = run_node(make, "replay_node", args)
    except (StoreLockedError, StoreError) as e:
        print(f"replay_node: {e}", file=sys.stderr)
        return EXIT_STORE
    if code == 0 and made and made[-1].failure:
        print(f"replay_node: {made[-1].failure}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
