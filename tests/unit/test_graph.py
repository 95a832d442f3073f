"""The one graph description (robot_rl.graph) and everything that starts it from there.

* ``build_graph`` for one and two robots, sim and robot: names, namespaces, roles, parameters,
  start order, written out as tables;
* the launch files' ROS-free graph functions (loaded with runpy, ``launch`` blocked) return
  exactly the runner's node list for the same arguments — the proof that ``ros2 launch`` and
  ``robot-rl up`` start the same graph — and ``generate_launch_description`` maps each node to
  ``launch_ros.actions.Node`` (checked against stand-in launch modules);
* every executable is a console script in setup.py's ``NODES``;
* the shipped controller YAML names the fr3 profile's joints; bad inputs give clear errors.
"""
import ast
import importlib.abc
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from robot_rl.cli import parse_args, up_plan
from robot_rl.config import load_config
from robot_rl.graph import (COMMAND_TOPIC, ESTOP_SERVICE, NodeSpec, build_graph, executables,
                            robot_namespaces)
from robot_rl.runner import plan_run, write_run_files

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
CFG = "/runs/x/config.yaml"


def table(nodes):
    return [(n.role, n.fully_qualified_name, n.robot_id, n.nice) for n in nodes]


# --------------------------------------------------------------------------- build_graph


def test_sim_graph_one_robot():
    nodes = build_graph("sim", config_file=CFG)
    assert table(nodes) == [
        ("sim", "/sim_robot_node", None, 0),
        ("safety", "/safety_node", 0, 0),
        ("actor", "/actor_node", 0, 0),
        ("replay", "/replay_node", None, 0),
        ("learner", "/learner_node", None, 10),
    ]
    p = {n.role: n.parameters for n in nodes}
    assert p["sim"] == {"config_file": CFG, "sim.num_robots": 1, "robot_namespaces": [""],
                        "learner_gate": True}
    assert p["safety"] == {"config_file": CFG}
    assert p["actor"] == {"config_file": CFG, "robot_id": 0, "reset_mode": "service",
                          "trigger": "state"}
    assert p["replay"] == {"config_file": CFG}
    assert p["learner"] == {"config_file": CFG, "eval_in_sim": True}
    assert all(n.namespace == "" and n.package == "robot_rl" for n in nodes)


def test_sim_graph_two_robots_with_run_dir_and_extra():
    nodes = build_graph("sim", config_file=CFG, num_robots=2, run_dir="/runs/x",
                        extra={"actor": {"agent.exploration_noise": 0.2}})
    assert table(nodes) == [
        ("sim", "/sim_robot_node", None, 0),
        ("safety", "/robot_0/safety_node", 0, 0),
        ("actor", "/robot_0/actor_node", 0, 0),
        ("safety", "/robot_1/safety_node", 1, 0),
        ("actor", "/robot_1/actor_node", 1, 0),
        ("replay", "/replay_node", None, 0),
        ("learner", "/learner_node", None, 10),
    ]
    assert [n.namespace for n in nodes] == ["", "robot_0", "robot_0", "robot_1", "robot_1", "",
                                            ""]
    by = {n.fully_qualified_name: n.parameters for n in nodes}
    assert by["/sim_robot_node"]["robot_namespaces"] == ["robot_0", "robot_1"]
    assert by["/sim_robot_node"]["sim.num_robots"] == 2
    assert by["/robot_1/actor_node"] == {"config_file": CFG, "run_dir": "/runs/x", "robot_id": 1,
                                         "reset_mode": "service", "trigger": "state",
                                         "agent.exploration_noise": 0.2}
    # the safety node has no run_dir; a sim robot's e-stop file lives in the run
    assert by["/robot_0/safety_node"] == {"config_file": CFG,
                                          "safety.estop_file": "/runs/x/estop/robot_0.json"}
    assert by["/replay_node"] == {"config_file": CFG, "run_dir": "/runs/x"}


def test_robot_graph_has_no_sim_node_homing_resets_no_eval_in_sim():
    nodes = build_graph("robot", config_file=CFG, num_robots=2, namespaces=["left", "right"])
    assert table(nodes) == [
        ("safety", "/left/safety_node", 0, 0),
        ("actor", "/left/actor_node", 0, 0),
        ("safety", "/right/safety_node", 1, 0),
        ("actor", "/right/actor_node", 1, 0),
        ("replay", "/replay_node", None, 0),
        ("learner", "/learner_node", None, 10),
    ]
    p = {n.fully_qualified_name: n.parameters for n in nodes}
    assert p["/left/actor_node"]["reset_mode"] == "homing"
    assert p["/learner_node"]["eval_in_sim"] is False
    assert [n.role for n in build_graph("robot", config_file=CFG, learner=False)] == [
        "safety", "actor", "replay"]


