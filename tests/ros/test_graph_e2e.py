"""The whole training graph over real DDS: `robot-rl up sim` with two namespaced robots.

Real processes (runner, sim, 2 x safety, 2 x actor, replay, learner), PyBullet, the zarr store on
disk. Checks (issue 6):

* transitions from both robots are in the store;
* >= 2 policy versions were published, and rows of each robot carry new versions (the actors
  switched policies);
* the safety nodes were the only publishers on the controller topics, and each heard only its
  own actor (the only publisher on its proposal topic is the actor of its namespace).
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import rclpy

from robot_rl.replay import ReplayReader
from robot_rl.ros_nodes.common import LATCHED_QOS
from robot_rl_interfaces.msg import PolicyWeights

BIN = Path(sys.executable).parent
NS = ("robot_0", "robot_1")


def _small_config(tmp_path: Path, clock: str = "lockstep") -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(
        "task: {action_mode: ee_velocity, max_steps: 20}\n"
        f"sim: {{clock: {clock}}}\n"
        "agent: {hidden: [32, 32], batch_size: 32, warmup_steps: 200}\n"
        "replay: {flush_interval: 0.2}\n"
        "run: {eval_every: 100000}\n")
    return p


def _graph_info(node, topic: str, kind: str) -> list[str]:
    infos = (node.get_publishers_info_by_topic(topic) if kind == "pub"
             else node.get_subscriptions_info_by_topic(topic))
    return sorted(f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos)


def test_two_robot_graph_end_to_end(ros_process, tmp_path):
    cfg = _small_config(tmp_path)
    run_dir = tmp_path / "runs" / "g"
    up = ros_process([str(BIN / "robot-rl"), "up", "sim", "--config", str(cfg), "--robots", "2",
                      "--name", "g", f"run.root={tmp_path / 'runs'}",
                      "--max-time", "150", "--progress-every", "5"], name="up")
    rclpy.init()
    node = rclpy.create_node("graph_probe")
    versions: list[int] = []
    node.create_subscription(PolicyWeights, "/rl/policy", lambda m: versions.append(m.version),
                             LATCHED_QOS)
    try:
        # Wait until the learner has published a few versions and the store shows them.
        store = run_dir / "replay.zarr"
        deadline = time.monotonic() + 150
        ok = False
        while time.monotonic() < deadline and up.running:
            rclpy.spin_once(node, timeout_sec=0.2)
            if len(set(versions)) >= 3 and (store / "commit" / "zarr.json").exists():
                r = ReplayReader(store)
                n = len(r)
                if n:
                    cols = r.read(0, n, ("robot_id", "policy_version"))
                    new = [np.unique(cols["policy_version"][cols["robot_id"] == i])
                           for i in range(2)]
                    if all((v > 0).sum() >= 2 for v in new):
                        ok = True
                        break
        assert ok, f"versions seen {sorted(set(versions))}\n{up.tail(30)}"

        # Who publishes and who listens, from the ROS graph itself.
        for i, ns in enumerate(NS):
            cmd_pubs = _graph_info(node, f"/{ns}/joint_velocity_controller/commands", "pub")
            assert cmd_pubs == [f"/{ns}/safety_node"], cmd_pubs
            prop_pubs = _graph_info(node, f"/{ns}/rl/action_proposal", "pub")
            assert prop_pubs == [f"/{ns}/actor_node"], prop_pubs
            prop_subs = _graph_info(node, f"/{ns}/rl/action_proposal", "sub")
            assert prop_subs == [f"/{ns}/safety_node"], prop_subs
            cmd_subs = _graph_info(node, f"/{ns}/joint_velocity_controller/commands", "sub")
            assert cmd_subs == ["/sim_robot_node"], cmd_subs
        # No command topic outside the two namespaces is fed by anyone.
        for name, types in node.get_topic_names_and_types():
            if name.endswith("joint_velocity_controller/commands"):
                assert name in {f"/{ns}/joint_velocity_controller/commands" for ns in NS}, name
    finally:
        node.destroy_node()
        rclpy.shutdown()
    up.popen.send_signal(signal.SIGINT)
    assert up.wait(60) == 130, up.tail(40)

    r = ReplayReader(run_dir / "replay.zarr")
    cols = r.read(0, len(r))
    for i in range(2):
        mine = cols["robot_id"] == i
        assert mine.sum() > 200
        v = np.unique(cols["policy_version"][mine])
        assert (v > 0).sum() >= 2, v  # this robot acted with >= 2 published policies
        # one session per robot (no restart), seqs exactly once each
        sessions = np.unique(cols["actor_session"][mine])
        assert len(sessions) == 1
        seq = np.sort(cols["seq"][mine])
        assert np.array_equal(seq, np.arange(len(seq))), "lost or duplicated transitions"
    assert len(set(np.unique(cols["actor_session"]))) == 2
    assert np.all(cols["source"] == 0)
    assert len(set(versions)) >= 2 and versions == sorted(versions)
    out = up.output
    assert "learning curve" in out or "eval.csv" in out or "TensorBoard" in out, out[-2000:]
