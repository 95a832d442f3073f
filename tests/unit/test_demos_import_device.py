"""``robot-rl demos import`` of a lab's own recording: a SpaceMouse (``/spacenav/twist``
Twist + ``/spacenav/joy`` Joy) or a gamepad (``/joy``), a goal as PointStamped / PoseStamped and
``joint_states`` -- no robot_rl topics. Bags are written with rosbags (MCAP and sqlite3).

The synthetic recording runs the *live* teleop logic independently of the importer: an operator
deflects the device toward the goal, holds the deadman, presses a mark button at the end of each
episode; a :class:`TeleopMapper` (the teleop node's core) is fed the device messages and the
joint states as they are published and asked for a command every control period, and the arm
integrates what it answers. The importer must find the same commands from the bag alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from robot_rl.actions import ActionMapper
from robot_rl.cli import main
from robot_rl.config import Config, load_config
from robot_rl.demos import ImportOptions, TopicNames, import_bag, plan_import
from robot_rl.demos.bag import make_typestore
from robot_rl.kinematics import Kinematics
from robot_rl.replay import ReplayReader
from robot_rl.replay.schema import Source
from robot_rl.tasks import TaskSnapshot, make_task
from robot_rl.teleop import TeleopMapper

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
JS_PERIOD = 10 * MS  # 100 Hz joint states
TICK = 50 * MS  # the live node's timer: 20 Hz = sim.control_hz
TICK_PHASE = 30 * MS  # the first timer tick after T0
DEVICE_LEAD = 20 * MS  # the device messages of a period arrive this long before its tick
GOAL_PERIOD = 100 * MS
OVERRIDES = ("replay.fsync=false", "replay.chunk_rows=64")
STORAGES = ("mcap", "sqlite3")
BASE = "panda_link0"
SPACENAV_BUTTONS = {"deadman": 0, "success": 1, "failure": 2, "discard": 3}
JOY_BUTTONS = {"deadman": 9, "success": 0, "failure": 1, "discard": 2}


def config(*extra: str) -> Config:
    return load_config(None, OVERRIDES + extra)


@pytest.fixture(scope="module")
def typestore():
    return make_typestore("kilted")


@dataclass
class Episode:
    mark: str
    t: list[int] = field(default_factory=list)  # ticks from the first driven one + end tick
    q: list[np.ndarray] = field(default_factory=list)
    goal: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # one per step
    deadman: list[bool] = field(default_factory=list)


@dataclass
class DeviceRecording:
    source: str
    js: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    twist: list[tuple[int, list[float]]] = field(default_factory=list)
    joy: list[tuple[int, list[float], list[int]]] = field(default_factory=list)
    goals: list[tuple[int, np.ndarray]] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    losses: int = 0


def device_reach(cfg: Config, plan, source: str = "spacenav", seed: int = 0
                 ) -> DeviceRecording:
    """Episodes ``[(mark, driven periods, gap), ...]``: 4 idle periods (deadman released), the
    driven periods (deadman held, device toward the goal; ``gap``: the device goes silent for
    8 periods from that driven period on, then the operator releases and presses the deadman
    again), then an end period that releases the deadman and presses ``mark``'s button."""
    rng = np.random.default_rng(seed)
    live_cfg = cfg.model_copy(update={"teleop": cfg.teleop.model_copy(update={"input": source})})
    live = TeleopMapper.from_config(live_cfg)  # the teleop node's logic, run "live"
    kin = Kinematics.from_profile(cfg.robot)
    am = ActionMapper(cfg.task, cfg.robot, kin)
    task = make_task(cfg.task, cfg.robot)
    buttons = SPACENAV_BUTTONS if source == "spacenav" else JOY_BUTTONS
    n_buttons = 4 if source == "spacenav" else 11
    rec = DeviceRecording(source)
    q = np.asarray(cfg.robot.home, float) + rng.uniform(-0.05, 0.05, 7)
    cmd = np.zeros(7)
    goal = task.sample_goal(rng)
    t = T0
    js_next, goal_next = T0, T0
    now = lambda t_ns: (t_ns - T0) / 1e9  # noqa: E731

    def advance(until: int) -> None:
        """Integrate the held command up to ``until`` (inclusive), publishing joint states
        (fed to the live mapper as the node's subscription would) and goals."""
        nonlocal t, q, js_next, goal_next
        while js_next <= until:
            q = q + cmd * (js_next - t) / 1e9
            t = js_next
            rec.js.append((t, q.copy(), cmd.copy()))
            live.on_joint_state(q, now(t))
            js_next += JS_PERIOD
        q = q + cmd * (until - t) / 1e9
        t = until
        while goal_next <= until:
            rec.goals.append((goal_next, goal.copy()))
            goal_next += GOAL_PERIOD

    def publish(at: int, held: bool, pressed: str | None, v: np.ndarray) -> None:
        b = [0] * n_buttons
        b[buttons["deadman"]] = int(held)
        if pressed:
            b[buttons[pressed]] = 1
        if source == "spacenav":
            tw = [*(v / 1.4).tolist(), 0.01, -0.02, 0.0]  # angular axes unused by the mapping
            rec.twist.append((at, tw))
            rec.joy.append((at, [0.0] * 6, b))
            live.on_axes(tw, now(at))
            live.on_buttons(b, now(at))
        else:
            axes = [0.0] * 8
            axes[1], axes[0], axes[3] = v  # LEFTY -> v_x, LEFTX -> v_y, RIGHTY -> v_z
            axes = np.asarray(axes, np.float32).tolist()  # Joy.axes is float32[]
            rec.joy.append((at, axes, b))
            live.on_joy(axes, b, now(at))

    tick = T0 + TICK_PHASE
    # The node's timer phase is not in a bag: the importer ticks from the first device message.
    # Here the device's first message (idle) comes on a tick, so the two grids are one.
    publish(tick - TICK, False, None, np.zeros(3))
    live.command(now(tick - TICK))
    for mark, n_drive, gap in plan:
        ep = Episode(mark)
        schedule = ["idle"] * 4 + ["drive"] * n_drive + ["end"]
        if gap is not None:
            i = 4 + gap
            schedule[i:i + 8] = ["silent"] * 8
            schedule[i + 8] = "idle"  # release ...
        driven = False
        for what in schedule:
            advance(tick - DEVICE_LEAD)
            ee = kin.ee_position(q)
            v = np.clip((goal - ee) / 0.05, -1, 1) * 0.8 if what == "drive" else np.zeros(3)
            if what != "silent":
                publish(tick - DEVICE_LEAD, what == "drive",
                        mark if what == "end" and mark != "none" else None, v)
            advance(tick)
            out = live.command(now(tick))
            driven = driven or out.deadman
            if driven:
                ep.t.append(tick)
                ep.q.append(q.copy())
                ep.goal.append(goal.copy())
                if what != "end":
                    ep.actions.append(out.action.copy())
                    ep.deadman.append(out.deadman)
            cmd = am.to_joint_velocities(out.action.astype(float), q) if out.deadman \
                else np.zeros(7)
            if what == "end" and mark != "none":
                goal = task.sample_goal(rng)
                rec.goals.append((tick, goal.copy()))
                goal_next = tick + GOAL_PERIOD
            tick += TICK
        rec.episodes.append(ep)
    advance(tick)
    publish(tick, False, None, np.zeros(3))
    rec.losses = live.losses
    return rec


