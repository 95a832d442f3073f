"""``robot-rl demos import`` of rosbag2 bags (MCAP and sqlite3, written with rosbags' Writer)
into real zarr stores, and ``demos list / show``.

The synthetic recording is a scripted reach: the operator (ScriptedReacher on the true state)
sends TeleopCommands at 20 Hz, the "arm" integrates the commanded joint velocities exactly, joint
states come at 100 Hz with the joints in a different random order in every message (fingers
included), the task state at 10 Hz and at every goal change. The generator keeps the true state
at every teleop tick, so the expected rows are computed independently of the importer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from robot_rl.actions import ActionMapper
from robot_rl.cli import main
from robot_rl.config import Config, load_config
from robot_rl.demos import BagError, ImportOptions, import_bag, plan_import
from robot_rl.demos.bag import make_typestore
from robot_rl.demos.importer import load_ranges
from robot_rl.kinematics import Kinematics
from robot_rl.replay import COLUMN_NAMES, ReplayReader, ReplayWriter, StoreLockedError
from robot_rl.replay.schema import COLUMN_BY_NAME, Source, schema_description
from robot_rl.tasks import TaskSnapshot, make_task

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000_000_000  # bag time of the first message (ns)
MS = 1_000_000
JS_PERIOD = 10 * MS  # 100 Hz joint states
TELEOP_PERIOD = 50 * MS  # 20 Hz = the control rate
TELEOP_PHASE = 30 * MS  # the first teleop slot, after the first joint states
TASK_PERIOD = 100 * MS
STORAGES = ("mcap", "sqlite3")
OVERRIDES = ("replay.fsync=false", "replay.chunk_rows=64")
FINGERS = ("panda_finger_joint1", "panda_finger_joint2")


def config(*extra: str) -> Config:
    return load_config(None, OVERRIDES + extra)


@pytest.fixture(scope="module")
def typestore():
    return make_typestore("kilted")


@pytest.fixture(scope="module")
def cfg():
    return config()


# --------------------------------------------------------------------------- synthetic bags


@dataclass
class Expected:
    """Per teleop slot of one driven episode: the true state and the operator's action."""

    mark: str
    t: list[int] = field(default_factory=list)  # tick times: driving slots + the end slot
    q: list[np.ndarray] = field(default_factory=list)
    dq: list[np.ndarray] = field(default_factory=list)
    goal: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # one per driving slot


@dataclass
class Recording:
    js: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    teleop: list[tuple[int, np.ndarray, bool, int]] = field(default_factory=list)
    task: list[tuple[int, np.ndarray]] = field(default_factory=list)
    commands: list[tuple[int, np.ndarray]] = field(default_factory=list)
    episodes: list[Expected] = field(default_factory=list)


MARKS = {"none": 0, "success": 1, "failure": 2, "discard": 3}