def test_ros_args_and_params_yaml():
    n = build_graph("sim", config_file=CFG, num_robots=2)[2]  # /robot_0/actor_node
    assert n.module == "robot_rl.ros_nodes.actor_node"
    assert n.params_yaml() == {"/robot_0/actor_node": {"ros__parameters": n.parameters}}
    assert n.ros_args("/p.yaml") == ["--ros-args", "-r", "__node:=actor_node", "-r",
                                     "__ns:=/robot_0", "--params-file", "/p.yaml"]
    assert n.ros_args() == ["--ros-args", "-r", "__node:=actor_node", "-r", "__ns:=/robot_0",
                            "-p", f"config_file:={CFG}", "-p", "robot_id:=0",
                            "-p", "reset_mode:=service", "-p", "trigger:=state"]
    sim = build_graph("sim", config_file=CFG)[0]
    assert sim.ros_args()[-6:] == ["-p", "sim.num_robots:=1", "-p", "robot_namespaces:=['']",
                                   "-p", "learner_gate:=true"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="lab"), "graph kind: expected 'sim' or 'robot', got 'lab'"),
    (dict(num_robots=0), "num_robots: expected >= 1, got 0"),
    (dict(num_robots=2, namespaces=["a"]), "robot namespaces: 1 names for 2 robots"),
    (dict(num_robots=2, namespaces=["a", "/a"]), "robot namespaces: duplicates in ['a', 'a']"),
    (dict(num_robots=2, namespaces=["", "b"]), "with several robots each needs its own"),
    (dict(extra={"critic": {}}), "graph parameters: unknown roles ['critic']"),
])
def test_bad_graph_arguments_are_named(kwargs, message):
    kind = kwargs.pop("kind", "sim")
    with pytest.raises(ValueError) as ei:
        build_graph(kind, config_file=CFG, **kwargs)
    assert message in str(ei.value)


def test_robot_namespaces_defaults():
    assert robot_namespaces(1) == [""]
    assert robot_namespaces(3) == ["robot_0", "robot_1", "robot_2"]
    assert robot_namespaces(2, ["/a/", "b"]) == ["a", "b"]


# --------------------------------------------------------------------------- setup.py


def _setup_nodes() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no NODES")


def test_every_executable_is_a_console_script():
    nodes = _setup_nodes()
    assert executables() == set(nodes)
    for kind in ("sim", "robot"):
        for spec in build_graph(kind, config_file=CFG, num_robots=2):
            assert nodes[spec.executable] == f"{spec.module}:main", spec


# --------------------------------------------------------------------------- launch files


class _BlockLaunch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("launch", "launch_ros", "rclpy"):
            raise ImportError(f"{name} is blocked in this test")
        return None