def write_device_bag(path: Path, storage: str, rec: DeviceRecording, ts, *,
                     goal_type: str = "geometry_msgs/msg/PointStamped", frame: str = BASE,
                     goal_topic: str = "/goal", corrupt_twist: int | None = None,
                     twist_topic: str = "/spacenav/twist",
                     twist_type: str = "geometry_msgs/msg/Twist") -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    V3 = T["geometry_msgs/msg/Vector3"]

    def header(t: int, frame_id: str = ""):
        return Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id=frame_id)

    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1",
                                                        "panda_finger_joint2"]
    msgs: list[tuple[int, str, bytes]] = []
    for t, q, dq in rec.js:
        m = T["sensor_msgs/msg/JointState"](
            header=header(t), name=names, position=np.concatenate([q, [0.02, 0.02]]),
            velocity=np.concatenate([dq, [0.0, 0.0]]), effort=np.zeros(0))
        msgs.append((t, "/joint_states", ts.serialize_cdr(m, "sensor_msgs/msg/JointState")))
    for i, (t, v) in enumerate(rec.twist):
        m = T["geometry_msgs/msg/Twist"](linear=V3(*v[:3]), angular=V3(*v[3:]))
        if twist_type == "geometry_msgs/msg/TwistStamped":  # spacenav's use_twist_stamped
            m = T[twist_type](header=header(t, "spacenav"), twist=m)
        raw = ts.serialize_cdr(m, twist_type)
        if corrupt_twist == i:
            raw = raw[:12]
        msgs.append((t, twist_topic, raw))
    joy_topic = "/spacenav/joy" if rec.source == "spacenav" else "/joy"
    for t, axes, buttons in rec.joy:
        m = T["sensor_msgs/msg/Joy"](header=header(t), axes=np.asarray(axes, np.float32),
                                     buttons=np.asarray(buttons, np.int32))
        msgs.append((t, joy_topic, ts.serialize_cdr(m, "sensor_msgs/msg/Joy")))
    P = T["geometry_msgs/msg/Point"]
    for t, g in rec.goals:
        p = P(x=float(g[0]), y=float(g[1]), z=float(g[2]))
        if goal_type == "geometry_msgs/msg/PointStamped":
            m = T[goal_type](header=header(t, frame), point=p)
        elif goal_type == "geometry_msgs/msg/PoseStamped":
            m = T[goal_type](header=header(t, frame), pose=T["geometry_msgs/msg/Pose"](
                position=p, orientation=T["geometry_msgs/msg/Quaternion"](x=0, y=0, z=0, w=1)))
        else:  # a wrong type: a bare Point
            m = p
        msgs.append((t, goal_topic, ts.serialize_cdr(m, goal_type)))
    types = {"/joint_states": "sensor_msgs/msg/JointState", twist_topic: twist_type,
             joy_topic: "sensor_msgs/msg/Joy", goal_topic: goal_type}
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {topic: w.add_connection(topic, types[topic], typestore=ts)
                 for topic in sorted({m[1] for m in msgs})}
        for t, topic, raw in sorted(msgs, key=lambda m: (m[0], m[1])):
            w.write(conns[topic], t, raw)
    return path