def scripted_reach(cfg: Config, plan: list[tuple[str, int]], seed: int = 0,
                   js_phase: int = 0) -> Recording:
    """Simulate episodes ``[(mark, driving slots), ...]``: 4 idle slots (deadman released),
    the driving slots, then the mark (``"none"``: no mark, the recording just goes on)."""
    from robot_rl.sim.scripted import ScriptedReacher

    rng = np.random.default_rng(seed)
    kin = Kinematics.from_profile(cfg.robot)
    mapper = ActionMapper(cfg.task, cfg.robot, kin)
    task = make_task(cfg.task, cfg.robot)
    reacher = ScriptedReacher(mapper, kinematics=kin)
    rec = Recording()
    q = np.asarray(cfg.robot.home, float) + rng.uniform(-0.05, 0.05, 7)
    cmd = np.zeros(7)
    goal = task.sample_goal(rng)
    t = T0
    js_next, task_next = T0 + js_phase, T0

    def advance(until: int) -> None:
        """Integrate the held command up to ``until``, publishing joint and task states."""
        nonlocal t, q, js_next, task_next
        while js_next < until:
            q = q + cmd * (js_next - t) / 1e9
            t = js_next
            rec.js.append((t, q.copy(), cmd.copy()))
            js_next += JS_PERIOD
        q = q + cmd * (until - t) / 1e9
        t = until
        while task_next < until:
            rec.task.append((task_next, goal.copy()))
            task_next += TASK_PERIOD

    slot = T0 + TELEOP_PHASE
    for mark, n_drive in plan:
        ep = Expected(mark)
        for _ in range(4):  # idle: deadman released, arm stopped
            advance(slot)
            cmd = np.zeros(7)
            rec.teleop.append((slot, np.zeros(7, np.float32), False, 0))
            slot += TELEOP_PERIOD
        for _ in range(n_drive):
            advance(slot)
            snap = TaskSnapshot(q=q.copy(), dq=cmd.copy(), ee_pos=kin.ee_position(q), goal=goal)
            a = np.clip(reacher(snap), -1, 1).astype(np.float32)
            cmd = mapper.to_joint_velocities(a)
            ep.t.append(slot)
            ep.q.append(q.copy())
            ep.dq.append(cmd.copy())
            ep.goal.append(goal.copy())
            ep.actions.append(a)
            rec.teleop.append((slot, a, True, 0))
            slot += TELEOP_PERIOD
        advance(slot)
        cmd = np.zeros(7)  # the end slot stops the arm; its joint state reports that
        ep.t.append(slot)
        ep.q.append(q.copy())
        ep.dq.append(cmd.copy())
        ep.goal.append(goal.copy())
        if mark != "none":
            rec.teleop.append((slot, np.zeros(0, np.float32), False, MARKS[mark]))
            goal = task.sample_goal(rng)
            rec.task.append((slot, goal.copy()))
            task_next = slot + TASK_PERIOD
        else:
            rec.teleop.append((slot, np.zeros(7, np.float32), False, 0))
        slot += TELEOP_PERIOD
        rec.episodes.append(ep)
    advance(slot + 3 * JS_PERIOD)
    return rec


def write_bag(path: Path, storage: str, rec: Recording, ts, *, namespace: str = "",
              joint_names=None, shuffle: bool = True, teleop: bool = True,
              commands: bool = False, task_state: bool = True, js_type: str | None = None,
              corrupt_js: int | None = None, seed: int = 1) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    rng = np.random.default_rng(seed)
    JS = ts.types["sensor_msgs/msg/JointState"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Teleop = ts.types["robot_rl_interfaces/msg/TeleopCommand"]
    TaskState = ts.types["robot_rl_interfaces/msg/TaskState"]
    F64 = ts.types["std_msgs/msg/Float64MultiArray"]
    Layout = ts.types["std_msgs/msg/MultiArrayLayout"]
    String = ts.types["std_msgs/msg/String"]
    names = list(joint_names or [f"panda_joint{i}" for i in range(1, 8)]) + list(FINGERS)
    ns = f"/{namespace}" if namespace else ""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    msgs: list[tuple[int, str, bytes]] = []
    js_topic = f"{ns}/joint_states"
    for i, (t, q, dq) in enumerate(rec.js):
        if js_type == "std_msgs/msg/String":
            raw = ts.serialize_cdr(String(data="not a joint state"), js_type)
        else:
            order = rng.permutation(len(names)) if shuffle else np.arange(len(names))
            pos = np.concatenate([q, [0.02, 0.02]])[order]
            vel = np.concatenate([dq, [0.0, 0.0]])[order]
            m = JS(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id=""),
                   name=[names[k] for k in order], position=pos, velocity=vel,
                   effort=np.zeros(0))
            raw = ts.serialize_cdr(m, "sensor_msgs/msg/JointState")
            if corrupt_js == i:
                raw = raw[:20]  # a cut-off payload
        msgs.append((t, js_topic, raw))
    if teleop:
        for t, a, deadman, mark in rec.teleop:
            msgs.append((t, f"{ns}/rl/teleop", ts.serialize_cdr(
                Teleop(stamp_ns=t, action=a, deadman=deadman, episode_mark=mark),
                "robot_rl_interfaces/msg/TeleopCommand")))
    if commands:
        for t, q, dq in rec.js:  # the applied commands at the joint-state rate
            msgs.append((t, f"{ns}/joint_velocity_controller/commands", ts.serialize_cdr(
                F64(layout=Layout(dim=[], data_offset=0), data=dq),
                "std_msgs/msg/Float64MultiArray")))
    if task_state:
        for t, goal in rec.task:
            msgs.append((t, f"{ns}/task_state", ts.serialize_cdr(
                TaskState(stamp_ns=t, task_name="reach", goal=goal, object_pose=np.zeros(0),
                          episode_id=0), "robot_rl_interfaces/msg/TaskState")))
    types = {f"{ns}/joint_states": js_type or "sensor_msgs/msg/JointState",
             f"{ns}/rl/teleop": "robot_rl_interfaces/msg/TeleopCommand",
             f"{ns}/joint_velocity_controller/commands": "std_msgs/msg/Float64MultiArray",
             f"{ns}/task_state": "robot_rl_interfaces/msg/TaskState"}
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {}
        for topic in sorted({m[1] for m in msgs}):
            conns[topic] = w.add_connection(topic, types[topic], typestore=ts)
        for t, topic, raw in sorted(msgs, key=lambda m: (m[0], m[1])):
            w.write(conns[topic], t, raw)
    return path