@pytest.fixture
def launch_files(monkeypatch):
    """Both launch files loaded as ``ros2 launch`` would, with launch/launch_ros/rclpy blocked."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("launch", "launch_ros"):
            monkeypatch.delitem(sys.modules, name)
    blocker = _BlockLaunch()
    sys.meta_path.insert(0, blocker)
    try:
        yield {k: runpy.run_path(str(LAUNCH / f"{k}.launch.py")) for k in ("sim", "robot")}
    finally:
        sys.meta_path.remove(blocker)


@pytest.mark.parametrize("robots, namespaces", [(1, None), (2, None), (2, ["a", "b"])])
def test_launch_files_and_runner_use_the_same_node_list(launch_files, tmp_path, robots,
                                                        namespaces):
    cfg_file = tmp_path / "my.yaml"
    cfg_file.write_text("task: {reward: sparse}\nrun: {name: r}\n")
    run_dir = tmp_path / "run"
    cfg = load_config(cfg_file)
    for kind in ("sim", "robot"):
        runner = plan_run(kind, cfg, robots=robots, namespaces=namespaces, run_dir=run_dir).nodes
        graph = build_graph(kind, config_file=run_dir / "config.yaml", num_robots=robots,
                            namespaces=namespaces, run_dir=run_dir)
        launched = launch_files[kind]["graph_nodes"](
            config_file=str(cfg_file), num_robots=robots, namespaces=namespaces,
            run_dir=str(run_dir))
        assert launched == runner == graph
        assert all(isinstance(n, NodeSpec) for n in launched)


def test_launch_arguments_match_the_cli(launch_files, tmp_path, monkeypatch):
    """``ros2 launch robot_rl X.launch.py a:=b`` and ``robot-rl up X --a b`` plan the same run."""
    monkeypatch.chdir(tmp_path)
    cfg_file = tmp_path / "my.yaml"
    cfg_file.write_text("agent: {algo: td3}\n")
    parse = parse_args
    sim_launch = launch_files["sim"]["make_plan"]({
        "config": str(cfg_file), "robots": "2", "name": "n1", "learner": "false",
        "overrides": "task.reward=sparse sim.control_hz=25"})
    sim_cli = up_plan(parse(["up", "sim", "--config", str(cfg_file), "--robots", "2", "--name",
                             "n1", "--no-learner", "task.reward=sparse", "sim.control_hz=25"]))
    robot_launch = launch_files["robot"]["make_plan"]({
        "namespaces": "left,right", "arm_id": "fr3", "run_dir": str(tmp_path / "lab"),
        "robot_ip": "172.16.0.2"})
    robot_cli = up_plan(parse(["up", "robot", "--namespaces", "left,right", "robot.name=fr3",
                               "run.root=" + str(tmp_path), "run.name=lab"]))
    for a, b in ((sim_launch, sim_cli), (robot_launch, robot_cli)):
        assert a.nodes == b.nodes and a.run_dir == b.run_dir
        assert a.cfg == b.cfg
    assert sim_launch.run_dir == tmp_path / "runs" / "n1"
    assert sim_launch.cfg.sim.num_robots == 2 and sim_launch.cfg.sim.control_hz == 25
    assert robot_launch.cfg.robot.joint_names[0] == "fr3_joint1"


@pytest.mark.parametrize("kind, args, message", [
    ("sim", {"robots": "two"}, "robots: expected a whole number, got 'two'"),
    ("sim", {"learner": "maybe"}, "learner: expected true or false, got 'maybe'"),
    ("sim", {"robot": "2"}, "launch arguments: unknown ['robot']"),
    ("sim", {"namespaces": "a,a"}, "robot namespaces: duplicates"),
    ("robot", {"arm_id": "ur5"}, "arm_id: expected one of ['fr3', 'panda'], got 'ur5'"),
    ("robot", {"overrides": "sim.substeps=0"}, "sim.substeps"),
])
def test_bad_launch_arguments_are_named(launch_files, tmp_path, kind, args, message):
    with pytest.raises(ValueError) as ei:
        launch_files[kind]["make_plan"]({"run_dir": str(tmp_path / "r"), **args})
    assert message in str(ei.value)


def _fake_launch_modules(monkeypatch):
    """Stand-ins for launch / launch_ros that record what the launch files construct."""
    made = []

    def recorder(kind):
        def make(*args, **kwargs):
            made.append((kind, args, kwargs))
            return (kind, args, kwargs)
        return make

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    mods = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    mods["launch"].LaunchDescription = recorder("LaunchDescription")
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "LogInfo", "Shutdown"):
        setattr(mods["launch.actions"], name, recorder(name))
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = recorder("Node")
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return made


@pytest.mark.parametrize("kind", ["sim", "robot"])
def test_generate_launch_description_maps_every_node(kind, tmp_path, monkeypatch):
    import robot_rl.provenance

    monkeypatch.setattr(robot_rl.provenance, "provenance", lambda: {})  # (imports torch: slow)
    made = _fake_launch_modules(monkeypatch)
    mod = runpy.run_path(str(LAUNCH / f"{kind}.launch.py"))
    mod["generate_launch_description"]()
    declared = {a[0]: k["default_value"] for kind_, a, k in made
                if kind_ == "DeclareLaunchArgument"}
    assert set(declared) == {n for n, _, _ in mod["ARGUMENTS"]}
    if kind == "robot":
        assert {"robot_ip", "arm_id", "config", "namespaces"} <= set(declared)
        assert declared["arm_id"] == "fr3"
    (opaque,) = [k["function"] for kind_, _, k in made if kind_ == "OpaqueFunction"]
    made.clear()
    context = dict(declared, run_dir=str(tmp_path / "run"), namespaces="robot_0,robot_1")
    if kind == "sim":
        context["robots"] = "2"
    actions = opaque(context)
    nodes = [k for kind_, _, k in actions if kind_ == "Node"]
    plan = mod["make_plan"]({**context, "resume": "true"})  # the files now exist
    assert len(nodes) == len(plan.nodes) == (7 if kind == "sim" else 6)
    for spec, kw in zip(plan.nodes, nodes):
        expected = {"package": "robot_rl", "executable": spec.executable, "name": spec.name,
                    "parameters": [str(plan.params_file(spec))], "output": "screen",
                    "on_exit": kw["on_exit"]}
        if spec.namespace:
            expected["namespace"] = spec.namespace
        if spec.nice:
            expected["prefix"] = f"nice -n {spec.nice}"
        assert kw == expected
        assert kw["on_exit"][0] == "Shutdown"
        assert yaml.safe_load(plan.params_file(spec).read_text()) == spec.params_yaml()
    assert (tmp_path / "run" / "config.yaml").exists()
    logs = [a[2]["msg"] for a in actions if a[0] == "LogInfo"]
    assert f"run directory {tmp_path / 'run'}" in logs[0]
    if kind == "robot":
        assert "spawner joint_velocity_controller -c /robot_1/controller_manager" in logs[1]


# --------------------------------------------------------------------------- controller YAML


def test_controller_yaml_loads_the_velocity_controller_on_the_fr3_joints():
    data = yaml.safe_load((LAUNCH / "config" / "franka_velocity_controller.yaml").read_text())
    body = data["/**"]
    name = COMMAND_TOPIC.split("/")[0]
    assert name == "joint_velocity_controller"
    cm = body["controller_manager"]["ros__parameters"]
    assert cm["update_rate"] == 1000
    assert cm[name]["type"] == "velocity_controllers/JointGroupVelocityController"
    ctrl = body[name]["ros__parameters"]
    assert ctrl["joints"] == list(load_config(None, ["robot.name=fr3"]).robot.joint_names)
    assert ctrl["type"] == cm[name]["type"]


def test_write_run_files_and_estop_service_names(tmp_path, monkeypatch):
    import json

    import robot_rl.provenance
    from robot_rl.runner import estop_services

    monkeypatch.setattr(robot_rl.provenance, "provenance", lambda: {"git_commit": "abc"})

    plan = plan_run("sim", load_config(None), robots=2, run_dir=tmp_path / "r")
    write_run_files(plan, ["test"])
    assert load_config(plan.config_file) == plan.cfg
    assert sorted(p.name for p in (tmp_path / "r" / "graph").iterdir()) == [
        "learner_node.yaml", "replay_node.yaml", "robot_0_actor_node.yaml",
        "robot_0_safety_node.yaml", "robot_1_actor_node.yaml", "robot_1_safety_node.yaml",
        "sim_robot_node.yaml"]
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["git_commit"] == "abc" and prov["command"] == ["test"] and prov["robots"] == 2
    assert [n["name"] for n in prov["nodes"]] == [n.fully_qualified_name for n in plan.nodes]
    assert estop_services(["", "robot_0", "/a/b/"]) == [
        f"/{ESTOP_SERVICE}", f"/robot_0/{ESTOP_SERVICE}", f"/a/b/{ESTOP_SERVICE}"]


def test_sim_estop_files_start_released_and_keep_an_existing_state(tmp_path):
    import json

    from robot_rl.graph import build_graph, sim_estop_files

    nodes = build_graph("sim", config_file=CFG, num_robots=2, run_dir=tmp_path)
    made = sim_estop_files(nodes)
    assert sorted(p.name for p in made) == ["robot_0.json", "robot_1.json"]
    assert all(json.loads(p.read_text())["latched"] is False for p in made)
    made[0].write_text('{"latched": true}')  # latched during the run, then resumed
    assert sim_estop_files(nodes) == []
    assert json.loads(made[0].read_text())["latched"] is True
    # a real arm's graph never gets a file made for it (missing = latched)
    robot = build_graph("robot", config_file=CFG, num_robots=1, run_dir=tmp_path / "r")
    assert all("safety.estop_file" not in s.parameters for s in robot)
    assert sim_estop_files(robot) == []


def test_task_state_pairing_rule():
    """With an object: only the task state of the same stamp; without: the newest one stamped
    at or before the joint state (the sim sends an object-free task's state on change)."""
    from robot_rl.graph import task_state_matches

    assert task_state_matches(100, 100, has_object=True)
    assert not task_state_matches(150, 100, has_object=True)
    assert not task_state_matches(100, 150, has_object=True)
    assert task_state_matches(100, 100, has_object=False)
    assert task_state_matches(150, 100, has_object=False)
    assert not task_state_matches(100, 150, has_object=False)  # a newer task state: not this one
