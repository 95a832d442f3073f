"""``ros2 launch robot_rl robot.launch.py``: the training graph on a lab arm (DESIGN §2, §7).

The ``robot`` graph of :func:`robot_rl.graph.build_graph` — per robot a safety node and an
actor node, one replay node, one learner — with the same nodes, parameters and run directory as
``robot-rl up robot`` with the same arguments (both resolve the run with
:func:`robot_rl.runner.plan_run`; tests/unit/test_graph.py checks that the lists are equal).

It does **not** start the robot driver. Run franka_ros2's bringup beside it and load the
velocity controller this package ships (``launch/config/franka_velocity_controller.yaml``:
``velocity_controllers/JointGroupVelocityController`` named ``joint_velocity_controller`` on
``fr3_joint1..7``). The safety node is the only publisher on
``joint_velocity_controller/commands``; that controller has no command timeout, so never
publish to it from anything else.

Starting it (README-ready)
--------------------------

Three terminals on the robot PC (ROS 2 Humble / Jazzy / Kilted; franka_ros2 and robot_rl built
in the sourced workspace; the same ``ROS_DOMAIN_ID`` everywhere)::

    # 1. the driver: franka_ros2 bringup (franka_ros2 >= 1.0; 0.1.x names the arm arm_id:=fr3)
    ros2 launch franka_bringup franka.launch.py robot_type:=fr3 robot_ip:=172.16.0.2

    # 2. load and activate the velocity controller once the controller manager is up
    ros2 run controller_manager spawner joint_velocity_controller --param-file \\
        $(ros2 pkg prefix robot_rl)/share/robot_rl/launch/config/franka_velocity_controller.yaml
    #    (a spawner that cannot read the type from the file: add
    #     --controller-type velocity_controllers/JointGroupVelocityController)

    # 3. the training graph
    ros2 launch robot_rl robot.launch.py robot_ip:=172.16.0.2 arm_id:=fr3 name:=lab_reach
    #    or, with robot_rl's own runner (progress line, --until-success, ordered stop):
    robot-rl up robot --name lab_reach robot.name=fr3

E-stop from any terminal on the domain: ``robot-rl estop`` (every robot; ``--release`` to
release), or ``ros2 service call /safety/estop std_srvs/srv/SetBool "{data: true}"``. A safety
node that finds no e-stop state file (``~/.robot_rl/estop/<namespace>.json``) starts latched:
release it with ``robot-rl estop --release`` once the arm is clear.

Several arms: start each bringup in its namespace (``namespace:=robot_0`` ...; spawner with
``-c /robot_0/controller_manager``; the controller YAML is namespace-agnostic) and pass
``namespaces:=robot_0,robot_1`` here.

Arguments (``ros2 launch robot_rl robot.launch.py --show-args``):

    robot_ip     the arm's address; only echoed in the bringup command printed at start
                 (the driver, not this launch, connects to the arm)
    arm_id       fr3 (franka_ros2, fr3_joint1..7) or panda (multipanda_ros2, panda_joint1..7):
                 sets robot.name, so joint names and limits come from that profile
    config       robot_rl YAML file (default: the built-in defaults)
    overrides    KEY=VALUE config overrides, space-separated (like robot-rl's)
    namespaces   the robots' namespaces, comma-separated (default: one robot, root namespace)
    name         run.name: the run directory is run.root/name (default: the config's)
    run_dir      the run directory itself (overrides run.root/run.name)
    resume       true: continue the run in an existing run directory (default false)
    learner      false: no learner node, collect only (default true)

``launch`` / ``launch_ros`` are imported only inside :func:`generate_launch_description`.
"""
from __future__ import annotations

GRAPH = "robot"
ARM_IDS = ("fr3", "panda")

#: (name, default, description) of every launch argument.
ARGUMENTS = (
    ("robot_ip", "", "the arm's address (echoed in the franka bringup command; the driver "
                     "connects, not this launch)"),
    ("arm_id", "fr3", "fr3 (franka_ros2) or panda (multipanda_ros2): sets robot.name"),
    ("config", "", "robot_rl YAML config file (empty: the built-in defaults)"),
    ("overrides", "", "space-separated KEY=VALUE config overrides, e.g. task.reward=sparse"),
    ("namespaces", "", "comma-separated robot namespaces (empty: one robot, root namespace)"),
    ("name", "", "run.name (empty: the config's)"),
    ("run_dir", "", "run directory (empty: run.root/run.name)"),
    ("resume", "false", "continue the run in an existing run directory"),
    ("learner", "true", "start the learner node (false: collect only)"),
)


def graph_nodes(config_file: str | None = None, namespaces: list[str] | None = None,
                run_dir: str | None = None, learner: bool = True, resume: bool = False,
                overrides: tuple[str, ...] = (), num_robots: int | None = None):
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
    arm = a["arm_id"].strip()
    if arm not in ARM_IDS:
        raise ValueError(f"arm_id: expected one of {list(ARM_IDS)}, got {arm!r}")
    # arm_id first: an explicit robot.name in `overrides` wins, like any later override.
    overrides = (f"robot.name={arm}", *a["overrides"].split())
    if a["name"].strip():
        overrides += (f"run.name={a['name'].strip()}",)
    return _plan(a["config"].strip(), None, split_list(a["namespaces"]), a["run_dir"].strip(),
                 parse_flag(a["learner"], "learner"), parse_flag(a["resume"], "resume"),
                 overrides)


def driver_hint(robot_ip: str, arm_id: str, namespaces: list[str]) -> str:
    """The bringup + spawner commands to run beside this launch (printed at start)."""
    ip = robot_ip or "<robot-ip>"
    if len(namespaces) > 1 and not robot_ip:
        ip = None
    lines = ["robot_rl does not start the driver; beside it run (franka_ros2):"]
    for ns in namespaces:
        nsarg = f" namespace:={ns}" if ns else ""
        cm = f"/{ns}/controller_manager" if ns else "/controller_manager"
        lines.append(f"  ros2 launch franka_bringup franka.launch.py robot_type:={arm_id} "
                     f"robot_ip:={ip or f'<{ns} ip>'}{nsarg}")
        lines.append(f"  ros2 run controller_manager spawner joint_velocity_controller -c {cm} "
                     "--param-file $(ros2 pkg prefix robot_rl)/share/robot_rl/launch/config/"
                     "franka_velocity_controller.yaml")
    if arm_id == "panda":
        lines.append("  (a Panda runs under multipanda_ros2's bringup instead, and its velocity "
                     "controller lists panda_joint1..7: copy the YAML and rename the joints)")
    return "\n".join(lines)


def _launch_setup(context, *_args, **_kwargs):
    from launch.actions import LogInfo
    from launch.substitutions import LaunchConfiguration

    from robot_rl.graph import robot_namespaces
    from robot_rl.runner import launch_nodes, write_run_files

    args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = make_plan(args)
    write_run_files(plan, ["ros2", "launch", "robot_rl", f"{GRAPH}.launch.py",
                           *(f"{k}:={v}" for k, v in args.items())])
    ns = robot_namespaces(plan.num_robots, plan.namespaces)
    return [LogInfo(msg=f"robot_rl {GRAPH} graph: {len(plan.nodes)} nodes, {plan.num_robots} "
                        f"robot(s) ({plan.cfg.robot.name}), run directory {plan.run_dir}"),
            LogInfo(msg=driver_hint(args["robot_ip"], plan.cfg.robot.name, ns)),
            *launch_nodes(plan)]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc)
          for name, default, doc in ARGUMENTS),
        OpaqueFunction(function=_launch_setup),
    ])
