"""Reading a rosbag2 recording (MCAP or sqlite3) into checked numpy streams, without ROS.

Uses the pure-Python ``rosbags`` library: :class:`rosbags.rosbag2.Reader` opens the bag (a
directory with ``metadata.yaml``, or a single ``.mcap`` / ``.db3`` file), and a typestore built
from the ROS 2 distro's standard types (``--distro``, default kilted; ``sensor_msgs/JointState``
and ``std_msgs/Float64MultiArray`` are the same in every ROS 2 distro) plus the
``robot_rl_interfaces`` messages parsed from their ``.msg`` files decodes the CDR payloads.

:func:`read_bag` reads **every** message of the topics it needs, decodes and checks each one,
and returns the streams; anything wrong raises :class:`BagError` naming the bag, the storage
file(s), the topic, its type and the message's index on that topic. Nothing is written here --
the importer validates the whole bag before it touches a store.

Topics (names relative to ``--namespace`` unless absolute, DESIGN §2 defaults):

* ``joint_states`` (``sensor_msgs/msg/JointState``): any rate, any joint order; joints are
  matched by name to the robot profile's ``joint_names`` (extra joints, e.g. fingers, ignored).
* ``rl/teleop`` (``robot_rl_interfaces/msg/TeleopCommand``): the operator's action, already in
  the policy's action space, the deadman and the episode marks; or, when the bag has no teleop
  topic, ``joint_velocity_controller/commands`` (``std_msgs/msg/Float64MultiArray``, one value
  per joint in profile order, rad/s): what was sent to the arm.
* ``task_state`` (``robot_rl_interfaces/msg/TaskState``): goal and object pose.

A lab's own recording (made without robot_rl) instead of ``rl/teleop`` / ``task_state``:

* with ``teleop_source="spacenav"``: ``/spacenav/twist`` (``geometry_msgs/msg/Twist`` or
  ``TwistStamped``, 6 finite values) and ``/spacenav/joy`` (``sensor_msgs/msg/Joy``: its
  buttons); with ``teleop_source="joy"``: ``/joy`` (``sensor_msgs/msg/Joy``: finite axes and
  buttons). They come back raw (:class:`DeviceStream`); the importer maps them
  (:mod:`robot_rl.demos.device`).
* ``TopicNames.goal`` (``geometry_msgs/msg/PointStamped``: ``point``, or ``PoseStamped``:
  ``pose.position``): the goal, in the robot base frame -- a non-empty ``header.frame_id`` that
  is not ``base_frame`` is refused (nothing here transforms between frames).
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

TELEOP_TYPE = "robot_rl_interfaces/msg/TeleopCommand"
TASK_STATE_TYPE = "robot_rl_interfaces/msg/TaskState"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
COMMANDS_TYPE = "std_msgs/msg/Float64MultiArray"
#: A lab's own device and goal recordings (``--teleop-source``, ``--goal-topic``).
TWIST_TYPES = ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
JOY_TYPE = "sensor_msgs/msg/Joy"
GOAL_TYPES = ("geometry_msgs/msg/PointStamped", "geometry_msgs/msg/PoseStamped")
TELEOP_SOURCES = ("spacenav", "joy")
#: The device topics a teleop source reads by default (the spacenav and joy drivers').
DEFAULT_DEVICE_TOPICS = {"spacenav": {"twist": "/spacenav/twist", "joy": "/spacenav/joy"},
                         "joy": {"joy": "/joy"}}
#: The interface messages the importer decodes (parsed from their .msg files).
INTERFACE_TYPES = ("TeleopCommand", "TaskState")

MARK_NONE, MARK_SUCCESS, MARK_FAILURE, MARK_DISCARD = 0, 1, 2, 3
MARK_NAMES = {MARK_NONE: "none", MARK_SUCCESS: "success", MARK_FAILURE: "failure",
              MARK_DISCARD: "discard"}

DISTROS = ("humble", "iron", "jazzy", "kilted")


class BagError(ValueError):
    """A bag that cannot be imported; ``str()`` says which file, topic, type and message."""


# --------------------------------------------------------------------------- topics


def qualify(namespace: str, name: str) -> str:
    """Fully qualified topic name: relative ``name`` under ``namespace``; absolute unchanged.

    The same rule as the nodes (``robot_rl.ros_nodes.common.qualify``), kept here so the import
    needs no ROS.
    """
    if name.startswith("/"):
        return name
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


@dataclass(frozen=True)
class TopicNames:
    """The topics an import reads (relative names resolve under the namespace)."""

    joint_states: str = "joint_states"
    teleop: str = "rl/teleop"
    commands: str = "joint_velocity_controller/commands"
    task_state: str = "task_state"
    namespace: str = ""
    #: Device topics (``--teleop-source``); empty: the source's driver default
    #: (:data:`DEFAULT_DEVICE_TOPICS`).
    twist: str = ""
    joy: str = ""
    #: A ``PointStamped`` / ``PoseStamped`` goal topic read instead of ``task_state``; empty: none.
    goal: str = ""

    def resolved(self, teleop_source: str | None = None) -> dict[str, str]:
        """``{role: fully qualified name}`` (device roles with ``teleop_source``, ``goal`` when
        set)."""
        out = {role: qualify(self.namespace, getattr(self, role))
               for role in ("joint_states", "teleop", "commands", "task_state")}
        if teleop_source is not None:
            for role, default in DEFAULT_DEVICE_TOPICS[teleop_source].items():
                out[role] = qualify(self.namespace, getattr(self, role) or default)
        if self.goal:
            out["goal"] = qualify(self.namespace, self.goal)
        return out


# --------------------------------------------------------------------------- typestore


def interface_msg_dirs() -> list[Path]:
    """Where the ``robot_rl_interfaces`` ``.msg`` files may be, most specific first: the
    source tree next to this package, the venv prefix the Makefile installs the interfaces
    into, and every ``AMENT_PREFIX_PATH`` entry (a colcon workspace or /opt/ros)."""
    here = Path(__file__).resolve().parents[2] / "interfaces" / "robot_rl_interfaces" / "msg"
    dirs = [here, Path(sys.prefix) / "share" / "robot_rl_interfaces" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "robot_rl_interfaces" / "msg")
    return dirs


def make_typestore(distro: str = "kilted", msg_dir: str | Path | None = None):
    """A rosbags typestore: ``distro``'s standard types + ``robot_rl_interfaces``' messages.

    ``msg_dir`` overrides where the ``.msg`` files are read from (default: the first of
    :func:`interface_msg_dirs` that holds them all).
    """
    try:
        from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    except ImportError:
        raise ValueError("reading rosbag2 bags needs the 'rosbags' package (pip install "
                         "rosbags; setup.py installs it)") from None
    if distro not in DISTROS:
        raise ValueError(f"--distro: expected one of {', '.join(DISTROS)}, got {distro!r}")
    ts = get_typestore(Stores[f"ROS2_{distro.upper()}"])
    candidates = [Path(msg_dir)] if msg_dir is not None else interface_msg_dirs()
    found = next((d for d in candidates
                  if all((d / f"{t}.msg").is_file() for t in INTERFACE_TYPES)), None)
    if found is None:
        raise ValueError("cannot find the robot_rl_interfaces message definitions "
                         f"({', '.join(t + '.msg' for t in INTERFACE_TYPES)}) in any of "
                         f"{', '.join(str(d) for d in candidates)}")
    types: dict[str, Any] = {}
    for t in INTERFACE_TYPES:
        types.update(get_types_from_msg((found / f"{t}.msg").read_text(),
                                        f"robot_rl_interfaces/msg/{t}"))
    ts.register(types)
    return ts


# --------------------------------------------------------------------------- streams


@dataclass
class JointStream:
    """Joint states in profile order: times (ns, bag time), positions, velocities."""

    t: np.ndarray  # (N,) int64
    q: np.ndarray  # (N, n) float64
    dq: np.ndarray  # (N, n) float64


@dataclass
class ActionStream:
    """Teleop commands (``kind="teleop"``: actions, deadman, marks) or applied joint velocity
    commands (``kind="commands"``: rad/s in profile order; ``deadman`` says "non-zero", i.e.
    the arm is driven; no marks)."""

    kind: str
    t: np.ndarray  # (N,) int64
    values: np.ndarray  # (N, m) float64
    deadman: np.ndarray  # (N,) bool
    mark: np.ndarray  # (N,) uint8


@dataclass
class TaskStream:
    """Task states: times, goals (N, 3) and object poses (N, 7) or None."""

    t: np.ndarray
    goal: np.ndarray
    object_pose: np.ndarray | None
    task_names: set[str] = field(default_factory=set)


@dataclass
class DeviceStream:
    """A teleop device as recorded (``--teleop-source``), in bag time, not yet mapped.

    ``twist``: spacenav motion as ``(linear.x, .y, .z, angular.x, .y, .z)``; ``joy``: every
    ``sensor_msgs/Joy`` message's axes and buttons (spacenav: its buttons; joy: both).
    """

    source: str
    twist_t: np.ndarray  # (N,) int64
    twist: np.ndarray  # (N, 6) float64
    joy_t: np.ndarray  # (M,) int64
    joy_axes: list[np.ndarray]
    joy_buttons: list[np.ndarray]


@dataclass
class TopicUse:
    """One topic the import reads: name, type, messages, first/last time."""

    role: str
    name: str
    msgtype: str
    count: int
    first_ns: int
    last_ns: int

    @property
    def rate_hz(self) -> float:
        span = (self.last_ns - self.first_ns) / 1e9
        return (self.count - 1) / span if self.count > 1 and span > 0 else float("nan")


@dataclass
class BagData:
    """What :func:`read_bag` found: the streams, the bag's time span and a content digest."""

    path: Path
    storage: str
    files: list[str]
    start_ns: int
    end_ns: int
    joints: JointStream
    actions: ActionStream
    task: TaskStream
    topics: list[TopicUse]
    #: sha256 over (role, timestamp, raw CDR bytes) of every message read: the same recording
    #: gives the same digest wherever it is copied and whichever storage format holds it.
    digest: str
    #: The same over the joint states alone: the robot's motion, which identifies a recording
    #: whichever other topics are read from it.
    motion_digest: str
    #: The recorded device (``--teleop-source``); ``actions`` is then empty until the importer
    #: replays it through the teleop mapping.
    device: DeviceStream | None = None


