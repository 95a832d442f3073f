"""Fault tests of the training graph in real time (real processes, real DDS, real SIGKILL).

The nodes are the graph description's (robot_rl.graph via the runner's plan), started one by one
as the runner would, so that a single node can be killed and restarted (the runner itself
restarts nothing, by design):

* SIGKILL of the replay node mid-run, restart -> no transition lost or duplicated: every actor's
  transitions 0 .. sent-1 are in the store exactly once (the outboxes re-send what the dead
  replay never committed);
* SIGKILL of the learner -> the actors keep acting on the last policy; the restarted learner
  resumes from its checkpoint and its versions keep rising, and the actors switch to them.
"""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from robot_rl.config import load_config
from robot_rl.replay import ReplayReader
from robot_rl.runner import plan_run, write_run_files

pytestmark = pytest.mark.timeout(240)


def _plan(tmp_path: Path, *, learner: bool, robots: int = 2):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        "task: {action_mode: ee_velocity, max_steps: 20}\n"
        "sim: {clock: realtime}\n"
        "safety: {ee_speed_max: 0.55}\n"
        "agent: {hidden: [32, 32], batch_size: 32, warmup_steps: 100}\n"
        "replay: {flush_interval: 0.2}\n"
        f"run: {{root: '{tmp_path / 'runs'}', name: f, eval_every: 1000000}}\n")
    cfg = load_config(cfg_file)
    plan = plan_run("sim", cfg, robots=robots, learner=learner)
    for spec in plan.nodes:
        if spec.role == "learner":
            spec.parameters.update({"publish_every": 50, "checkpoint_every_s": 2.0})
    write_run_files(plan, ["pytest"])
    return plan


def _start(ros_process, plan, spec):
    return ros_process(plan.command(spec), name=spec.fully_qualified_name)


def _store_rows(plan) -> int:
    p = plan.run_dir / "replay.zarr"
    # The commit marker is written last when the replay node creates the store.
    return len(ReplayReader(p)) if (p / "commit" / "zarr.json").exists() else 0


def test_replay_sigkill_restart_loses_and_duplicates_nothing(ros_process, diag, tmp_path):
    plan = _plan(tmp_path, learner=False)
    procs = {s.fully_qualified_name: _start(ros_process, plan, s) for s in plan.nodes}
    replay_spec = next(s for s in plan.nodes if s.role == "replay")
    actors = [s.fully_qualified_name for s in plan.nodes if s.role == "actor"]
    assert diag.spin_until(lambda: _store_rows(plan) >= 100, 120), procs["/replay_node"].tail()

    procs["/replay_node"].popen.send_signal(signal.SIGKILL)
    procs["/replay_node"].wait(10)
    killed_at = _store_rows(plan)
    # The actors keep going; what they send now reaches no one, and stays in their outboxes.
    assert diag.spin_until(
        lambda: all(int(diag.get(a, "outbox", 0)) >= 40 for a in actors), 30), diag.status
    sent_during = {a: int(diag.get(a, "sent", 0)) for a in actors}

    restarted = _start(ros_process, plan, replay_spec)
    restarted.wait_for_line(r"replay", timeout=60)
    assert diag.spin_until(lambda: _store_rows(plan) > killed_at + 80, 60), restarted.tail()

    # Stop the world: no new transitions; then every outbox must drain (acknowledged).
    procs["/sim_robot_node"].stop()
    assert diag.spin_until(
        lambda: all(diag.get(a, "outbox") == "0" for a in actors), 60), diag.status
    diag.spin_until(lambda: False, 1.5)  # a fresh status after the drain
    sent = {a: int(diag.get(a, "sent")) for a in actors}
    sessions = {a: int(diag.get(a, "session"), 16) for a in actors}
    restarted.stop()

    r = ReplayReader(plan.run_dir / "replay.zarr")
    cols = r.read(0, len(r), ("robot_id", "actor_session", "seq"))
    for i, a in enumerate(actors):
        mine = (cols["robot_id"] == i) & (cols["actor_session"] == sessions[a])
        seq = np.sort(cols["seq"][mine])
        assert sent[a] > sent_during[a] >= 40
        assert len(seq) == sent[a], (a, len(seq), sent[a])  # nothing lost
        assert np.array_equal(seq, np.arange(sent[a])), a  # each exactly once
    assert len(r) == sum(sent.values())
    print(f"\nreplay SIGKILL at {killed_at} rows; actors sent {sent}; store {len(r)} rows, "
          "each exactly once")


def test_learner_sigkill_actors_keep_policy_restart_resumes(ros_process, diag, tmp_path):
    plan = _plan(tmp_path, learner=True)
    procs = {s.fully_qualified_name: _start(ros_process, plan, s) for s in plan.nodes}
    learner_spec = next(s for s in plan.nodes if s.role == "learner")
    actors = [s.fully_qualified_name for s in plan.nodes if s.role == "actor"]
    ckpts = plan.run_dir / "checkpoints"

    def versions():
        return [int(diag.get(a, "policy_version", 0)) for a in actors]

    assert diag.spin_until(
        lambda: min(versions()) >= 2 and any(ckpts.glob("ckpt_*.json")), 150), (
        diag.status, procs["/learner_node"].tail())
    procs["/learner_node"].popen.send_signal(signal.SIGKILL)
    procs["/learner_node"].wait(10)
    # the learner reports "" until it has published; its last status may predate the publish
    v_kill = max(int(diag.get("/learner_node", "policy_version", 0) or 0), max(versions()))
    steps0 = [int(diag.get(a, "env_steps")) for a in actors]
    # The actors keep acting on the last policy.
    assert diag.spin_until(
        lambda: all(int(diag.get(a, "env_steps")) >= s + 60 for a, s in zip(actors, steps0)),
        30)
    assert max(versions()) <= v_kill

    restarted = _start(ros_process, plan, learner_spec)
    restarted.wait_for_line(r"resumed from .*ckpt_", timeout=90)
    assert diag.spin_until(lambda: min(versions()) > v_kill, 120), (diag.status,
                                                                   restarted.tail())
    procs["/sim_robot_node"].stop()
    restarted.stop()

    r = ReplayReader(plan.run_dir / "replay.zarr")
    cols = r.read(0, len(r), ("robot_id", "policy_version"))
    for i in range(2):
        v = cols["policy_version"][cols["robot_id"] == i]
        assert (v > v_kill).any() and (v == 0).any()
        assert len(np.unique(v[(v > 0) & (v <= v_kill)])) >= 1
    print(f"\nlearner SIGKILL at version {v_kill}; after restart the actors used versions up to "
          f"{int(cols['policy_version'].max())}")