def expected_rows(cfg: Config, ep: Expected) -> dict[str, np.ndarray]:
    """The rows the importer must produce for one driven episode (the env's rules)."""
    kin = Kinematics.from_profile(cfg.robot)
    task = make_task(cfg.task, cfg.robot)
    snaps = [TaskSnapshot(q=q, dq=dq, ee_pos=kin.ee_position(q), goal=g)
             for q, dq, g in zip(ep.q, ep.dq, ep.goal)]
    obs = np.stack([task.observation(s) for s in snaps])
    K = len(ep.actions)
    success = np.array([task.is_success(s) for s in snaps[1:]])
    n = int(np.flatnonzero(success)[0]) + 1 if cfg.task.terminate_on_success and success.any() \
        else K
    return {
        "observation": obs[:n], "next_observation": obs[1:n + 1],
        "action": np.stack(ep.actions[:n]),
        "reward": np.array([task.reward(s) for s in snaps[1:n + 1]], np.float32),
        "terminated": np.arange(n) == n - 1 if success[:n].any() and
        cfg.task.terminate_on_success else np.zeros(n, bool),
        "truncated": (np.arange(n) == n - 1) & ~(success[:n].any() &
                                                 cfg.task.terminate_on_success),
        "stamp_ns": np.asarray(ep.t[:n], np.int64),
        "step_index": np.arange(n),
    }


def read_store(path) -> dict[str, np.ndarray]:
    r = ReplayReader(path)
    return r.read(0, len(r))


@pytest.fixture(scope="module")
def marked(cfg):
    # success (reaches the goal), discarded, failure (stops short), then unmarked driving
    return scripted_reach(cfg, [("success", 40), ("discard", 6), ("failure", 5), ("none", 5)])


@pytest.fixture(scope="module")
def marked_bags(tmp_path_factory, marked, typestore):
    d = tmp_path_factory.mktemp("bags")
    return {s: write_bag(d / f"marked_{s}", s, marked, typestore) for s in STORAGES}


# --------------------------------------------------------------------------- the import