# --------------------------------------------------------------------------- reading


class _Where:
    """Formats the ``bag ...: topic ... (type), message i`` prefix of every error."""

    def __init__(self, path: Path, files: list[str]) -> None:
        self.path = path
        self.files = files

    def bag(self) -> str:
        files = ", ".join(self.files)
        return f"bag {self.path}" + (f" (storage file {files})" if files else "")

    def topic(self, name: str, msgtype: str) -> str:
        return f"{self.bag()}: topic {name} ({msgtype})"

    def msg(self, name: str, msgtype: str, index: int, t_ns: int, start_ns: int) -> str:
        return (f"{self.topic(name, msgtype)}, message {index} "
                f"(t={(t_ns - start_ns) / 1e9:.3f} s from the bag start)")


def _storage_files(path: Path) -> tuple[str, list[str]]:
    """The storage plugin and file names of a bag (from metadata.yaml), best effort."""
    if path.is_file():
        return {".mcap": "mcap", ".db3": "sqlite3"}.get(path.suffix, path.suffix), [path.name]
    try:
        import yaml

        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return (str(info.get("storage_identifier") or "?"),
                [Path(str(f)).name for f in info.get("relative_file_paths") or []])
    except Exception:  # noqa: BLE001 - the reader reports an unreadable metadata.yaml
        return "?", []


