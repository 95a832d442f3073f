"""The one description of the ROS 2 training graph (DESIGN §2, §7).

Both ways of starting the graph read the node list from here and nowhere else:

* ``launch/sim.launch.py`` / ``launch/robot.launch.py`` (``ros2 launch robot_rl ...`` on a lab
  machine) turn each :class:`NodeSpec` into a ``launch_ros.actions.Node``;
* the project's own runner (``robot-rl up sim|robot``, :mod:`robot_rl.runner`) starts each
  :class:`NodeSpec` as a real process (``python -m robot_rl.ros_nodes.<executable> --ros-args
  ...``).

ROS-free: this module imports neither rclpy nor launch, so the runner, the launch files and the
tests share it.

Graph ``sim`` (headless training against PyBullet)::

    /sim_robot_node                       every sim robot, /clock
    /<ns_i>/actor_node, /<ns_i>/safety_node   per robot i (ns_i = robot_i; root for one robot)
    /replay_node                          single writer of runs/<name>/replay.zarr
    /learner_node                         trains from the store, publishes /rl/policy

Graph ``robot`` (lab arm under franka_ros2 + ``JointGroupVelocityController``): the same without
the sim node; joint states come from the driver, the task state from the lab's perception (or a
fixed goal publisher), resets are homing moves proposed through the safety node.

Every node gets ``config_file`` (the run's resolved robot_rl YAML) plus the per-node parameters
below; every robot_rl config field can also be given as a dotted ROS parameter
(:mod:`robot_rl.ros_nodes.params`). Names are the defaults of DESIGN §2: per-robot names are
relative (resolved under the robot's namespace), shared names absolute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# --------------------------------------------------------------------------- topic names

#: Shared (absolute) names.
TRANSITIONS_TOPIC = "/rl/transitions"  #: Transition, actors -> replay (reliable, deep queue)
REPLAY_ACK_TOPIC = "/rl/replay_ack"  #: ReplayAck, replay -> actors (reliable)
POLICY_TOPIC = "/rl/policy"  #: PolicyWeights, learner -> actors (reliable, transient_local, 1)
DIAGNOSTICS_TOPIC = "/diagnostics"  #: DiagnosticArray: every node's status, 1 Hz (the runner reads it)
#: Per-robot (relative) names.
JOINT_STATES_TOPIC = "joint_states"
TASK_STATE_TOPIC = "task_state"
PROPOSAL_TOPIC = "rl/action_proposal"
APPLIED_TOPIC = "safety/applied"
TELEOP_TOPIC = "rl/teleop"
COMMAND_TOPIC = "joint_velocity_controller/commands"
RESET_SERVICE = "reset_episode"
ESTOP_SERVICE = "safety/estop"


def task_state_matches(joint_stamp_ns: int, task_stamp_ns: int, has_object: bool) -> bool:
    """Whether a joint state (stamp ``joint_stamp_ns``) may be acted on with a task state.

    A task with an object gets a task state with every joint state (the object moves): only
    the one stamped like the joint state belongs to it. An object-free task's state is constant
    within an episode, so the sim publishes it when it changes and now and then (its
    ``task_state_period``): it holds for every joint state stamped at or after it. A joint state
    that arrives before the task state of a reset pairs with the old episode's, which the actor
    tells apart by ``episode_id`` (after asking for a reset it waits for a new one)."""
    if has_object:
        return joint_stamp_ns == task_stamp_ns
    return joint_stamp_ns >= task_stamp_ns


GraphKind = Literal["sim", "robot"]
ROLES = ("sim", "actor", "safety", "replay", "learner", "teleop", "operator")


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph, in the terms both ``launch_ros`` and the runner understand.

    Attributes:
        role: ``sim``, ``actor``, ``safety``, ``replay`` or ``learner``.
        executable: the console script (``setup.py`` ``NODES``); also the module
            ``robot_rl.ros_nodes.<executable>``.
        name: the node name.
        namespace: ``""`` (root) or e.g. ``"robot_0"`` (no leading slash).
        parameters: ROS parameters (dotted names for nested robot_rl config fields).
        robot_id: the robot index for per-robot nodes, else None.
        nice: scheduling niceness the runner applies (the learner runs below the control loop).
        rt_priority: SCHED_FIFO priority the runner applies (0: none; ``run.rt_priority`` for
            the control path: sim, actors, safety nodes).
    """

    role: str
    executable: str
    name: str
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    robot_id: int | None = None
    nice: int = 0
    rt_priority: int = 0

    @property
    def package(self) -> str:
        return "robot_rl"

    @property
    def module(self) -> str:
        return f"robot_rl.ros_nodes.{self.executable}"

    @property
    def fully_qualified_name(self) -> str:
        return f"/{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"

    def params_yaml(self) -> dict[str, Any]:
        """``{fully_qualified_name: {"ros__parameters": parameters}}`` (a ``--params-file``)."""
        return {self.fully_qualified_name: {"ros__parameters": dict(self.parameters)}}

    def ros_args(self, params_file: str | Path | None = None) -> list[str]:
        """Command-line ``--ros-args`` that give this node its name, namespace and parameters.

        With ``params_file`` (written from :meth:`params_yaml`), parameters come from the file;
        without, each is passed as ``-p name:=value`` (YAML-encoded).
        """
        import yaml

        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:=/{self.namespace}"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        else:
            for k, v in self.parameters.items():
                enc = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
                if enc.endswith("\n..."):
                    enc = enc[: -len("\n...")]
                args += ["-p", f"{k}:={enc}"]
        return args