@pytest.mark.parametrize("storage", STORAGES)
def test_marked_bag_imports_like_the_env(storage, marked, marked_bags, cfg, tmp_path, capsys):
    store = tmp_path / "replay.zarr"
    assert main(["demos", "import", str(marked_bags[storage]), "--store", str(store),
                 *OVERRIDES]) == 0
    out = capsys.readouterr().out
    assert "episode marks" in out and "discarded by the operator" in out
    assert "no episode mark after it" in out
    rows = read_store(store)
    # the layout: every column, its dtype and shape; the specs of the config
    r = ReplayReader(store)
    task = make_task(cfg.task, cfg.robot)
    assert r.observation_spec == task.observation_spec
    assert r.action_spec == ActionMapper(cfg.task, cfg.robot).spec
    assert set(rows) == set(COLUMN_NAMES)
    for name, a in rows.items():
        assert a.dtype == COLUMN_BY_NAME[name].dtype, name
    # two episodes: success (cut at the first success step) and failure; discard + trailing
    # unmarked stretch dropped
    success, failure = marked.episodes[0], marked.episodes[2]
    exp = [expected_rows(cfg, success), expected_rows(cfg, failure)]
    n0, n1 = len(exp[0]["reward"]), len(exp[1]["reward"])
    assert len(rows["reward"]) == n0 + n1
    assert n0 < len(success.actions), "the success episode must end at the first success"
    assert exp[0]["terminated"][-1] and not exp[1]["terminated"].any()
    for k, (lo, hi) in enumerate(((0, n0), (n0, n0 + n1))):
        for name, want in exp[k].items():
            got = rows[name][lo:hi]
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=0, atol=2e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(got, want, err_msg=name)
    assert (rows["source"] == Source.DEMO).all()
    assert (rows["robot_id"] == 0).all() and (rows["policy_version"] == 0).all()
    sessions = set(rows["actor_session"].tolist())
    assert len(sessions) == 1 and 0 < sessions.pop() < 2**63
    np.testing.assert_array_equal(rows["seq"], np.arange(n0 + n1))
    assert len(set(rows["episode_id"][:n0])) == 1 and len(set(rows["episode_id"][n0:])) == 1
    assert rows["episode_id"][0] != rows["episode_id"][-1]
    # rewards are the task's function of the resampled next state
    rew = [make_task(cfg.task, cfg.robot).reward(TaskSnapshot(
        q=o[:7].astype(float), dq=o[7:14].astype(float), ee_pos=o[14:17].astype(float),
        goal=o[17:20].astype(float))) for o in rows["next_observation"]]
    np.testing.assert_allclose(rows["reward"], rew, atol=1e-6)


def test_reimport_adds_nothing_in_either_storage_format(marked_bags, cfg, tmp_path):
    store = tmp_path / "replay.zarr"
    first = import_bag(marked_bags["mcap"], store, cfg)
    assert first.added_rows > 0 and first.created_store
    again = import_bag(marked_bags["mcap"], store, cfg)
    assert again.added_rows == 0 and again.duplicate_rows == first.added_rows
    assert again.plan.already_stored == first.added_rows
    # the same recording in the other storage format is the same recording
    other = import_bag(marked_bags["sqlite3"], store, cfg)
    assert other.plan.session == first.plan.session and other.added_rows == 0
    assert len(ReplayReader(store)) == first.added_rows
    # other settings on the same recording: refused unless asked for
    sparse = config("task.reward=sparse")
    with pytest.raises(ValueError, match="already in .* imported with other settings"):
        import_bag(marked_bags["mcap"], store, sparse)
    assert len(ReplayReader(store)) == first.added_rows
    more = import_bag(marked_bags["mcap"], store, sparse, ImportOptions(allow_reimport=True))
    assert more.added_rows == first.added_rows
    assert more.plan.session != first.plan.session


def test_import_adopts_the_stores_policy_action(marked_bags, cfg, tmp_path):
    """Demo rows hold the operator's command either way: importing into a store that keeps
    proposals (replay.policy_action: proposed, make sim's) works without saying so."""
    store = tmp_path / "replay.zarr"
    first = import_bag(marked_bags["mcap"], store, config("replay.policy_action=proposed"))
    assert first.added_rows > 0
    again = import_bag(marked_bags["sqlite3"], store, cfg)  # cfg: the default, applied
    assert again.added_rows == 0 and again.duplicate_rows == first.added_rows
    assert ReplayReader(store).layout.policy_action == "proposed"


def test_an_interrupted_import_completes_without_duplicates(marked_bags, cfg, tmp_path):
    store = tmp_path / "replay.zarr"
    plan = plan_import(marked_bags["mcap"], cfg, store=store)
    with ReplayWriter(store, plan.observation_spec, plan.action_spec, cfg.replay) as w:
        w.append_episode(plan.episodes[0].columns)  # "crashed" after the first episode
    res = import_bag(marked_bags["mcap"], store, cfg)
    assert res.duplicate_rows == plan.episodes[0].steps
    assert res.added_rows == plan.episodes[1].steps
    rows = read_store(store)
    np.testing.assert_array_equal(rows["seq"], np.arange(plan.rows))


