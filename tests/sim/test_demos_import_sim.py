"""A bag recorded from the PyBullet env imports into the rows ``trainer._record_demos`` writes.

The same scripted episodes (the trainer's demo seeds) are stored twice: once by
``_record_demos`` through the gym env, once by recording what a teleop graph would have put in a
bag (joint states, teleop commands with episode marks, task state, at the control rate, in both
storage formats) and importing it. Same layout, same specs, same values.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from robot_rl.agents.trainer import DEMO_SEED, _record_demos
from robot_rl.config import load_config
from robot_rl.demos import import_bag
from robot_rl.demos.bag import make_typestore
from robot_rl.replay import ReplayReader, ReplayWriter

pytestmark = pytest.mark.sim

T0 = 1_750_000_000_000_000_000
DT = 50_000_000  # 20 Hz


def record_env_bag(path, storage, env, n, ts):
    from rosbags.rosbag2 import StoragePlugin, Writer

    from robot_rl.sim.scripted import ScriptedReacher

    reacher = ScriptedReacher(env.mapper, profile=env.config.robot)
    JS = ts.types["sensor_msgs/msg/JointState"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Teleop = ts.types["robot_rl_interfaces/msg/TeleopCommand"]
    TaskState = ts.types["robot_rl_interfaces/msg/TaskState"]
    names = list(env.config.robot.joint_names)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        c_tel = w.add_connection("/rl/teleop", "robot_rl_interfaces/msg/TeleopCommand",
                                 typestore=ts)
        c_task = w.add_connection("/task_state", "robot_rl_interfaces/msg/TaskState",
                                  typestore=ts)
        t = T0

        def state(t, s):
            w.write(c_js, t, ts.serialize_cdr(JS(
                header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id=""),
                name=names[::-1], position=np.ascontiguousarray(np.asarray(s.q, float)[::-1]),
                velocity=np.ascontiguousarray(np.asarray(s.dq, float)[::-1]), effort=np.zeros(0)),
                "sensor_msgs/msg/JointState"))

        def teleop(t, a, deadman, mark=0):
            w.write(c_tel, t, ts.serialize_cdr(Teleop(stamp_ns=t, action=a, deadman=deadman,
                                                      episode_mark=mark),
                                               "robot_rl_interfaces/msg/TeleopCommand"))

        for i in range(n):
            env.reset(seed=DEMO_SEED + i)
            w.write(c_task, t, ts.serialize_cdr(TaskState(
                stamp_ns=t, task_name="reach", goal=env.goal, object_pose=np.zeros(0),
                episode_id=i), "robot_rl_interfaces/msg/TaskState"))
            done, info = False, {}
            while not done:
                s = env.snapshot()
                a = np.clip(reacher(s), -1.0, 1.0).astype(np.float32)
                state(t, s)
                teleop(t, a, True)
                _, _, term, trunc, info = env.step(a)
                done = term or trunc
                t += DT
            state(t, env.snapshot())
            teleop(t, np.zeros(0, np.float32), False, 1 if info["is_success"] else 2)
            t += 10 * DT  # the operator pauses; the env resets


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_env_bag_imports_like_record_demos(storage, tmp_path):
    from robot_rl.sim.env import PandaEnv

    cfg = load_config(None, ["replay.fsync=false", "replay.chunk_rows=64"])
    env = PandaEnv(cfg)
    try:
        demos = tmp_path / "demos.zarr"
        with ReplayWriter(demos, env.task.observation_spec, env.mapper.spec, cfg.replay) as w:
            info = _record_demos(env, w, cfg, 3)
        bag = tmp_path / "bag"
        record_env_bag(bag, storage, env, 3, make_typestore())
    finally:
        env.close()
    store = tmp_path / "imported.zarr"
    res = import_bag(bag, store, cfg)
    assert len(res.plan.episodes) == 3 and res.added_rows == info["rows"]
    assert sum(e.success for e in res.plan.episodes) == info["successes"]
    a, b = ReplayReader(demos), ReplayReader(store)
    attrs = [json.loads((p / "zarr.json").read_text())["attributes"]["robot_rl_replay"]
             for p in (demos, store)]
    for key in ("schema_version", "columns", "observation_spec", "action_spec", "chunk_rows"):
        assert attrs[0][key] == attrs[1][key], key
    ra, rb = a.read(0, len(a)), b.read(0, len(b))
    for name in ra:
        assert ra[name].dtype == rb[name].dtype and ra[name].shape == rb[name].shape, name
    # the same steps: observations up to the two FK implementations (PyBullet vs pinocchio)
    np.testing.assert_allclose(rb["observation"], ra["observation"], atol=1e-5)
    np.testing.assert_allclose(rb["next_observation"], ra["next_observation"], atol=1e-5)
    np.testing.assert_array_equal(rb["action"], ra["action"])
    np.testing.assert_allclose(rb["reward"], ra["reward"], atol=1e-5)
    for name in ("terminated", "truncated", "source", "step_index", "robot_id"):
        np.testing.assert_array_equal(rb[name], ra[name], err_msg=name)