def _check_definition(ts: Any, conn: Any, where: str) -> None:
    """Refuse a connection whose recorded definition of one of our types differs from ours."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_msg

    if conn.msgdef.format == MessageDefinitionFormat.MSG and conn.msgdef.data.strip():
        text = conn.msgdef.data.split("\n" + "=" * 80 + "\n")[0]
        try:
            recorded = get_types_from_msg(text, conn.msgtype)[conn.msgtype]
        except Exception:  # noqa: BLE001 - an unparsable embedded definition: fall back to the hash
            recorded = None
        if recorded is not None:
            ours = ts.fielddefs[conn.msgtype]
            if _fields(recorded) != _fields(ours):
                raise BagError(f"{where}: recorded with another definition of {conn.msgtype} "
                               f"(fields {_fields(recorded)}), this robot_rl has "
                               f"{_fields(ours)}; import it with the robot_rl version that "
                               "recorded it")
            return
    digest = str(conn.digest or "")
    if digest.startswith("RIHS01_") and digest != ts.hash_rihs01(conn.msgtype):
        raise BagError(f"{where}: recorded with another definition of {conn.msgtype} (type hash "
                       f"{digest}, this robot_rl's is {ts.hash_rihs01(conn.msgtype)})")


def _fields(fielddef: Any) -> list[str]:
    return [name for name, _ in fielddef[1]]


def read_bag(path: str | Path, *, joint_names: Iterable[str], action_dim: int, task_name: str,
             needs_object: bool, topics: TopicNames = TopicNames(), distro: str = "kilted",
             action_source: str = "auto", typestore: Any = None,
             teleop_source: str | None = None, base_frame: str = "") -> BagData:
    """Read and check every message the import needs; raise :class:`BagError` on any problem.

    Args:
        path: the bag directory (with ``metadata.yaml``) or a single .mcap / .db3 file.
        joint_names: the profile's joint names, in profile order.
        action_dim: the policy's action dimension (teleop actions must have it).
        task_name: the configured task (a ``TaskState.task_name`` that differs is refused).
        needs_object: the task needs ``TaskState.object_pose`` (7 values).
        topics: topic names and namespace.
        action_source: ``teleop``, ``commands`` or ``auto`` (teleop if the bag has it);
            ignored with ``teleop_source``.
        teleop_source: ``spacenav`` or ``joy``: read the device topics (``topics.twist`` /
            ``topics.joy``) instead of a teleop or commands topic (:attr:`BagData.device`).
        base_frame: with ``topics.goal``: the robot base frame; a goal whose
            ``header.frame_id`` is non-empty and differs is refused (no transforms).
    """
    from rosbags.rosbag2 import Reader

    path = Path(path)
    joint_names = tuple(joint_names)
    n = len(joint_names)
    ts = typestore if typestore is not None else make_typestore(distro)
    if action_source not in ("auto", "teleop", "commands"):
        raise ValueError(f"--action-source: expected auto, teleop or commands, "
                         f"got {action_source!r}")
    if teleop_source is not None and teleop_source not in TELEOP_SOURCES:
        raise ValueError(f"--teleop-source: expected {' or '.join(TELEOP_SOURCES)}, "
                         f"got {teleop_source!r}")
    if topics.goal and needs_object:
        raise ValueError(f"--goal-topic: task {task_name!r} needs the object pose, which only "
                         "the task_state topic (robot_rl_interfaces/msg/TaskState) carries")
    if topics.goal and not base_frame:
        raise ValueError("--goal-topic: the robot base frame's name is needed to check the "
                         "goal's header.frame_id (--goal-frame)")
    if not path.exists():
        raise BagError(f"bag {path}: no such file or directory")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"bag {path}: a rosbag2 bag directory holds a metadata.yaml; this one "
                       "does not (not a bag, or the recording was never closed: `ros2 bag "
                       "reindex` rebuilds it)")
    storage, files = _storage_files(path)
    where = _Where(path, files)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # noqa: BLE001 - rosbags, sqlite/apsw, yaml, OS: all mean unreadable
        raise BagError(f"{where.bag()}: cannot open: {e} (truncated or corrupt bag?)") from None
    try:
        return _read(reader, ts, where, storage, files, path, joint_names, n, action_dim,
                     task_name, needs_object, topics, action_source, teleop_source, base_frame)
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001
            pass


def _read(reader: Any, ts: Any, where: _Where, storage: str, files: list[str], path: Path,
          joint_names: tuple[str, ...], n: int, action_dim: int, task_name: str,
          needs_object: bool, topics: TopicNames, action_source: str,
          teleop_source: str | None = None, base_frame: str = "") -> BagData:
    names = topics.resolved(teleop_source)
    by_topic: dict[str, list[Any]] = {}
    for c in reader.connections:
        by_topic.setdefault(c.topic, []).append(c)
    available = ", ".join(f"{t} ({'/'.join(sorted({c.msgtype for c in cs}))})"
                          for t, cs in sorted(by_topic.items())) or "none"
    #: role -> the message type its connections carry (one per topic)
    role_type: dict[str, str] = {}

    def conns(role: str, msgtype: str | tuple[str, ...], required: bool) -> list[Any]:
        name = names[role]
        accepted = (msgtype,) if isinstance(msgtype, str) else msgtype
        cs = by_topic.get(name, [])
        if not cs:
            if required:
                raise BagError(f"{where.bag()}: topic {name} ({' or '.join(accepted)}) is "
                               f"missing; the bag has {available}"
                               + _namespace_hint(names[role], by_topic))
            return []
        for c in cs:
            if c.msgtype not in accepted or c.msgtype != cs[0].msgtype:
                raise BagError(f"{where.topic(name, c.msgtype)}: wrong message type "
                               f"{c.msgtype}, expected {' or '.join(accepted)}")
            if c.msgtype.startswith("robot_rl_interfaces/"):
                _check_definition(ts, c, where.topic(name, c.msgtype))
        role_type[role] = cs[0].msgtype
        return cs

    js_c = conns("joint_states", JOINT_STATE_TYPE, True)
    if topics.goal:
        task_role, task_c = "goal", conns("goal", GOAL_TYPES, True)
    else:
        task_role, task_c = "task_state", conns("task_state", TASK_STATE_TYPE, True)
    act_roles: list[str]
    act_cs: list[Any]
    if teleop_source is not None:
        act_roles, act_cs = [], []
        if teleop_source == "spacenav":
            act_roles.append("twist")
            act_cs += conns("twist", TWIST_TYPES, True)
        act_roles.append("joy")
        if "twist" in act_roles and names["twist"] == names["joy"]:
            raise ValueError(f"--twist-topic and --joy-topic are the same topic {names['joy']}")
        act_cs += conns("joy", JOY_TYPE, True)
    elif action_source == "commands":
        act_roles, act_cs = ["commands"], conns("commands", COMMANDS_TYPE, True)
    elif action_source == "teleop":
        act_roles, act_cs = ["teleop"], conns("teleop", TELEOP_TYPE, True)
    else:
        act_cs = conns("teleop", TELEOP_TYPE, False)
        act_roles = ["teleop"]
        if not act_cs:
            act_roles, act_cs = ["commands"], conns("commands", COMMANDS_TYPE, False)
        if not act_cs:
            raise BagError(f"{where.bag()}: neither the teleop topic {names['teleop']} "
                           f"({TELEOP_TYPE}) nor the applied commands {names['commands']} "
                           f"({COMMANDS_TYPE}) is in the bag; the bag has {available}"
                           + _namespace_hint(names["teleop"], by_topic)
                           + " (a recording of the SpaceMouse or a gamepad: --teleop-source)")
    role_of = {c.id: "joint_states" for c in js_c}
    role_of.update({c.id: task_role for c in task_c})
    role_of.update({c.id: r for c in act_cs for r in act_roles if names[r] == c.topic})
    roles = ["joint_states", *act_roles, task_role]
    expected_counts = {role: 0 for role in roles}
    for c in (*js_c, *task_c, *act_cs):
        expected_counts[role_of[c.id]] += int(c.msgcount)

    start_ns = int(reader.start_time)
    end_ns = int(reader.end_time)
    h = hashlib.sha256(b"robot_rl.demos.bag/1")
    h_motion = hashlib.sha256(b"robot_rl.demos.motion/1")
    js = _JointParser(joint_names)
    task: _Parser = _GoalParser(base_frame) if task_role == "goal" \
        else _TaskParser(task_name, needs_object)
    parsers: dict[str, _Parser] = {"joint_states": js, task_role: task}
    if teleop_source is not None:
        if "twist" in act_roles:
            parsers["twist"] = _TwistParser()
        parsers["joy"] = _JoyParser(check_axes=teleop_source == "joy")
    elif act_roles == ["teleop"]:
        parsers["teleop"] = _TeleopParser(action_dim)
    else:
        parsers["commands"] = _CommandParser(n)
    counts = {role: 0 for role in parsers}
    last_t = {role: None for role in parsers}
    conn_list = [*js_c, *task_c, *act_cs]
    it = iter(reader.messages(connections=conn_list))
    while True:
        role = None
        try:
            item = next(it)
        except StopIteration:
            break
        except Exception as e:  # noqa: BLE001 - a damaged chunk / page while reading
            after = ", ".join(f"{names[r]}: {counts[r]} messages" for r in counts)
            raise BagError(f"{where.bag()}: reading failed after {after}: {e} (truncated or "
                           "corrupt storage file)") from None
        conn, t_ns, raw = item
        role = role_of[conn.id]
        i = counts[role]
        counts[role] = i + 1
        t_ns = int(t_ns)
        if last_t[role] is not None and t_ns < last_t[role]:
            raise BagError(f"{where.msg(names[role], conn.msgtype, i, t_ns, start_ns)}: "
                           "timestamps go backwards")
        last_t[role] = t_ns
        try:
            msg = ts.deserialize_cdr(raw, conn.msgtype)
        except Exception as e:  # noqa: BLE001 - malformed CDR
            raise BagError(f"{where.msg(names[role], conn.msgtype, i, t_ns, start_ns)}: cannot "
                           f"be decoded as {conn.msgtype}: {type(e).__name__}: {e}") from None
        try:
            parsers[role].add(t_ns, msg)
        except ValueError as e:
            raise BagError(f"{where.msg(names[role], conn.msgtype, i, t_ns, start_ns)}: "
                           f"{e}") from None
        record = (role.encode() + b"\0" + t_ns.to_bytes(8, "little", signed=True)
                  + len(raw).to_bytes(8, "little") + bytes(raw))
        h.update(record)
        if role == "joint_states":
            h_motion.update(record)
    for role, want in expected_counts.items():
        got = counts[role]
        if got != want:
            raise BagError(f"{where.topic(names[role], role_type[role])}: the bag's metadata "
                           f"lists {want} messages but the storage holds {got} (truncated or "
                           "corrupt bag)")
        if got == 0:
            raise BagError(f"{where.topic(names[role], role_type[role])}: no messages")
    uses = [TopicUse(role, names[role], role_type[role], counts[role],
                     int(parsers[role].t[0]), int(parsers[role].t[-1])) for role in roles]
    device = None
    if teleop_source is not None:
        tw = parsers.get("twist")
        joy = parsers["joy"]
        device = DeviceStream(teleop_source,
                              np.asarray(tw.t if tw else [], np.int64),
                              np.asarray(tw.values if tw else [], np.float64).reshape(-1, 6),
                              np.asarray(joy.t, np.int64), joy.axes, joy.buttons)
        actions = ActionStream("device", np.zeros(0, np.int64), np.zeros((0, action_dim)),
                               np.zeros(0, bool), np.zeros(0, np.uint8))
    else:
        actions = parsers[act_roles[0]].stream()
    return BagData(path=path, storage=storage, files=files, start_ns=start_ns, end_ns=end_ns,
                   joints=js.stream(), actions=actions, task=task.stream(), topics=uses,
                   digest=h.hexdigest(), motion_digest=h_motion.hexdigest(), device=device)


def _namespace_hint(name: str, by_topic: dict[str, list[Any]]) -> str:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    similar = sorted(t for t in by_topic if t.endswith("/" + base) and t != name)
    return f" (a namespaced robot? --namespace; similar: {', '.join(similar)})" if similar else ""


class _Parser:
    def __init__(self) -> None:
        self._t: list[int] = []

    @property
    def t(self) -> list[int]:
        return self._t


class _JointParser(_Parser):
    def __init__(self, joint_names: tuple[str, ...]) -> None:
        super().__init__()
        self.joint_names = joint_names
        self._names: list[str] | None = None
        self._idx: np.ndarray | None = None
        self._q: list[np.ndarray] = []
        self._dq: list[np.ndarray] = []

    def add(self, t: int, msg: Any) -> None:
        names = list(msg.name)
        if names != self._names:
            missing = [j for j in self.joint_names if j not in names]
            if missing:
                raise ValueError(
                    f"joint(s) {', '.join(missing)} of the robot profile are missing; the "
                    f"message names {names or 'no joints'} (profile joints: "
                    f"{', '.join(self.joint_names)}; another robot.name?)")
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate joint names in {names}")
            self._idx = np.array([names.index(j) for j in self.joint_names])
            self._names = names
        pos = np.asarray(msg.position, dtype=np.float64)
        vel = np.asarray(msg.velocity, dtype=np.float64)
        if pos.shape != (len(names),):
            raise ValueError(f"position has {pos.size} values for {len(names)} joint names")
        if vel.shape != (len(names),):
            raise ValueError(f"velocity has {vel.size} values for {len(names)} joint names "
                             "(joint velocities are part of the observation)")
        q, dq = pos[self._idx], vel[self._idx]
        if not (np.isfinite(q).all() and np.isfinite(dq).all()):
            raise ValueError(f"non-finite joint state: position {q.tolist()}, "
                             f"velocity {dq.tolist()}")
        self._t.append(t)
        self._q.append(q)
        self._dq.append(dq)

    def stream(self) -> JointStream:
        return JointStream(np.asarray(self._t, np.int64), np.asarray(self._q),
                           np.asarray(self._dq))


class _TeleopParser(_Parser):
    def __init__(self, action_dim: int) -> None:
        super().__init__()
        self.action_dim = action_dim
        self._a: list[np.ndarray] = []
        self._deadman: list[bool] = []
        self._mark: list[int] = []

    def add(self, t: int, msg: Any) -> None:
        a = np.asarray(msg.action, dtype=np.float64)
        mark = int(msg.episode_mark)
        if mark not in MARK_NAMES:
            raise ValueError(f"episode_mark {mark} is not one of 0 (none), 1 (success), "
                             "2 (failure), 3 (discard)")
        if msg.deadman or a.size:
            if a.shape != (self.action_dim,):
                raise ValueError(f"action has {a.size} values, the policy's action space "
                                 f"{self.action_dim} (task.action_mode?)")
            if not np.isfinite(a).all():
                raise ValueError(f"action is not finite: {a.tolist()}")
        else:
            a = np.zeros(self.action_dim)  # a bare mark / released deadman may carry no action
        self._t.append(t)
        self._a.append(a)
        self._deadman.append(bool(msg.deadman))
        self._mark.append(mark)

    def stream(self) -> ActionStream:
        return ActionStream("teleop", np.asarray(self._t, np.int64),
                            np.asarray(self._a).reshape(-1, self.action_dim),
                            np.asarray(self._deadman, bool), np.asarray(self._mark, np.uint8))


class _CommandParser(_Parser):
    def __init__(self, n_joints: int) -> None:
        super().__init__()
        self.n = n_joints
        self._v: list[np.ndarray] = []

    def add(self, t: int, msg: Any) -> None:
        v = np.asarray(msg.data, dtype=np.float64)
        if v.shape != (self.n,):
            raise ValueError(f"data has {v.size} values, the profile has {self.n} joints")
        if not np.isfinite(v).all():
            raise ValueError(f"data is not finite: {v.tolist()}")
        self._t.append(t)
        self._v.append(v)

    def stream(self) -> ActionStream:
        v = np.asarray(self._v).reshape(-1, self.n)
        # "driving" (the deadman's role): a command that moves the arm
        return ActionStream("commands", np.asarray(self._t, np.int64), v, (v != 0).any(axis=1),
                            np.zeros(len(v), np.uint8))


class _TaskParser(_Parser):
    def __init__(self, task_name: str, needs_object: bool) -> None:
        super().__init__()
        self.task_name = task_name
        self.needs_object = needs_object
        self._goal: list[np.ndarray] = []
        self._obj: list[np.ndarray] = []
        self.names: set[str] = set()

    def add(self, t: int, msg: Any) -> None:
        name = str(msg.task_name)
        if name and name != self.task_name:
            raise ValueError(f"task_name is {name!r}, the configured task is "
                             f"{self.task_name!r} (task.name={name}?)")
        goal = np.asarray(msg.goal, dtype=np.float64)
        if goal.shape != (3,) or not np.isfinite(goal).all():
            raise ValueError(f"goal must be 3 finite values (x, y, z), got {goal.tolist()}")
        obj = np.asarray(msg.object_pose, dtype=np.float64)
        if self.needs_object:
            if obj.shape != (7,) or not np.isfinite(obj).all():
                raise ValueError(f"task {self.task_name!r} needs object_pose as 7 finite values "
                                 f"(x, y, z, qx, qy, qz, qw), got {obj.tolist()}")
            self._obj.append(obj)
        if name:
            self.names.add(name)
        self._t.append(t)
        self._goal.append(goal)

    def stream(self) -> TaskStream:
        return TaskStream(np.asarray(self._t, np.int64), np.asarray(self._goal).reshape(-1, 3),
                          np.asarray(self._obj).reshape(-1, 7) if self.needs_object else None,
                          set(self.names))


class _TwistParser(_Parser):
    """spacenav motion: ``Twist`` (or ``TwistStamped``) as 6 values, finite."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[list[float]] = []

    def add(self, t: int, msg: Any) -> None:
        tw = msg.twist if hasattr(msg, "twist") else msg
        v = [tw.linear.x, tw.linear.y, tw.linear.z, tw.angular.x, tw.angular.y, tw.angular.z]
        if not np.isfinite(v).all():
            raise ValueError(f"twist is not finite: {v}")
        self._t.append(t)
        self.values.append(v)