def test_ranges_file_and_whole_bag(cfg, typestore, tmp_path):
    rec = scripted_reach(cfg, [("none", 30)], seed=3)  # no marks at all
    bag = write_bag(tmp_path / "bag", "sqlite3", rec, typestore)
    whole = plan_import(bag, cfg)
    assert whole.boundaries == "whole bag" and len(whole.episodes) == 1
    exp = expected_rows(cfg, rec.episodes[0])
    np.testing.assert_array_equal(whole.episodes[0].columns["action"], exp["action"])
    # two ranges (seconds from the bag start), YAML and CSV alike
    ep = rec.episodes[0]
    s0 = (ep.t[0] - T0) / 1e9
    yml = tmp_path / "ranges.yaml"
    yml.write_text(f"- {{start: {s0 - 0.01}, end: {s0 + 0.5}, success: false}}\n"
                   f"- [{s0 + 0.6}, {s0 + 1.2}]\n")
    csvf = tmp_path / "ranges.csv"
    csvf.write_text(f"start,end,success\n{s0 - 0.01},{s0 + 0.5},false\n{s0 + 0.6},{s0 + 1.2},\n")
    assert load_ranges(yml) == load_ranges(csvf)
    no_term = config("task.terminate_on_success=false")  # both ranges run to their end
    for f in (yml, csvf):
        plan = plan_import(bag, no_term, ImportOptions(episodes_file=str(f)))
        assert [e.steps for e in plan.episodes] == [10, 12]
        c0, c1 = (e.columns for e in plan.episodes)
        np.testing.assert_array_equal(c0["stamp_ns"], ep.t[:10])
        np.testing.assert_array_equal(c1["action"], np.stack(ep.actions[12:24]))
        assert c0["truncated"][-1] and c1["truncated"][-1]
        assert c1["seq"][0] == 10 and c0["episode_id"][0] != c1["episode_id"][0]
    bad = tmp_path / "overlap.csv"
    bad.write_text("0,2\n1,3\n")
    with pytest.raises(ValueError, match="ranges overlap"):
        load_ranges(bad)


def test_applied_commands_without_teleop(cfg, typestore, tmp_path):
    rec = scripted_reach(cfg, [("none", 30)], seed=4)
    bag = write_bag(tmp_path / "bag", "mcap", rec, typestore, teleop=False, commands=True)
    plan = plan_import(bag, cfg)
    assert plan.bag.actions.kind == "commands" and len(plan.episodes) == 1
    exp = expected_rows(cfg, rec.episodes[0])
    c = plan.episodes[0].columns
    n = len(exp["reward"])
    np.testing.assert_allclose(c["action"][:n], exp["action"], atol=1e-6)
    np.testing.assert_allclose(c["observation"][:n], exp["observation"], atol=2e-6)


def test_namespace_prefixes_relative_topics(cfg, typestore, tmp_path, marked):
    bag = write_bag(tmp_path / "bag", "mcap", marked, typestore, namespace="robot_1")
    with pytest.raises(BagError, match=r"/joint_states .* is missing.*--namespace.*"
                                       r"/robot_1/joint_states"):
        plan_import(bag, cfg)
    plan = plan_import(bag, cfg, ImportOptions(topics=_ns("robot_1"), robot_id=1))
    assert len(plan.episodes) == 2
    assert {t.name for t in plan.bag.topics} == {"/robot_1/joint_states", "/robot_1/rl/teleop",
                                                 "/robot_1/task_state"}


def _ns(ns):
    from robot_rl.demos import TopicNames

    return TopicNames(namespace=ns)


