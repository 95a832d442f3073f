"""``ros2 launch robot_rl sim.launch.py``: the headless simulation training graph (DESIGN §2, §7).

The same nodes, parameters and run directory as ``robot-rl up sim`` with the same arguments:
both resolve the run with :func:`robot_rl.runner.plan_run`, which takes the node list from
:func:`robot_rl.graph.build_graph` (tests/unit/test_graph.py checks that the lists are equal).
What ``ros2 launch`` does not do that ``robot-rl up`` does: the progress line, the stop
conditions (``--until-success`` ...), stopping the nodes in reverse order (launch sends SIGINT
to all at once) and the learning-curve PNG at the end. A node that exits ends the launch.

Examples::

    ros2 launch robot_rl sim.launch.py
    ros2 launch robot_rl sim.launch.py robots:=2 name:=reach2 config:=/path/to/my.yaml
    ros2 launch robot_rl sim.launch.py overrides:="task.reward=sparse agent.algo=td3"

Arguments (``ros2 launch robot_rl sim.launch.py --show-args``):

    config       robot_rl YAML file (default: the built-in defaults)
    overrides    KEY=VALUE config overrides, space-separated (like robot-rl's)
    robots       number of sim robots (default: sim.num_robots of the config)
    namespaces   the robots' namespaces, comma-separated (default: root for one, robot_<i>)
    name         run.name: the run directory is run.root/name (default: the config's)
    run_dir      the run directory itself (overrides run.root/run.name)
    resume       true: continue the run in an existing run directory (default false)
    learner      false: no learner node, collect only (default true)

This file imports ``launch`` / ``launch_ros`` only inside :func:`generate_launch_description`,
so :func:`graph_nodes` and :func:`make_plan` work (and are tested) without a ROS install.
"""
from __future__ import annotations

GRAPH = "sim"

#: (name, default, description) of every launch argument.
ARGUMENTS = (
    ("config", "", "robot_rl YAML config file (empty: the built-in defaults)"),
    ("overrides", "", "space-separated KEY=VALUE config overrides, e.g. task.reward=sparse"),
    ("robots", "", "number of sim robots (empty: sim.num_robots of the config)"),
    ("namespaces", "", "comma-separated robot namespaces (empty: root for one, robot_<i>)"),
    ("name", "", "run.name (empty: the config's)"),
    ("run_dir", "", "run directory (empty: run.root/run.name)"),
    ("resume", "false", "continue the run in an existing run directory"),
    ("learner", "true", "start the learner node (false: collect only)"),
)


def graph_nodes(config_file: str | None = None, num_robots: int | None = None,
                namespaces: list[str] | None = None, run_dir: str | None = None,
                learner: bool = True, resume: bool = False, overrides: tuple[str, ...] = ()):
    """The graph's ``NodeSpec`` list, in start order (ROS-free; see :func:`make_plan`)."""
    return _plan(config_file, num_robots, namespaces, run_dir, learner, resume, overrides).nodes


def _plan(config_file, num_robots, namespaces, run_dir, learner, resume, overrides):
    from robot_rl.config import load_config
    from robot_rl.runner import plan_run

    cfg = load_config(config_file or None, tuple(overrides))
    return plan_run(GRAPH, cfg, robots=num_robots, namespaces=namespaces, learner=learner,
                    resume=resume, run_dir=run_dir or None)


def make_plan(args: dict[str, str]):
    """The run plan of the launch arguments (strings, as ``ros2 launch`` gives them)."""
    from robot_rl.runner import parse_flag, split_list

    a = {name: default for name, default, _ in ARGUMENTS}
    unknown = sorted(set(args) - set(a))
    if unknown:
        raise ValueError(f"launch arguments: unknown {unknown}; expected some of {list(a)}")
    a.update({k: v for k, v in args.items() if v is not None})
    overrides = tuple(a["overrides"].split())
    if a["name"].strip():
        overrides += (f"run.name={a['name'].strip()}",)
    robots = a["robots"].strip()
    try:
        n = int(robots) if robots else None
    except ValueError:
        raise ValueError(f"robots: expected a whole number, got {robots!r}") from None
    return _plan(a["config"].strip(), n, split_list(a["namespaces"]), a["run_dir"].strip(),
                 parse_flag(a["learner"], "learner"), parse_flag(a["resume"], "resume"),
                 overrides)


def _launch_setup(context, *_args, **_kwargs):
    from launch.actions import LogInfo
    from launch.substitutions import LaunchConfiguration

    from robot_rl.runner import launch_nodes, write_run_files

    args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = make_plan(args)
    write_run_files(plan, ["ros2", "launch", "robot_rl", f"{GRAPH}.launch.py",
                           *(f"{k}:={v}" for k, v in args.items())])
    return [LogInfo(msg=f"robot_rl {GRAPH} graph: {len(plan.nodes)} nodes, {plan.num_robots} "
                        f"robot(s), run directory {plan.run_dir}"),
            *launch_nodes(plan)]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc)
          for name, default, doc in ARGUMENTS),
        OpaqueFunction(function=_launch_setup),
    ])