class _JoyParser(_Parser):
    """``sensor_msgs/Joy``: axes (finite, when they drive the arm) and buttons."""

    def __init__(self, check_axes: bool) -> None:
        super().__init__()
        self.check_axes = check_axes
        self.axes: list[np.ndarray] = []
        self.buttons: list[np.ndarray] = []

    def add(self, t: int, msg: Any) -> None:
        axes = np.asarray(msg.axes, dtype=np.float64)
        if self.check_axes and not np.isfinite(axes).all():
            raise ValueError(f"axes are not finite: {axes.tolist()}")
        self._t.append(t)
        self.axes.append(axes)
        self.buttons.append(np.asarray(msg.buttons, dtype=np.int64))


class _GoalParser(_Parser):
    """A goal as ``PointStamped`` (``point``) or ``PoseStamped`` (``pose.position``) in the
    robot base frame: a non-empty ``header.frame_id`` must name it (no transforms here)."""

    def __init__(self, base_frame: str) -> None:
        super().__init__()
        self.base_frame = base_frame
        self._goal: list[list[float]] = []

    def add(self, t: int, msg: Any) -> None:
        frame = str(msg.header.frame_id)
        if frame and frame.lstrip("/") != self.base_frame.lstrip("/"):
            raise ValueError(f"header.frame_id is {frame!r}, not the robot base frame "
                             f"{self.base_frame!r}: the goal must be in the base frame (no "
                             "transforms are applied; re-record it in the base frame, or "
                             "--goal-frame names the base frame if the recording calls it "
                             "otherwise)")
        p = msg.point if hasattr(msg, "point") else msg.pose.position
        goal = [p.x, p.y, p.z]
        if not np.isfinite(goal).all():
            raise ValueError(f"goal must be 3 finite values (x, y, z), got {goal}")
        self._t.append(t)
        self._goal.append(goal)

    def stream(self) -> TaskStream:
        return TaskStream(np.asarray(self._t, np.int64), np.asarray(self._goal).reshape(-1, 3),
                          None)
