"""Demonstrations and human takeover through the real graph (real processes, DDS, PyBullet, zarr).

The scripted operator (sim/operator.py, its ROS face publishing Twist + Joy as spacenav does)
stands in for a person; the teleop node turns that into TeleopCommands; the actor decides:

* ``--demos``: the operator drives; each episode is held by the actor until the operator marks
  it; success / failure episodes reach the store whole, as source=demo; a discarded episode
  never does;
* training with ``--teleop``: while the deadman is held the operator's action replaces the
  policy's and the step is stored as source=intervention; once the operator stops (deadman
  released by the input timeout) the policy acts again.
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


def _plan(tmp_path: Path, *, demos: bool, operator_params: dict):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        "task: {action_mode: ee_velocity, max_steps: 60}\n"
        "sim: {clock: realtime}\n"
        "safety: {ee_speed_max: 0.55}\n"
        "agent: {hidden: [32, 32], batch_size: 32, warmup_steps: 100}\n"
        "replay: {flush_interval: 0.2}\n"
        f"run: {{root: '{tmp_path / 'runs'}', name: d, eval_every: 1000000}}\n")
    cfg = load_config(cfg_file)
    plan = plan_run("sim", cfg, robots=1, learner=False, demos=demos, operator=True)
    for spec in plan.nodes:
        if spec.role == "operator":
            spec.parameters.update(operator_params)
    write_run_files(plan, ["pytest"])
    return plan


def _start_all(ros_process, plan):
    return {s.fully_qualified_name: ros_process(plan.command(s), name=s.fully_qualified_name)
            for s in plan.nodes}


def test_scripted_operator_records_whole_demo_episodes(ros_process, diag, tmp_path):
    plan = _plan(tmp_path, demos=True, operator_params={"discard_prob": 0.3, "time_limit": 60})
    assert plan.cfg.sim.clock == "realtime"
    procs = _start_all(ros_process, plan)

    def sent():
        return int(diag.get("/actor_node", "demo_episodes_sent", 0))

    def discarded():
        return int(diag.get("/actor_node", "demo_episodes_discarded", 0))

    assert diag.spin_until(lambda: sent() >= 4 and discarded() >= 1, 180), (
        diag.status.get("/actor_node"), procs["/actor_node"].tail(20))
    procs["/sim_robot_node"].stop()  # no new steps; the outbox drains
    assert diag.spin_until(lambda: diag.get("/actor_node", "outbox") == "0", 30)
    diag.spin_until(lambda: False, 1.5)
    n_sent, n_disc = sent(), discarded()
    procs["/replay_node"].stop()

    r = ReplayReader(plan.run_dir / "replay.zarr")
    cols = r.read(0, len(r))
    assert len(r) > 0 and np.all(cols["source"] == 1)  # source = demo, nothing else
    eps = np.unique(cols["episode_id"])
    assert len(eps) == n_sent  # every sent episode whole, no discarded one
    for e in eps:
        m = cols["episode_id"] == e
        steps = np.sort(cols["step_index"][m])
        assert np.array_equal(steps, np.arange(m.sum()))  # complete, in one piece
        order = np.argsort(cols["step_index"][m])
        end = (cols["terminated"][m] | cols["truncated"][m])[order]
        assert end[-1] and not end[:-1].any()  # ends exactly once, at its last step
    # The operator reached the goal in some of them (the task's success -> terminated).
    assert cols["terminated"].any()
    print(f"\ndemos: {n_sent} episodes stored whole ({len(r)} rows), {n_disc} discarded")


def test_takeover_is_stored_as_intervention_and_policy_resumes(ros_process, diag, tmp_path):
    plan = _plan(tmp_path, demos=False, operator_params={"discard_prob": 0.0})
    procs = _start_all(ros_process, plan)
    assert diag.spin_until(
        lambda: int(diag.get("/actor_node", "intervention_steps", 0)) >= 40, 120), (
        diag.status.get("/actor_node"), procs["/actor_node"].tail(20))
    assert float(diag.get("/actor_node", "intervention_rate", 0)) > 0.5
    # The operator lets go: its device topics stop, the teleop node's input times out
    # (deadman false) and the policy acts again.
    procs["/scripted_operator_node"].popen.send_signal(signal.SIGKILL)
    steps0 = int(diag.get("/actor_node", "env_steps"))
    assert diag.spin_until(lambda: int(diag.get("/actor_node", "env_steps")) >= steps0 + 80, 60)
    procs["/sim_robot_node"].stop()
    assert diag.spin_until(lambda: diag.get("/actor_node", "outbox") == "0", 30)
    procs["/replay_node"].stop()

    r = ReplayReader(plan.run_dir / "replay.zarr")
    cols = r.read(0, len(r))
    src = cols["source"][np.argsort(cols["seq"])]
    assert set(np.unique(src)) <= {0, 2}
    assert (src == 2).sum() >= 40  # interventions stored as such
    assert (src[-40:] == 0).all()  # after the operator let go: the policy again
    # Intervention rows are kept forever and sampled with the demos (the mirror's demo pool).
    from robot_rl.replay import ReplayMirror

    mirror = ReplayMirror(plan.run_dir / "replay.zarr", capacity=10)
    mirror.refresh()
    assert mirror.n_demo == int((src == 2).sum())


def test_robot_rl_up_records_n_demo_episodes_and_stops(ros_process, tmp_path):
    """``robot-rl up sim --demos --scripted-operator --robots 2 --max-demo-episodes 3``: the
    two operators keep 2 + 1 episodes, the runner stops the graph once the replay node has
    stored them, and the store holds exactly 3 whole demo episodes; exit status 0."""
    import sys

    robot_rl = str(Path(sys.executable).parent / "robot-rl")
    runner = ros_process([robot_rl, "up", "sim", "--demos", "--scripted-operator", "--robots",
                          "2", "--name", "d", "--max-demo-episodes", "3", "--max-time", "150",
                          "--progress-every", "1", f"run.root={tmp_path}",
                          "task.action_mode=ee_velocity", "safety.ee_speed_max=0.55"],
                         name="runner")
    assert runner.wait(200) == 0, runner.tail(30)
    assert "stopping (--max-demo-episodes 3 reached (" in runner.output, runner.tail(30)
    assert "demo episodes stored 3" in runner.output, runner.tail(30)
    r = ReplayReader(tmp_path / "d" / "replay.zarr")
    cols = r.read(0, len(r))
    assert np.all(cols["source"] == 1)
    episodes = set(zip(cols["robot_id"].tolist(), cols["episode_id"].tolist()))
    assert len(episodes) == 3 and {rid for rid, _ in episodes} == {0, 1}