def test_dry_run_writes_nothing(marked_bags, tmp_path, capsys):
    store = tmp_path / "replay.zarr"
    assert main(["demos", "import", str(marked_bags["mcap"]), "--store", str(store),
                 "--dry-run", "--json", *OVERRIDES]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["written"] is False and doc["rows"] > 0 and len(doc["episodes"]) == 2
    assert not store.exists()


# --------------------------------------------------------------------------- bad bags


def _assert_refused(argv, store, capsys, *needles):
    before = None if not (store / "zarr.json").exists() else len(ReplayReader(store))
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, err
    for needle in needles:
        assert needle in err, (needle, err)
    if before is None:
        assert not store.exists(), "a refused import must not create the store"
    else:
        assert len(ReplayReader(store)) == before
    return err


@pytest.mark.parametrize("storage", STORAGES)
def test_bad_bags_import_nothing(storage, cfg, marked, marked_bags, typestore, tmp_path,
                                capsys):
    store = tmp_path / "replay.zarr"

    def run(bag, *needles, extra=()):
        return _assert_refused(["demos", "import", str(bag), "--store", str(store), *extra,
                                *OVERRIDES], store, capsys, *needles)

    # a missing topic
    run(write_bag(tmp_path / "no_task", storage, marked, typestore, task_state=False),
        "topic /task_state (robot_rl_interfaces/msg/TaskState) is missing")
    # the wrong message type on a topic
    run(write_bag(tmp_path / "wrong_type", storage, marked, typestore,
                  js_type="std_msgs/msg/String"),
        "topic /joint_states (std_msgs/msg/String): wrong message type")
    # joints the profile does not know
    run(write_bag(tmp_path / "fr3", storage, marked, typestore,
                  joint_names=[f"fr3_joint{i}" for i in range(1, 8)]),
        "topic /joint_states (sensor_msgs/msg/JointState), message 0",
        "panda_joint1", "missing")
    # a message that cannot be decoded, named by its index
    run(write_bag(tmp_path / "bad_cdr", storage, marked, typestore, corrupt_js=57),
        "topic /joint_states (sensor_msgs/msg/JointState), message 57", "cannot be decoded")
    # a truncated storage file
    good = write_bag(tmp_path / "cut", storage, marked, typestore)
    f = next(p for p in good.iterdir() if p.suffix in (".mcap", ".db3"))
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    run(good, f"bag {good}", f.name)
    # a good bag into a store works; then the bad ones still add nothing to it
    assert import_bag(marked_bags[storage], store, cfg).added_rows > 0
    run(tmp_path / "no_task", "is missing")


def test_a_bad_later_episode_imports_nothing(cfg, marked, typestore, tmp_path, capsys):
    # the failure episode's first command is outside the action space: the success episode
    # before it must not be stored either
    rec = scripted_reach(cfg, [("success", 40), ("failure", 5)], seed=0)
    i = next(k for k, (t, a, dm, m) in enumerate(rec.teleop) if t == rec.episodes[1].t[0])
    t, a, dm, m = rec.teleop[i]
    rec.teleop[i] = (t, np.full_like(a, 1.5), dm, m)
    bag = write_bag(tmp_path / "bag", "mcap", rec, typestore)
    store = tmp_path / "replay.zarr"
    _assert_refused(["demos", "import", str(bag), "--store", str(store), *OVERRIDES], store,
                    capsys, "episode 1 (marked failure)", "step 0", "action[0]",
                    "outside its bounds")


def test_store_with_other_spec_or_held_lock_is_refused(marked_bags, cfg, tmp_path, capsys):
    store = tmp_path / "replay.zarr"
    ee = config("task.action_mode=ee_velocity")
    m = ActionMapper(ee.task, ee.robot)
    with ReplayWriter(store, make_task(ee.task, ee.robot).observation_spec, m.spec, ee.replay):
        pass
    _assert_refused(["demos", "import", str(marked_bags["mcap"]), "--store", str(store),
                     *OVERRIDES], store, capsys, "another observation/action spec")
    store2 = tmp_path / "held.zarr"
    plan = plan_import(marked_bags["mcap"], cfg)
    with ReplayWriter(store2, plan.observation_spec, plan.action_spec, cfg.replay):
        err = _assert_refused(["demos", "import", str(marked_bags["mcap"]), "--store",
                               str(store2), *OVERRIDES], store2, capsys, "writer")
        assert "lock" in err.lower() or "held" in err.lower()
        with pytest.raises(StoreLockedError):
            import_bag(marked_bags["mcap"], store2, cfg)


def test_not_a_bag(tmp_path, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    store = tmp_path / "s.zarr"
    _assert_refused(["demos", "import", str(d), "--store", str(store), *OVERRIDES], store,
                    capsys, "metadata.yaml")
    _assert_refused(["demos", "import", str(tmp_path / "nope"), "--store", str(store),
                     *OVERRIDES], store, capsys, "no such file")


# --------------------------------------------------------------------------- list / show


def test_list_and_show(marked_bags, cfg, tmp_path, capsys):
    store = tmp_path / "replay.zarr"
    res = import_bag(marked_bags["mcap"], store, cfg)
    assert main(["demos", "list", str(store), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    demo = doc["by_source"]["demo"]
    assert demo["episodes"] == 2 and demo["rows"] == res.added_rows and demo["successes"] == 1
    assert doc["by_source"]["intervention"]["episodes"] == 0
    assert list(doc["sessions"]) == [hex(res.plan.session)]
    assert main(["demos", "list", str(store)]) == 0
    out = capsys.readouterr().out
    assert "demo: 2 episodes" in out and "1 successful" in out
    assert main(["demos", "show", str(store)]) == 0
    out = capsys.readouterr().out
    eid = int(res.plan.episodes[1].columns["episode_id"][0])
    assert str(eid) in out
    assert main(["demos", "show", str(store), "--episode", str(eid), "--json"]) == 0
    ep = json.loads(capsys.readouterr().out)
    assert len(ep["rows"]["reward"]) == res.plan.episodes[1].steps
    assert main(["demos", "show", str(store), "--episode", "12345"]) == 2
    assert "no episode 12345" in capsys.readouterr().err


def test_layout_matches_the_store_schema(marked_bags, cfg, tmp_path):
    """The attributes a fresh import writes are those of any store for these specs (the
    trainer's _record_demos writes through the same ReplayWriter; tests/sim compares rows)."""
    store = tmp_path / "replay.zarr"
    import_bag(marked_bags["mcap"], store, cfg)
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]["robot_rl_replay"]
    task = make_task(cfg.task, cfg.robot)
    assert attrs["columns"] == schema_description(task.observation_spec.dim, 7)


# --------------------------------------------------------------------------- more edge cases


def test_teleop_jitter_keeps_each_command_on_its_tick(cfg, typestore, tmp_path):
    rec = scripted_reach(cfg, [("failure", 12)], seed=5)
    rng = np.random.default_rng(7)
    rec.teleop = [(t + int(rng.integers(0, 6 * MS)), a, dm, m) for t, a, dm, m in rec.teleop]
    bag = write_bag(tmp_path / "bag", "mcap", rec, typestore)
    no_term = config("task.terminate_on_success=false")
    (ep,) = plan_import(bag, no_term).episodes
    n = ep.steps
    assert n >= 11  # the (jittered) mark may come before the 12th tick
    np.testing.assert_array_equal(ep.columns["action"], np.stack(rec.episodes[0].actions[:n]))
    # without the tolerance a late command would be taken one tick late
    strict = plan_import(bag, no_term, ImportOptions(jitter=0.0)).episodes[0].columns["action"]
    assert not np.array_equal(strict[:n], ep.columns["action"])


def test_teleop_recorded_with_another_definition_is_refused(cfg, typestore, tmp_path, marked):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg("int64 stamp_ns\nfloat32[] action\nbool deadman\n",
                                    "robot_rl_interfaces/msg/TeleopCommand"))
    Old = old.types["robot_rl_interfaces/msg/TeleopCommand"]
    good = write_bag(tmp_path / "good", "mcap", marked, typestore, teleop=False)
    bag = tmp_path / "bag"
    from rosbags.rosbag2 import Reader

    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w, Reader(good) as r:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=typestore)
                 for c in r.connections}
        for c, t, raw in r.messages():
            w.write(conns[c.id], t, raw)
        tel = w.add_connection("/rl/teleop", "robot_rl_interfaces/msg/TeleopCommand",
                               typestore=old)
        for t, a, dm, _ in marked.teleop[:5]:
            w.write(tel, t, old.serialize_cdr(Old(stamp_ns=t, action=a, deadman=dm),
                                              "robot_rl_interfaces/msg/TeleopCommand"))
    with pytest.raises(BagError, match=r"topic /rl/teleop .*another definition of "
                                       r"robot_rl_interfaces/msg/TeleopCommand"):
        plan_import(bag, cfg)