def device_args(bag, store, *extra, source="spacenav"):
    return ["demos", "import", str(bag), "--store", str(store), "--teleop-source", source,
            "--goal-topic", "/goal", *extra, *OVERRIDES]


def device_opts(source="spacenav", **kw):
    return ImportOptions(topics=TopicNames(goal="/goal"), teleop_source=source, **kw)


PLAN = [("success", 40, None), ("discard", 6, None), ("failure", 12, 3), ("none", 5, None)]


@pytest.fixture(scope="module")
def cfg():
    return config()


@pytest.fixture(scope="module")
def spacenav_rec(cfg):
    return device_reach(cfg, PLAN)


@pytest.fixture(scope="module")
def spacenav_bags(tmp_path_factory, spacenav_rec, typestore):
    d = tmp_path_factory.mktemp("device_bags")
    return {s: write_device_bag(d / f"spacenav_{s}", s, spacenav_rec, typestore)
            for s in STORAGES}


def _check_episode(cfg: Config, cols: dict, ep: Episode) -> None:
    """Actions = the live mapper's; goals = the PointStamped's; joint positions at the ticks."""
    task = make_task(cfg.task, cfg.robot)
    n = len(cols["reward"])
    assert n <= len(ep.actions)
    np.testing.assert_array_equal(cols["stamp_ns"], np.asarray(ep.t[:n], np.int64))
    np.testing.assert_array_equal(cols["action"], np.stack(ep.actions[:n]).astype(np.float32))
    obs = cols["observation"]
    np.testing.assert_allclose(obs[:, :7], np.stack(ep.q[:n]), atol=2e-6)
    np.testing.assert_allclose(obs[:, 17:20], np.stack(ep.goal[:n]), atol=1e-6)
    np.testing.assert_allclose(cols["next_observation"][:, 17:20], np.stack(ep.goal[1:n + 1]),
                               atol=1e-6)
    kin = Kinematics.from_profile(cfg.robot)
    final = TaskSnapshot(q=ep.q[n], dq=np.zeros(7), ee_pos=kin.ee_position(ep.q[n]),
                         goal=ep.goal[n])
    assert cols["reward"][-1] == pytest.approx(task.reward(final), abs=1e-5)