def robot_namespaces(num_robots: int, namespaces: list[str] | None = None) -> list[str]:
    """The robots' namespaces: the given list, else root for one robot, ``robot_<i>`` for several."""
    if namespaces is not None:
        ns = [n.strip("/") for n in namespaces]
        if len(ns) != num_robots:
            raise ValueError(f"robot namespaces: {len(ns)} names for {num_robots} robots")
        if len(set(ns)) != len(ns):
            raise ValueError(f"robot namespaces: duplicates in {ns}")
        if num_robots > 1 and "" in ns:
            raise ValueError("robot namespaces: with several robots each needs its own namespace")
        return ns
    if num_robots < 1:
        raise ValueError(f"num_robots: expected >= 1, got {num_robots}")
    return [""] if num_robots == 1 else [f"robot_{i}" for i in range(num_robots)]


def build_graph(kind: GraphKind, *, config_file: str | Path, num_robots: int = 1,
                namespaces: list[str] | None = None, run_dir: str | Path | None = None,
                learner: bool = True, eval_in_sim: bool | None = None,
                extra: dict[str, dict[str, Any]] | None = None,
                rt_priority: int = 0, teleop: bool = False, operator: bool = False,
                demos: bool = False, operator_episodes: int | None = None) -> list[NodeSpec]:
    """The graph's nodes, in start order (sim first, learner last).

    Args:
        kind: ``sim`` (with the PyBullet sim node) or ``robot`` (a lab arm's driver instead).
        config_file: the robot_rl YAML every node reads (the run's resolved ``config.yaml``).
        num_robots: robots (each gets an actor and a safety node in its namespace).
        namespaces: their namespaces (default: root for one robot, ``robot_<i>``).
        run_dir: overrides where the replay store, checkpoints and logs go (default
            ``run.root/run.name`` from the config).
        learner: include the learner node (False: collect only, e.g. demo recording).
        eval_in_sim: the learner evaluates its policy in its own PyBullet env (DESIGN §8);
            default True for ``sim``, False for ``robot``.
        extra: additional parameters per role (``{"actor": {...}, "learner": {...}}``).
        rt_priority: SCHED_FIFO priority of the sim, actor and safety nodes (0: none).
        teleop: a teleop node per robot (SpaceMouse / gamepad -> ``rl/teleop``): a held deadman
            takes over from the policy (source=intervention), or drives the demos.
        operator: (sim only) a scripted operator per robot, publishing what spacenav would --
            the stand-in for a person (implies ``teleop``).
        demos: record demonstrations: the actors let the operator drive and send each marked
            episode whole (source=demo); implies ``teleop``.
        operator_episodes: with ``operator``: the episodes the scripted operators keep in all,
            split over the robots (robot i: ``N // R``, one more for the first ``N % R``);
            each then takes its hands off the device (``max_episodes``). None: no limit.
    """
    if operator and kind != "sim":
        raise ValueError("operator: the scripted operator drives simulated robots only")
    if operator_episodes is not None and (not operator or operator_episodes < 1):
        raise ValueError(f"operator_episodes: expected >= 1 with a scripted operator, got "
                         f"{operator_episodes}" + ("" if operator else " without one"))
    teleop = teleop or operator or demos
    if not 0 <= rt_priority <= 98:
        raise ValueError(f"rt_priority: expected 0..98, got {rt_priority}")
    if kind not in ("sim", "robot"):
        raise ValueError(f"graph kind: expected 'sim' or 'robot', got {kind!r}")
    ns = robot_namespaces(num_robots, namespaces)
    extra = extra or {}
    unknown = set(extra) - set(ROLES)
    if unknown:
        raise ValueError(f"graph parameters: unknown roles {sorted(unknown)}; expected {ROLES}")
    base: dict[str, Any] = {"config_file": str(config_file)}
    if run_dir is not None:
        base["run_dir"] = str(run_dir)

    def params(role: str, **p: Any) -> dict[str, Any]:
        out = dict(base) if role != "safety" else {"config_file": str(config_file)}
        out.update(p)
        out.update(extra.get(role, {}))
        return out

    def quota(i: int) -> dict[str, int]:
        if operator_episodes is None:
            return {}
        q, r = divmod(operator_episodes, len(ns))
        return {"max_episodes": q + (i < r)}

    nodes: list[NodeSpec] = []
    if kind == "sim":
        nodes.append(NodeSpec("sim", "sim_robot_node", "sim_robot_node",
                              parameters={"config_file": str(config_file),
                                          "sim.num_robots": num_robots,
                                          "robot_namespaces": ns,
                                          # lockstep waits for the learner's UTD allowance
                                          "learner_gate": bool(learner),
                                          **extra.get("sim", {})},
                              rt_priority=rt_priority))
    for i, n in enumerate(ns):
        sp = params("safety")
        if kind == "sim" and run_dir is not None and "safety.estop_file" not in sp:
            # A sim robot's e-stop lives with its run (see sim_estop_files); a real arm's
            # in ~/.robot_rl/estop/, per robot and across runs.
            sp["safety.estop_file"] = str(sim_estop_file(run_dir, n))
        if kind == "robot":
            sp["sim.clock"] = "realtime"  # whatever the config file says: a real arm
        nodes.append(NodeSpec("safety", "safety_node", "safety_node", n, sp, robot_id=i,
                              rt_priority=rt_priority))
        # The sim publishes joint and task state together once per period ("state" trigger);
        # a real arm's driver publishes joint states at 1 kHz and the task state comes from
        # perception at its own rate: act on the control-period timer with the newest of each.
        ap = params("actor", robot_id=i, reset_mode="service" if kind == "sim" else "homing",
                    trigger="state" if kind == "sim" else "timer")
        if demos:
            ap["mode"] = "demos"
        nodes.append(NodeSpec("actor", "actor_node", "actor_node", n, ap,
                              robot_id=i, rt_priority=rt_priority))
        # One device per robot: with several robots the device topics live in the robot's
        # namespace (a lab remaps its drivers there); one robot keeps spacenav's own names.
        dev = ({} if len(ns) == 1 else
               {"twist_topic": "spacenav/twist", "joy_topic": "spacenav/joy"})
        if teleop:
            nodes.append(NodeSpec("teleop", "teleop_node", "teleop_node", n,
                                  {"config_file": str(config_file), **dev,
                                   **extra.get("teleop", {})}, robot_id=i))
        if operator:
            nodes.append(NodeSpec("operator", "scripted_operator_node", "scripted_operator_node",
                                  n, {"config_file": str(config_file), **dev,
                                      "seed": 1000 + i, **quota(i), **extra.get("operator", {})},
                                  robot_id=i))
    nodes.append(NodeSpec("replay", "replay_node", "replay_node", "", params("replay")))
    if learner:
        ev = (kind == "sim") if eval_in_sim is None else eval_in_sim
        nodes.append(NodeSpec("learner", "learner_node", "learner_node", "",
                              params("learner", eval_in_sim=ev), nice=10))
    return nodes