def test_same_motion_other_topics_counts_as_the_same_recording(cfg, typestore, tmp_path):
    rec = scripted_reach(cfg, [("none", 20)], seed=6)
    bag = write_bag(tmp_path / "bag", "mcap", rec, typestore, commands=True)
    store = tmp_path / "replay.zarr"
    first = import_bag(bag, store, cfg)  # teleop (auto)
    assert first.plan.bag.actions.kind == "teleop"
    with pytest.raises(ValueError, match="already in"):
        import_bag(bag, store, cfg, ImportOptions(action_source="commands"))
    assert len(ReplayReader(store)) == first.added_rows


def test_list_counts_interventions_inside_policy_episodes(tmp_path, capsys):
    from robot_rl.config import ReplayConfig
    from robot_rl.replay.synthetic import make_specs, synthetic_rows

    obs, act = make_specs(4, 2)
    store = tmp_path / "replay.zarr"
    rows = synthetic_rows(range(30), obs_dim=4, act_dim=2, episode_len=10)
    rows["source"][12:15] = Source.INTERVENTION  # a takeover in the second policy episode
    with ReplayWriter(store, obs, act, ReplayConfig(chunk_rows=16, fsync=False)) as w:
        w.append_batch(rows)
    assert main(["demos", "list", str(store), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows_by_source"] == {"policy": 27, "demo": 0, "intervention": 3}
    assert doc["by_source"]["intervention"]["episodes"] == 1
    assert doc["by_source"]["intervention"]["rows"] == 3
    assert doc["by_source"]["demo"]["episodes"] == 0
    assert main(["demos", "show", str(store), "--json"]) == 0
    (ep,) = json.loads(capsys.readouterr().out)
    assert ep["source"] == "intervention" and ep["rows"] == 3 and not ep["complete"]


def test_joint_states_are_interpolated_linearly_between_samples(cfg, typestore, tmp_path):
    # joint states at 100 Hz, 5 ms off the teleop ticks: every tick lies midway between two
    rec = scripted_reach(cfg, [("failure", 8)], seed=8, js_phase=5 * MS)
    bag = write_bag(tmp_path / "bag", "sqlite3", rec, typestore)
    (ep,) = plan_import(bag, config("task.terminate_on_success=false")).episodes
    t = np.array([s[0] for s in rec.js])
    q = np.stack([s[1] for s in rec.js])
    dq = np.stack([s[2] for s in rec.js])
    ticks = ep.columns["stamp_ns"]
    i = np.searchsorted(t, ticks) - 1
    assert ((ticks - t[i]) == 5 * MS).all()
    np.testing.assert_allclose(ep.columns["observation"][:, :7], (q[i] + q[i + 1]) / 2, atol=1e-6)
    np.testing.assert_allclose(ep.columns["observation"][:, 7:14], (dq[i] + dq[i + 1]) / 2,
                               atol=1e-6)


def test_a_joint_jump_inside_an_episode_is_refused_a_reset_before_it_skipped(cfg, typestore,
                                                                             tmp_path, capsys):
    rec = scripted_reach(cfg, [("failure", 10)], seed=9)
    ep = rec.episodes[0]
    # a glitch mid-episode: one joint state 0.5 rad off
    k = next(n for n, s in enumerate(rec.js) if s[0] > ep.t[5])
    glitch = Recording(list(rec.js), rec.teleop, rec.task, rec.commands, rec.episodes)
    t, q, dq = glitch.js[k]
    glitch.js[k] = (t, q + np.array([0.5, 0, 0, 0, 0, 0, 0]), dq)
    bag = write_bag(tmp_path / "glitch", "mcap", glitch, typestore)
    store = tmp_path / "replay.zarr"
    _assert_refused(["demos", "import", str(bag), "--store", str(store), *OVERRIDES], store,
                    capsys, f"messages {k - 1} and {k}", "joint panda_joint1 jumps by")
    # a reset (teleport) just before the operator drives: the steps across it are skipped
    reset = Recording(list(rec.js), rec.teleop, rec.task, rec.commands, rec.episodes)
    k0 = next(n for n, s in enumerate(rec.js) if s[0] > ep.t[0])
    for n in range(k0):  # the arm "was" elsewhere before
        t, q, dq = reset.js[n]
        reset.js[n] = (t, q + 0.3, dq)
    bag = write_bag(tmp_path / "reset", "mcap", reset, typestore)
    (got,) = plan_import(bag, config("task.terminate_on_success=false")).episodes
    assert got.steps == 9 and got.columns["stamp_ns"][0] == ep.t[1]
    np.testing.assert_array_equal(got.columns["action"], np.stack(ep.actions[1:]))