# --------------------------------------------------------------------------- the import


@pytest.mark.parametrize("storage", STORAGES)
def test_spacenav_recording_imports_with_the_teleop_mapping(storage, cfg, spacenav_rec,
                                                           spacenav_bags, tmp_path, capsys):
    # the default config: joint action mode, so the spacenav mapping is cartesian (the
    # device drives the hand; DLS at the recorded joint states)
    assert TeleopMapper.from_config(cfg).m.mode == "cartesian"
    store = tmp_path / "replay.zarr"
    assert main(device_args(spacenav_bags[storage], store)) == 0
    out = capsys.readouterr().out
    assert "episode marks" in out and "discarded by the operator" in out
    assert "no episode mark after it" in out
    assert "/spacenav/twist (geometry_msgs/msg/Twist)" in out
    assert "/goal (geometry_msgs/msg/PointStamped)" in out
    assert "device input was lost 1 time" in out
    rows = ReplayReader(store).read(0, len(ReplayReader(store)))
    assert (rows["source"] == Source.DEMO).all()
    success, failure = spacenav_rec.episodes[0], spacenav_rec.episodes[2]
    eids = list(dict.fromkeys(rows["episode_id"].tolist()))
    assert len(eids) == 2, "success and failure; discard and the unmarked stretch dropped"
    first = rows["episode_id"] == eids[0]
    c0 = {k: v[first] for k, v in rows.items()}
    c1 = {k: v[~first] for k, v in rows.items()}
    assert c0["terminated"][-1] and len(c0["reward"]) < len(success.actions)
    assert c1["truncated"][-1] and not c1["terminated"].any()
    assert len(c1["reward"]) == len(failure.actions)
    _check_episode(cfg, c0, success)
    _check_episode(cfg, c1, failure)
    # the silent device mid-episode: deadman false (zero actions) until re-pressed, as live
    assert not all(failure.deadman) and spacenav_rec.losses == 1
    assert (c1["action"][~np.asarray(failure.deadman)] == 0).all()
    assert np.abs(c0["action"]).max() > 0.1


def test_reimport_adds_nothing_and_settings_change_the_session(cfg, spacenav_bags, tmp_path):
    store = tmp_path / "replay.zarr"
    first = import_bag(spacenav_bags["mcap"], store, cfg, device_opts())
    assert first.added_rows > 0
    again = import_bag(spacenav_bags["mcap"], store, cfg, device_opts())
    assert again.added_rows == 0 and again.duplicate_rows == first.added_rows
    other = import_bag(spacenav_bags["sqlite3"], store, cfg, device_opts())
    assert other.plan.session == first.plan.session and other.added_rows == 0
    # the teleop mapping is part of the settings: another deadband is another import
    db = config("teleop.deadband=0.2")
    assert plan_import(spacenav_bags["mcap"], db, device_opts()).session != first.plan.session
    with pytest.raises(ValueError, match="already in .* imported with other settings"):
        import_bag(spacenav_bags["mcap"], store, db, device_opts())
    # ... and so is the goal frame
    framed = plan_import(spacenav_bags["mcap"], cfg, device_opts(goal_frame=BASE))
    assert framed.session == first.plan.session
    assert len(ReplayReader(store)) == first.added_rows


def test_pose_stamped_goal_empty_frame_twist_stamped(cfg, spacenav_rec, spacenav_bags,
                                                     typestore, tmp_path):
    bag = write_device_bag(tmp_path / "pose", "sqlite3", spacenav_rec, typestore,
                           goal_type="geometry_msgs/msg/PoseStamped", frame="",
                           twist_type="geometry_msgs/msg/TwistStamped")
    plan = plan_import(bag, cfg, device_opts())
    assert len(plan.episodes) == 2
    point = plan_import(spacenav_bags["mcap"], cfg, device_opts())
    for a, b in zip(plan.episodes, point.episodes):
        np.testing.assert_array_equal(a.columns["action"], b.columns["action"])
    assert {t.msgtype for t in plan.bag.topics if t.role == "goal"} == {
        "geometry_msgs/msg/PoseStamped"}
    _check_episode(cfg, plan.episodes[0].columns, spacenav_rec.episodes[0])