def sim_estop_file(run_dir: str | Path, namespace: str) -> Path:
    """``<run_dir>/estop/<namespace>.json`` (``root.json`` for the root namespace): where a sim
    robot's safety node keeps its e-stop state."""
    ns = namespace.strip("/").replace("/", "__") or "root"
    return Path(run_dir) / "estop" / f"{ns}.json"


def sim_estop_files(nodes: list[NodeSpec]) -> list[Path]:
    """Create the e-stop files of a sim graph's safety nodes, *released*, where missing.

    A missing e-stop file means latched (fail safe, DESIGN §5), which is right for an arm and
    would leave a fresh simulation standing still. A simulated robot starts released; a file
    that exists (an e-stop latched during this run, then resumed) is left as it is.
    """
    import json

    made = []
    for spec in nodes:
        f = spec.parameters.get("safety.estop_file") if spec.role == "safety" else None
        if f and any(s.role == "sim" for s in nodes):
            p = Path(f)
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(json.dumps({"latched": False, "reason": "simulated robot, new run"})
                             + "\n")
                made.append(p)
    return made


def executables() -> set[str]:
    """Every executable a graph can name (each must be a console script in setup.py)."""
    return {"sim_robot_node", "safety_node", "actor_node", "replay_node", "learner_node",
            "teleop_node", "scripted_operator_node"}
