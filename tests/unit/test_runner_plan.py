"""The runner's ROS-free parts: run planning (refusals, robots, roles), the progress line from
``/diagnostics`` values, and the ``robot-rl up`` / ``estop`` command lines (dry run, errors)."""
import shlex
import sys

import pytest

from robot_rl.cli import main
from robot_rl.config import load_config
from robot_rl.graph import build_graph
from robot_rl.runner import Progress, Runner, config_differences, plan_run

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- planning


def test_plan_refuses_an_existing_run_unless_resumed(tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=a"])
    plan = plan_run("sim", cfg)
    assert plan.run_dir == tmp_path / "a" and plan.config_file == tmp_path / "a" / "config.yaml"
    with pytest.raises(ValueError, match=r"--resume: .*a holds no run to resume"):
        plan_run("sim", cfg, resume=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "replay.zarr").mkdir()
    with pytest.raises(ValueError) as ei:
        plan_run("sim", cfg)
    assert str(ei.value) == (f"run.name: {tmp_path / 'a'} already holds a run (replay.zarr); "
                             "pick another --name or pass --resume to continue it")
    assert plan_run("sim", cfg, resume=True).resume


def test_plan_robots_namespaces_roles(tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "sim.num_robots=3"])
    assert plan_run("sim", cfg).num_robots == 3  # sim: sim.num_robots by default
    assert plan_run("robot", cfg).num_robots == 1  # robot: one arm by default
    plan = plan_run("sim", cfg, namespaces=["/l/", "r"])
    assert plan.num_robots == 2 and plan.cfg.sim.num_robots == 2
    assert [n.fully_qualified_name for n in plan.nodes][:3] == [
        "/sim_robot_node", "/l/safety_node", "/l/actor_node"]
    only = plan_run("sim", cfg, robots=1, roles=["sim", "safety"])
    assert [n.fully_qualified_name for n in only.nodes] == ["/sim_robot_node", "/safety_node"]
    for kwargs, message in [
        (dict(robots=0), "--robots: expected >= 1, got 0"),
        (dict(robots=3, namespaces=["a"]), "robot namespaces: 1 names for 3 robots"),
        (dict(namespaces=["robot-0"]), "robot namespace 'robot-0': expected ROS names"),
        (dict(roles=["critic"]), "--only: unknown roles ['critic']"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            plan_run("sim", cfg, **kwargs)
    with pytest.raises(ValueError, match="--only sim: the robot graph has no such node"):
        plan_run("robot", cfg, roles=["sim"])


def test_runner_refuses_stop_conditions_it_cannot_see(tmp_path):
    plan = plan_run("sim", load_config(None, [f"run.root={tmp_path}"]), learner=False)
    with pytest.raises(ValueError, match="--until-success: the run has no learner node"):
        Runner(plan, until_success=0.9)
    with pytest.raises(ValueError, match=r"--until-success: expected a success rate in \(0, 1\]"):
        Runner(plan, until_success=90)
    with pytest.raises(ValueError, match="--max-time: expected seconds > 0"):
        Runner(plan, max_time=0)
    only_safety = plan_run("sim", plan.cfg, roles=["safety"])
    with pytest.raises(ValueError, match="--max-env-steps: the run has no actor node"):
        Runner(only_safety, max_env_steps=10)
    with pytest.raises(ValueError, match="--max-demo-episodes: the run has no replay node"):
        Runner(only_safety, max_demo_episodes=10)
    with pytest.raises(ValueError, match="--max-demo-episodes: expected >= 1, got 0"):
        Runner(plan, max_demo_episodes=0)


def test_config_differences():
    assert config_differences({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1, "c": 5}, "e": 1}) \
        == ["a.c", "d", "e"]


# --------------------------------------------------------------------------- progress


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def test_progress_line_sums_actors_and_safety_counts():
    clock = Clock()
    p = Progress(build_graph("sim", config_file="c.yaml", num_robots=2), clock=clock)
    assert p.line(0.0) == ("[    0.0 s] env steps - | episodes - | success - | updates - | "
                           "policy - | replay rows - | safety - clamps / - brakes | eval success - | "
                           "nodes 0/7")
    assert p.update("/robot_0/actor_node", {"env_steps": "1200", "episodes": "24",
                                            "success_rate": "0.5"})
    p.update("/robot_1/actor_node", {"env_steps": 800, "episodes": 16, "success_rate": 0.25})
    p.update("/robot_0/safety_node: safety", {"count.WATCHDOG": "3", "count.JERK": "2",
                                              "count.none": "99", "estop_latched": "false"})
    p.update("/robot_1/safety_node: safety", {"count.WATCHDOG": "1", "estop_latched": "true"})
    p.update("/learner_node", {"updates": "5000", "updates_per_s": "123.4",
                               "policy_version": "7", "eval_success_rate": "0.92"})
    p.update("/replay_node", {"rows": "2000"})
    assert not p.update("/other_graph/actor_node", {"env_steps": "1"})  # not ours: ignored
    s = p.summary()
    assert s["env_steps"] == 2000 and s["episodes"] == 40 and s["success_rate"] == 0.375
    assert s["safety_events"] == 6 and s["estop_latched"] == ["/robot_1/safety_node"]
    assert s["safety_brakes"] == 4 and s["safety_clamps"] == 2  # WATCHDOG brakes, JERK clamps
    assert s["silent"] == ["/sim_robot_node"]
    assert p.line(12.34) == (
        "[   12.3 s] env steps 2,000 | episodes 40 | success 38% | updates 5,000 (123.4/s) | "
        "policy v7 | replay rows 2,000 | safety 2 clamps / 4 brakes | eval success 92% | "
        "nodes 6/7 | "
        "E-STOP LATCHED: /robot_1/safety_node")
    assert s["demo_episodes"] is None  # the replay node said nothing about demos
    p.update("/replay_node", {"rows": "2000", "demo_episodes": "3"})
    assert p.summary()["demo_episodes"] == 3
    assert "| episodes 40 | demo episodes stored 3 | success 38% |" in p.line(1.0)
    clock.t += 6.0  # every status older than stale_after: nobody is reporting
    assert p.summary()["reporting"] == 0


def test_progress_of_a_split_graph_shows_every_host(tmp_path):
    # One machine of two (`up sim --only replay,learner`): the line sums up the whole graph,
    # whose other nodes report from the other host over the shared /diagnostics.
    cfg = load_config(None, [f"run.root={tmp_path}"])
    plan = plan_run("sim", cfg, robots=2, roles=["replay", "learner"])
    assert [s.fully_qualified_name for s in plan.nodes] == ["/replay_node", "/learner_node"]
    assert plan.split and len(plan.graph) == 7
    clock = Clock()
    p = Runner(plan, monitor=False).progress
    p.clock = clock
    assert p.update("/robot_0/actor_node", {"env_steps": "300", "policy_version": "2"})
    assert p.update("/robot_1/safety_node: safety", {"count.WATCHDOG": "1"})
    p.update("/learner_node", {"updates": "900", "policy_version": "3"})
    p.update("/replay_node", {"rows": "290"})
    # heard, though this host's command line did not name it: another robot of the other host
    assert p.update("/robot_2/actor_node", {"env_steps": "100"})
    assert p.update("/lab/teleop_thing", {"role": "teleop"})  # its status names its role
    assert not p.update("/rosout_helper", {"x": "1"})  # no role, not a graph name: not ours
    assert not p.update("relative_name/actor_node", {"env_steps": "5"})
    s = p.summary()
    assert s["env_steps"] == 400 and s["replay_rows"] == 290 and s["safety_brakes"] == 1
    assert s["reporting"] == 6 and s["nodes"] == 9
    assert s["silent"] == ["/robot_0/safety_node", "/robot_1/actor_node", "/sim_robot_node"]
    assert p.line(3.0).startswith("[    3.0 s] env steps 400 |")
    assert p.line(3.0).endswith("| policy v3 | replay rows 290 | safety 0 clamps / 1 brakes | "
                                "eval success - | nodes 6/9")
    # the whole graph on one machine: nothing outside it counts (see the test above)
    whole = Runner(plan_run("sim", cfg, robots=2), monitor=False).progress
    assert not whole.update("/robot_2/actor_node", {"env_steps": "100"})
    assert whole.summary()["nodes"] == 7


def test_progress_ignores_malformed_values_and_derives_updates_per_s():
    clock = Clock()
    p = Progress(build_graph("sim", config_file="c.yaml"), clock=clock)
    p.update("/actor_node", {"env_steps": "lots", "episodes": "nan", "success_rate": None},
             level=b"\x01")
    p.update("/safety_node: safety", {"count.ESTOP": "x"}, level="bad")
    p.update("/learner_node", {"updates": "100"})
    s = p.summary()
    assert s["env_steps"] is None and s["episodes"] is None and s["safety_events"] is None
    assert s["updates_per_s"] is None
    clock.t += 2.0
    p.update("/learner_node", {"updates": "300"})
    assert p.summary()["updates_per_s"] == 100.0
    assert "updates 300 (100.0/s)" in p.line(1.0)


def test_progress_line_shows_the_utd_the_learner_achieves_per_robot():
    clock = Clock()
    p = Progress(build_graph("sim", config_file="c.yaml", num_robots=2), clock=clock)
    p.update("/learner_node", {"updates": "5000", "updates_per_s": "80.0", "utd": "0.98",
                               "utd_ratio": "1", "utd_behind": "false", "utd.robot_0": "1.96",
                               "utd.robot_1": "1.96", "env_steps_per_s.robot_0": "20.0"})
    s = p.summary()
    assert (s["utd"], s["utd_ratio"], s["utd_robots"], s["utd_behind"]) == (
        0.98, 1.0, {0: 1.96, 1: 1.96}, False)
    assert "| updates 5,000 (80.0/s) | UTD 0.98 of 1 (robot_0 1.96, robot_1 1.96) | policy -" \
        in p.line(1.0)
    # real time, behind the configured ratio; robot 1 took no step in the window
    p.update("/learner_node", {"updates": "5100", "utd": "0.62", "utd_ratio": "1",
                               "utd_behind": "true", "utd.robot_0": "0.62", "utd.robot_1": ""})
    assert "| UTD 0.62 of 1 (robot_0 0.62, robot_1 -) BEHIND |" in p.line(2.0)
    # one robot: no per-robot figures; no new env steps: no ratio
    q = Progress(build_graph("sim", config_file="c.yaml"), clock=clock)
    q.update("/learner_node", {"updates": "10", "utd": "", "utd_ratio": "0.5",
                               "utd.robot_0": ""})
    assert "| updates 10 | UTD - of 0.5 | policy -" in q.line(1.0)


# --------------------------------------------------------------------------- CLI


def test_up_dry_run_prints_every_command_and_writes_nothing(capsys, tmp_path):
    assert main(["up", "sim", "--robots", "2", "--dry-run", "--name", "d",
                 f"run.root={tmp_path}", "task.reward=sparse"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"# robot-rl up sim: 7 nodes, 2 robot(s), run {tmp_path / 'd'} "
                      "(dry run: nothing written or started)")
    commands = [shlex.split(line) for line in out if not line.startswith("#")]
    assert len(commands) == 7
    assert commands[1] == [sys.executable, "-m", "robot_rl.ros_nodes.safety_node", "--ros-args",
                           "-r", "__node:=safety_node", "-r", "__ns:=/robot_0", "--params-file",
                           str(tmp_path / "d" / "graph" / "robot_0_safety_node.yaml")]
    assert "# /learner_node (learner, nice 10); parameters: " in "\n".join(out)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, message", [
    (["up", "lab"], "invalid choice: 'lab'"),
    (["up", "sim", "--robots", "2", "--namespaces", "a"], "robot namespaces: 1 names for 2"),
    (["up", "sim", "--until-success", "1.5"], "--until-success: expected a success rate"),
    (["up", "sim", "--no-learner", "--until-success", "0.9"], "the run has no learner node"),
    (["up", "sim", "--only", "sim,critic"], "--only: unknown roles ['critic']"),
    (["up", "sim", "sim.substeps=0"], "sim.substeps: Input should be greater than or equal"),
    (["up", "sim", "--max-env-steps", "0"], "--max-env-steps: expected >= 1, got 0"),
    (["up", "sim", "--domain-check", "-1"], "--domain-check: expected seconds >= 0, got -1"),
    (["estop", "--robots", "2", "--namespaces", "a,b"], "give either --namespaces or --robots"),
    (["estop", "--robots", "0"], "--robots: expected >= 1, got 0"),
    (["estop", "--timeout", "0"], "--timeout: expected seconds > 0"),
])
def test_up_and_estop_errors_exit_2_naming_the_argument(capsys, argv, message):
    argv = [*argv, "--dry-run"] if argv[0] == "up" else argv
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_up_refuses_an_existing_run(capsys, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("{}\n")
    assert main(["up", "sim", "--dry-run", f"run.root={tmp_path}", "run.name=r"]) == 2
    assert "already holds a run (config.yaml); pick another --name or pass --resume" \
        in capsys.readouterr().err
    assert main(["up", "sim", "--dry-run", "--resume", f"run.root={tmp_path}", "run.name=r"]) == 0


def test_sim_estop_file_per_run_unless_the_config_names_one(tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=e"])
    plan = plan_run("sim", cfg, robots=2)
    files = [s.parameters["safety.estop_file"] for s in plan.nodes if s.role == "safety"]
    assert files == [str(tmp_path / "e" / "estop" / f"robot_{i}.json") for i in range(2)]
    named = load_config(None, [f"run.root={tmp_path}", "run.name=f",
                               f"safety.estop_file={tmp_path / 'mine.json'}"])
    plan = plan_run("sim", named, robots=2)
    assert all("safety.estop_file" not in s.parameters for s in plan.nodes)


def test_demos_plan_runs_in_real_time_with_teleop_and_operator(tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=d", "sim.clock=lockstep"])
    plan = plan_run("sim", cfg, robots=2, learner=False, demos=True, operator=True)
    assert plan.cfg.sim.clock == "realtime"
    roles = [s.role for s in plan.nodes]
    assert roles.count("teleop") == 2 and roles.count("operator") == 2
    assert "learner" not in roles
    actors = [s for s in plan.nodes if s.role == "actor"]
    assert all(a.parameters["mode"] == "demos" for a in actors)
    with pytest.raises(ValueError, match="operator"):
        plan_run("robot", cfg, operator=True)
    assert all("max_episodes" not in s.parameters for s in plan.nodes)


@pytest.mark.parametrize("n,robots,quotas", [(5, 2, [3, 2]), (20, 3, [7, 7, 6]), (1, 2, [1, 0]),
                                             (4, 1, [4])])
def test_scripted_operators_split_the_demo_episodes(tmp_path, n, robots, quotas):
    """--max-demo-episodes N with scripted operators: they keep exactly N between them (two
    robots finishing at once would otherwise store one more than asked)."""
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=d"])
    plan = plan_run("sim", cfg, robots=robots, learner=False, demos=True, operator=True,
                    operator_episodes=n)
    ops = [s for s in plan.nodes if s.role == "operator"]
    assert [s.parameters["max_episodes"] for s in ops] == quotas and sum(quotas) == n
    for bad, operator in ((0, True), (3, False)):
        with pytest.raises(ValueError, match="operator_episodes"):
            plan_run("sim", cfg, robots=2, learner=False, demos=True, operator=operator,
                     operator_episodes=bad)


def test_robot_graph_runs_in_real_time_whatever_the_config_says(tmp_path):
    """Issue 15, defect 1: the default config's sim.clock is lockstep (the sim's clock); a real
    arm's safety node must run its watchdog on the wall clock. The run's config.yaml says so,
    and the safety node's own parameter pins it even if a config file says lockstep."""
    import yaml

    cfg = load_config(None, [f"run.root={tmp_path}"])
    assert cfg.sim.clock == "lockstep"  # the default the robot graph must not inherit
    plan = plan_run("robot", cfg)
    assert plan.cfg.sim.clock == "realtime"
    safety = [n for n in plan.nodes if n.role == "safety"]
    assert safety and all(n.parameters["sim.clock"] == "realtime" for n in safety)
    assert plan_run("sim", load_config(None, [f"run.root={tmp_path}"])).cfg.sim.clock == \
        "lockstep"  # the sim graph keeps its fast clock
    # The shipped parameter file of the README's `safety_node --params-file` command too.
    from pathlib import Path

    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "launch" / "config"
                              / "safety.yaml").read_text())
    assert shipped["/**"]["ros__parameters"]["sim"]["clock"] == "realtime"