def test_joy_gamepad_recording(typestore, tmp_path):
    cfg = config("task.action_mode=ee_velocity", "teleop.input=joy")
    rec = device_reach(cfg, [("failure", 10, None), ("success", 40, None)], source="joy",
                       seed=3)
    bag = write_device_bag(tmp_path / "joy", "mcap", rec, typestore)
    plan = plan_import(bag, cfg, device_opts("joy"))
    assert [e.segment.origin for e in plan.episodes] == ["marked failure", "marked success"]
    for got, ep in zip(plan.episodes, rec.episodes):
        _check_episode(cfg, got.columns, ep)
    assert {t.role for t in plan.bag.topics} == {"joint_states", "joy", "goal"}


# --------------------------------------------------------------------------- bad input


def _refused(argv, store, capsys, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not store.exists(), "a refused import must not create the store"
    return err


@pytest.mark.parametrize("storage", STORAGES)
def test_bad_device_recordings_import_nothing(storage, cfg, spacenav_rec, typestore, tmp_path,
                                              capsys):
    store = tmp_path / "replay.zarr"
    # a goal in another frame: refused, no transform invented
    bag = write_device_bag(tmp_path / "world", storage, spacenav_rec, typestore, frame="world")
    _refused(device_args(bag, store), store, capsys,
             f"bag {bag}", "topic /goal (geometry_msgs/msg/PointStamped), message 0",
             "header.frame_id is 'world'", "panda_link0")
    # ... unless the lab says that is its name for the base frame
    assert plan_import(bag, cfg, device_opts(goal_frame="world")).rows > 0
    # the wrong message type on the goal topic
    bag = write_device_bag(tmp_path / "point", storage, spacenav_rec, typestore,
                           goal_type="geometry_msgs/msg/Point")
    _refused(device_args(bag, store), store, capsys,
             "topic /goal (geometry_msgs/msg/Point): wrong message type",
             "geometry_msgs/msg/PointStamped or geometry_msgs/msg/PoseStamped")
    # a corrupt device message, named by its index
    bag = write_device_bag(tmp_path / "cut", storage, spacenav_rec, typestore, corrupt_twist=37)
    f = next(p.name for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    _refused(device_args(bag, store), store, capsys, f"bag {bag}", f,
             "topic /spacenav/twist (geometry_msgs/msg/Twist), message 37", "cannot be decoded")
    # a missing device topic names what the bag has
    bag = write_device_bag(tmp_path / "moved", storage, spacenav_rec, typestore,
                           twist_topic="/spacemouse/twist")
    _refused(device_args(bag, store), store, capsys,
             "topic /spacenav/twist (geometry_msgs/msg/Twist or "
             "geometry_msgs/msg/TwistStamped) is missing", "/spacemouse/twist")
    assert main(device_args(bag, store, "--twist-topic", "/spacemouse/twist")) == 0


def test_options_that_do_not_fit_are_refused(cfg, spacenav_bags, tmp_path, capsys):
    store = tmp_path / "replay.zarr"
    bag = spacenav_bags["mcap"]
    _refused(["demos", "import", str(bag), "--store", str(store), "--twist-topic", "/x",
              *OVERRIDES], store, capsys, "only with --teleop-source")
    _refused(device_args(bag, store, "--action-source", "teleop"), store, capsys,
             "choose one")
    _refused(["demos", "import", str(bag), "--store", str(store), "--goal-frame", "x",
              *OVERRIDES], store, capsys, "--goal-frame: only with --goal-topic")
    _refused(device_args(bag, store, "task.name=push"), store, capsys,
             "needs the object pose")
    _refused(device_args(bag, store, "teleop.input=joy", "teleop.deadman_button=4"), store,
             capsys, "teleop.input=joy", "teleop.deadman_button")
    # without --teleop-source the bag has no actions: the error says what to use
    _refused(["demos", "import", str(bag), "--store", str(store), "--goal-topic", "/goal",
              *OVERRIDES], store, capsys, "--teleop-source")
