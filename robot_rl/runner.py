"""The project's own process runner: ``robot-rl up sim|robot`` (DESIGN §7).

Starts the graph of :func:`robot_rl.graph.build_graph` — the same node list the launch files
start — as real processes, one per node, and watches them::

    plan = plan_run("sim", load_config(None, ["run.name=demo"]), robots=2)
    Runner(plan, until_success=0.9).run()      # -> exit status

First, a probe process lists the nodes already on the ``ROS_DOMAIN_ID`` (``domain_check`` s of
discovery): if a live node has the name of a node of this plan, another graph runs there --
two graphs on one domain exchange states, commands and transitions (one would write the
other's into its store) -- and the run is refused (exit 2) before anything is written or
started.

A run directory ``<run.root>/<run.name>/`` (absolute) receives, before any node starts::

    config.yaml          the resolved configuration; every node's ``config_file``
    provenance.json      git commit, packages, machine, command line, start time, node list
    graph/<node>.yaml    each node's ``--params-file`` (``robot_0_actor_node.yaml`` for
                         ``/robot_0/actor_node``), written from ``NodeSpec.params_yaml()``
    logs/<node>.log      each node's stdout + stderr (appended on ``--resume``)

Each node runs as ``python -m robot_rl.ros_nodes.<executable> --ros-args -r __node:=... -r
__ns:=... --params-file graph/<node>.yaml`` in its own process group (Ctrl-C in the terminal
reaches only the runner, which stops the nodes in order), at the node's niceness, with
``PR_SET_PDEATHSIG`` so that a runner killed outright takes its nodes with it.

Progress: an rclpy node inside the runner reads ``/diagnostics`` (each robot_rl node publishes
one status a second, named by its fully qualified name; see
``robot_rl.ros_nodes.common.status_message``) and prints one line every couple of seconds
(:class:`Progress`). ``/diagnostics`` is shared by every host on the domain, so a machine that
runs part of the graph (``--only``) still sums up all of it: "nodes 7/7" on the robot PC counts
the workstation's replay and learner too. Only that listener imports rclpy; the rest of this
module is ROS-free, so the launch files and the tests use it without a ROS install.

Stopping: Ctrl-C / SIGTERM, ``until_success`` (learner ``eval_success_rate``),
``max_env_steps`` (actors' ``env_steps``), ``max_time``. Nodes are stopped in reverse start
order (learner first, sim last; the safety nodes after the actors, so that their watchdogs brake
the arms), each with SIGINT to its process group, then SIGKILL after ``stop_timeout`` s; the
runner says which needed it. A second Ctrl-C kills whatever is left at once. A node that exits
on its own stops the run: the runner names it, prints its exit code and the tail of its log,
stops the others and exits non-zero. It restarts nothing.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

import yaml

from robot_rl.config import Config, config_from_dict
from robot_rl.graph import (DIAGNOSTICS_TOPIC, ESTOP_SERVICE, ROLES, NodeSpec, build_graph,
                            robot_namespaces, sim_estop_files)

#: Exit status of a run whose node failed (a node exited on its own, or could not start).
EXIT_NODE_FAILED = 1
#: Exit status of a run refused before anything started: its ROS domain already has nodes of the
#: same names (another graph: the two would exchange states, commands and transitions).
EXIT_DOMAIN_IN_USE = 2
#: Prints the fully qualified node names on this process's ROS domain after up to ``argv[1]`` s of
#: discovery (sooner when one of ``argv[2:]`` appears). A fresh participant learns only of live
#: ones (a process killed outright no longer announces itself), so a graph that was just killed
#: does not count. A separate process: DDS threads never run inside the runner before its forks.
_DOMAIN_PROBE = r"""
import json, os, sys, time
import rclpy
from rclpy.signals import SignalHandlerOptions
rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
node = rclpy.create_node(f"robot_rl_domain_probe_{os.getpid()}", start_parameter_services=False)
wait, wanted = float(sys.argv[1]), set(sys.argv[2:])
def names():
    return {ns.rstrip("/") + "/" + n for n, ns in node.get_node_names_and_namespaces()}
end = time.monotonic() + wait
cur = names()
while time.monotonic() < end and not (cur & wanted):
    time.sleep(0.1)
    cur = names()
print(json.dumps(sorted(cur)))
node.destroy_node()
rclpy.shutdown()
"""
#: A ROS name segment (namespaces are one or more of these joined by '/').
_NAME_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Files that mark a directory as holding a run.
RUN_MARKERS = ("config.yaml", "replay.zarr", "checkpoints", "graph")
#: Safety rules that brake to zero (no trustworthy proposal or state, e-stop); the others clamp a
#: proposal to the limits. Output periods are counted per rule (robot_rl.safety.Rule names).
BRAKING_RULES = frozenset({"WATCHDOG", "STALE_STATE", "ESTOP", "NONFINITE", "BAD_LENGTH",
                           "JOINT_ORDER"})
#: Seconds the safety nodes keep running after the actors stopped (their watchdogs brake the
#: arms to zero; the controller holds the last command once the safety node is gone).
BRAKE_GRACE_S = 1.0


# --------------------------------------------------------------------------- plan


def split_list(text: str | None) -> list[str] | None:
    """``"robot_0, robot_1"`` -> ``["robot_0", "robot_1"]``; empty or None -> None."""
    if text is None or not text.strip():
        return None
    return [t.strip() for t in text.split(",")]


def check_namespace(ns: str) -> str:
    """``ns`` without slashes at the ends; ValueError naming it when it is not a ROS namespace."""
    ns = ns.strip().strip("/")
    if ns and not all(_NAME_TOKEN.match(t) for t in ns.split("/")):
        raise ValueError(f"robot namespace {ns!r}: expected ROS names (letters, digits, '_', "
                         "not starting with a digit), e.g. robot_0")
    return ns


def resolve_robots(cfg: Config, kind: str, robots: int | None,
                   namespaces: Sequence[str] | None) -> tuple[int, list[str] | None]:
    """Number of robots and explicit namespaces (None: the graph's defaults).

    ``robots`` wins, else the number of ``namespaces``, else ``sim.num_robots`` (sim) or 1
    (robot). The two must agree when both are given.
    """
    if robots is not None and robots < 1:
        raise ValueError(f"--robots: expected >= 1, got {robots}")
    ns = None if namespaces is None else [check_namespace(n) for n in namespaces]
    if robots is None:
        robots = len(ns) if ns is not None else (cfg.sim.num_robots if kind == "sim" else 1)
    robot_namespaces(robots, ns)  # raises naming the mismatch
    return robots, ns


def existing_run(run_dir: Path) -> str | None:
    """The first :data:`RUN_MARKERS` entry present in ``run_dir``, else None."""
    for name in RUN_MARKERS:
        if (run_dir / name).exists():
            return name
    return None


def node_file_stem(spec: NodeSpec) -> str:
    """``/robot_0/actor_node`` -> ``robot_0_actor_node`` (params and log file names)."""
    return spec.fully_qualified_name.strip("/").replace("/", "_")


@dataclass
class RunPlan:
    """Everything a run needs, decided before anything is written or started."""

    kind: str
    cfg: Config
    run_dir: Path  #: absolute
    nodes: list[NodeSpec]
    num_robots: int
    namespaces: list[str] | None  #: as given (None: the graph's defaults)
    resume: bool = False
    #: The whole graph when ``--only`` keeps part of it on this machine (None: ``nodes``).
    graph_nodes: list[NodeSpec] | None = None

    @property
    def split(self) -> bool:
        """Does this machine run only part of the graph (``--only``)?"""
        return self.graph_nodes is not None and len(self.graph_nodes) != len(self.nodes)

    @property
    def graph(self) -> list[NodeSpec]:
        """Every node of the graph, on this machine or another one."""
        return self.graph_nodes if self.graph_nodes is not None else self.nodes

    @property
    def config_file(self) -> Path:
        return self.run_dir / "config.yaml"

    def params_file(self, spec: NodeSpec) -> Path:
        return self.run_dir / "graph" / f"{node_file_stem(spec)}.yaml"

    def log_file(self, spec: NodeSpec) -> Path:
        return self.run_dir / "logs" / f"{node_file_stem(spec)}.log"

    def command(self, spec: NodeSpec) -> list[str]:
        """The node's command line (the runner applies ``spec.nice`` itself)."""
        return [sys.executable, "-m", spec.module, *spec.ros_args(self.params_file(spec))]


def plan_run(kind: str, cfg: Config, *, robots: int | None = None,
             namespaces: Sequence[str] | None = None, learner: bool = True,
             roles: Iterable[str] | None = None, resume: bool = False,
             run_dir: str | Path | None = None, teleop: bool = False,
             operator: bool = False, demos: bool = False,
             operator_episodes: int | None = None) -> RunPlan:
    """Resolve a run: robots, run directory, the graph's nodes. Writes nothing.

    ``cfg.sim.num_robots`` is set to the number of robots, so the run's ``config.yaml`` says
    how many there were. ``roles`` keeps only those nodes (one machine of a graph spread over
    several on one ``ROS_DOMAIN_ID``). Raises ``ValueError`` naming the bad argument: an
    unknown graph kind or role, robots and namespaces that disagree, a run directory that
    already holds a run (without ``resume``) or holds none (with it).
    """
    if kind not in ("sim", "robot"):
        raise ValueError(f"graph: expected 'sim' or 'robot', got {kind!r}")
    n, ns = resolve_robots(cfg, kind, robots, namespaces)
    rd = Path(run_dir if run_dir is not None else cfg.run.run_dir).expanduser().absolute()
    # The run's config.yaml says how many robots ran and where the run lives.
    data = cfg.model_dump(mode="json")
    data["sim"]["num_robots"] = n
    if run_dir is not None:
        data["run"]["root"], data["run"]["name"] = str(rd.parent), rd.name
    if data != cfg.model_dump(mode="json"):
        cfg = config_from_dict(data, source=f"{n} robots, run directory {rd}")
    marker = existing_run(rd)
    if marker and not resume:
        raise ValueError(f"run.name: {rd} already holds a run ({marker}); pick another --name "
                         "or pass --resume to continue it")
    if resume and not marker:
        raise ValueError(f"--resume: {rd} holds no run to resume (no {', '.join(RUN_MARKERS)})")
    if kind == "robot" and cfg.sim.clock != "realtime":
        # Lockstep is the simulator's clock; a real arm's driver streams joint states in real
        # time, and the safety node's watchdog must run on the wall clock.
        data = cfg.model_dump(mode="json")
        data["sim"]["clock"] = "realtime"
        cfg = config_from_dict(data, source="robot graph (real time)")
    if demos and cfg.sim.clock != "realtime" and kind == "sim":
        # An operator (person or scripted) drives at the pace of the world, not of lockstep.
        data = cfg.model_dump(mode="json")
        data["sim"]["clock"] = "realtime"
        cfg = config_from_dict(data, source="--demos (real time)")
    nodes = build_graph(kind, config_file=rd / "config.yaml", num_robots=n, namespaces=ns,
                        run_dir=rd, learner=learner, rt_priority=cfg.run.rt_priority,
                        teleop=teleop, operator=operator, demos=demos,
                        operator_episodes=operator_episodes)
    if cfg.safety.estop_file is not None:
        # The config names the e-stop file: it wins over the sim graph's per-run default.
        for spec in nodes:
            spec.parameters.pop("safety.estop_file", None)
    graph_nodes = None
    if roles is not None:
        graph_nodes = list(nodes)
        roles = list(roles)
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ValueError(f"--only: unknown roles {unknown}; expected some of {list(ROLES)}")
        nodes = [s for s in nodes if s.role in roles]
        if not nodes:
            raise ValueError(f"--only {','.join(roles)}: the {kind} graph has no such node")
    return RunPlan(kind, cfg, rd, nodes, n, ns, resume, graph_nodes)


def write_run_files(plan: RunPlan, argv: Sequence[str] | None = None) -> None:
    """``config.yaml``, ``provenance.json`` and ``graph/*.yaml`` of ``plan`` (see the module doc).

    On resume a ``config.yaml`` that differs from the new one is kept as
    ``config.previous.yaml``.
    """
    from robot_rl import provenance as prov

    rd = plan.run_dir
    (rd / "graph").mkdir(parents=True, exist_ok=True)
    (rd / "logs").mkdir(parents=True, exist_ok=True)
    sim_estop_files(plan.nodes)  # sim robots start released (a missing file means latched)
    text = plan.cfg.to_yaml()
    if plan.config_file.exists() and plan.config_file.read_text() != text:
        plan.config_file.replace(rd / "config.previous.yaml")
    plan.config_file.write_text(text)
    for spec in plan.nodes:
        plan.params_file(spec).write_text(
            yaml.safe_dump(spec.params_yaml(), sort_keys=False, default_flow_style=False))
    record = {
        **prov.provenance(),
        "command": list(argv if argv is not None else sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "graph": plan.kind, "resumed": plan.resume, "robots": plan.num_robots,
        "ros_domain_id": os.environ.get("ROS_DOMAIN_ID", "0"),
        "nodes": [{"name": s.fully_qualified_name, "role": s.role, "executable": s.executable,
                   "nice": s.nice, "parameters": s.parameters} for s in plan.nodes],
    }
    tmp = rd / ".provenance.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(rd / "provenance.json")


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        key = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, key + ".")
        elif a != b:
            out.append(key)
    return out


def parse_flag(text: str, name: str) -> bool:
    """A launch argument's boolean: true/false (also 1/0, yes/no, on/off)."""
    t = str(text).strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name}: expected true or false, got {text!r}")


def launch_nodes(plan: RunPlan) -> list:
    """``launch_ros.actions.Node`` for each node of ``plan`` (for ``ros2 launch``; imports
    launch and launch_ros, which only a ROS 2 install has).

    Parameters go in as the same ``graph/<node>.yaml`` files the runner passes (write them
    first with :func:`write_run_files`), not as dicts: launch_ros re-reads every string value
    of a parameter dict as YAML, so ``config_file: ''`` or ``robot_namespaces: ['']`` would be
    refused there. A node that exits shuts the launch down: nothing restarts silently.
    """
    from launch.actions import Shutdown
    from launch_ros.actions import Node

    out = []
    for spec in plan.nodes:
        kwargs: dict[str, Any] = dict(
            package=spec.package, executable=spec.executable, name=spec.name,
            parameters=[str(plan.params_file(spec))], output="screen",
            on_exit=Shutdown(reason=f"{spec.fully_qualified_name} exited (robot_rl restarts "
                             "nothing)"))
        if spec.namespace:
            kwargs["namespace"] = spec.namespace
        prefix = []
        if spec.nice:
            prefix.append(f"nice -n {int(spec.nice)}")
        if spec.rt_priority:
            prefix.append(f"chrt -f {int(spec.rt_priority)}")
        if prefix:
            kwargs["prefix"] = " ".join(prefix)
        out.append(Node(**kwargs))
    return out


# --------------------------------------------------------------------------- progress


def _number(v: Any) -> float | None:
    """A finite float from a diagnostic value, else None (malformed values are ignored)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt_count(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:.0f}%"


@dataclass
class _Status:
    time: float
    level: int
    message: str
    values: dict[str, str]


@dataclass
class Progress:
    """The latest ``/diagnostics`` status of every node of the graph, summed up.

    ``update(name, values)`` takes one ``DiagnosticStatus`` (its ``name`` is the node's fully
    qualified name, optionally followed by ``": what"``); statuses of nodes outside the graph
    are ignored. Missing keys read as None ('-' in the line).

    ``nodes`` is the whole graph, also where this machine runs only part of it (``up --only``:
    ``/diagnostics`` is shared by every host on the ``ROS_DOMAIN_ID``, so each host's line sums
    up the whole graph). With ``others`` it also counts the robot_rl nodes it hears that are
    not in ``nodes`` -- the other hosts' part of a split graph is described by their command
    lines, not this one's (e.g. more robots): a node counts when its status names its role
    (``role``) or its name is one of the graph's node names (``actor_node`` -> actor).
    """

    nodes: Sequence[NodeSpec]
    stale_after: float = 5.0  #: s without a status before a node counts as silent
    clock: Callable[[], float] = time.monotonic
    latest: dict[str, _Status] = field(default_factory=dict)
    others: bool = False

    def __post_init__(self) -> None:
        self.roles = {s.fully_qualified_name: s.role for s in self.nodes}
        self.expected = frozenset(self.roles)  #: the graph's nodes (heard ones come on top)
        self._role_of_name = {s.name: s.role for s in self.nodes}
        self._updates_seen: list[tuple[float, float]] = []

    def _heard_role(self, fqn: str, values: dict[str, Any]) -> str | None:
        role = str(values.get("role", ""))
        if role in ROLES:
            return role
        return self._role_of_name.get(fqn.rsplit("/", 1)[-1])

    def update(self, name: str, values: dict[str, Any], level: int = 0, message: str = "") -> bool:
        fqn = str(name).split(":", 1)[0].strip()
        if fqn not in self.roles:
            role = self._heard_role(fqn, values) if self.others and fqn.startswith("/") else None
            if role is None:
                return False
            self.roles[fqn] = role
        if isinstance(level, (bytes, bytearray)):  # DiagnosticStatus.level is a byte
            level = level[0] if level else 0
        lvl = _number(level)
        self.latest[fqn] = _Status(self.clock(), int(lvl) if lvl is not None else 0,
                                   str(message), {str(k): str(v) for k, v in values.items()})
        return True

    def _values(self, role: str, key: str) -> list[float]:
        out = []
        for fqn, st in self.latest.items():
            if self.roles[fqn] == role and key in st.values:
                x = _number(st.values[key])
                if x is not None:
                    out.append(x)
        return out

    def _sum(self, role: str, key: str) -> float | None:
        xs = self._values(role, key)
        return sum(xs) if xs else None

    def _mean(self, role: str, key: str) -> float | None:
        xs = self._values(role, key)
        return sum(xs) / len(xs) if xs else None

    def _first(self, role: str, key: str) -> float | None:
        xs = self._values(role, key)
        return xs[0] if xs else None

    def _utd(self) -> tuple[float | None, float | None, dict[int, float | None], bool]:
        """The learner's achieved UTD, its configured ratio, per robot id (updates per env step
        of that robot), and whether it says it falls behind."""
        for fqn, st in self.latest.items():
            if self.roles[fqn] != "learner" or "utd_ratio" not in st.values:
                continue
            robots = {}
            for k, v in st.values.items():
                if k.startswith("utd.robot_") and k[len("utd.robot_"):].isdigit():
                    robots[int(k[len("utd.robot_"):])] = _number(v)
            return (_number(st.values.get("utd")), _number(st.values["utd_ratio"]),
                    dict(sorted(robots.items())),
                    st.values.get("utd_behind", "").lower() == "true")
        return None, None, {}, False

    def summary(self) -> dict[str, Any]:
        """The numbers of the progress line (None where no node reported them)."""
        events = brakes = None
        for fqn, st in self.latest.items():
            if self.roles[fqn] != "safety":
                continue
            for k, v in st.values.items():
                if k.startswith("count.") and k.lower() != "count.none":
                    x = _number(v)
                    if x is not None:
                        events = (events or 0.0) + x
                        if k[len("count."):].upper() in BRAKING_RULES:
                            brakes = (brakes or 0.0) + x
        if events is not None and brakes is None:
            brakes = 0.0
        updates = self._first("learner", "updates")
        rate = self._first("learner", "updates_per_s")
        if updates is not None:  # fall back on the change of `updates` over the last ~10 s
            now = self.clock()
            self._updates_seen = [(t, u) for t, u in self._updates_seen if now - t <= 10.0]
            if not self._updates_seen or self._updates_seen[-1][1] != updates:
                self._updates_seen.append((now, updates))
            if rate is None and len(self._updates_seen) >= 2:
                (t0, u0), (t1, u1) = self._updates_seen[0], self._updates_seen[-1]
                rate = (u1 - u0) / (t1 - t0) if t1 > t0 else None
        now = self.clock()
        reporting = [f for f, st in self.latest.items() if now - st.time <= self.stale_after]
        latched = sorted(f for f, st in self.latest.items() if self.roles[f] == "safety"
                         and st.values.get("estop_latched", "").lower() == "true")
        utd, utd_ratio, utd_robots, utd_behind = self._utd()
        return {
            "env_steps": self._sum("actor", "env_steps"),
            "episodes": self._sum("actor", "episodes"),
            "success_rate": self._mean("actor", "success_rate"),
            "updates": updates,
            "updates_per_s": rate,
            "utd": utd,
            "utd_ratio": utd_ratio,
            "utd_robots": utd_robots,
            "utd_behind": utd_behind,
            "policy_version": self._first("learner", "policy_version"),
            "replay_rows": self._first("replay", "rows"),
            "demo_episodes": self._first("replay", "demo_episodes"),
            "safety_events": events,
            "safety_brakes": brakes,
            "safety_clamps": None if events is None else events - (brakes or 0.0),
            "eval_success_rate": self._first("learner", "eval_success_rate"),
            "reporting": len(reporting),
            "nodes": len(self.roles),
            "silent": sorted(set(self.roles) - set(reporting)),
            "estop_latched": latched,
        }

    def line(self, elapsed: float) -> str:
        s = self.summary()
        rate = "" if s["updates_per_s"] is None else f" ({s['updates_per_s']:,.1f}/s)"
        policy = "-" if s["policy_version"] is None else f"v{_fmt_count(s['policy_version'])}"
        parts = [
            f"[{elapsed:7.1f} s] env steps {_fmt_count(s['env_steps'])}",
            f"episodes {_fmt_count(s['episodes'])}",
            f"success {_fmt_rate(s['success_rate'])}",
            f"updates {_fmt_count(s['updates'])}{rate}",
            f"policy {policy}",
            f"replay rows {_fmt_count(s['replay_rows'])}",
            f"safety {_fmt_count(s['safety_clamps'])} clamps / "
            f"{_fmt_count(s['safety_brakes'])} brakes",
            f"eval success {_fmt_rate(s['eval_success_rate'])}",
            f"nodes {s['reporting']}/{s['nodes']}",
        ]
        if s["utd_ratio"] is not None:  # the learner reports the UTD it achieves
            utd = "-" if s["utd"] is None else f"{s['utd']:.2f}"
            text = f"UTD {utd} of {s['utd_ratio']:g}"
            if len(s["utd_robots"]) > 1:
                text += " (" + ", ".join(f"robot_{r} {'-' if u is None else f'{u:.2f}'}"
                                         for r, u in s["utd_robots"].items()) + ")"
            if s["utd_behind"]:
                text += " BEHIND"
            parts.insert(4, text)
        if s["demo_episodes"]:
            parts.insert(2, f"demo episodes stored {_fmt_count(s['demo_episodes'])}")
        if s["estop_latched"]:
            parts.append(f"E-STOP LATCHED: {', '.join(s['estop_latched'])}")
        return " | ".join(parts)


class DiagnosticsListener:
    """An rclpy node (own context, no signal handlers) feeding ``/diagnostics`` to a callback.

    Spins on a daemon thread; :meth:`close` stops it. Raises ImportError without rclpy.
    """

    def __init__(self, callback: Callable[[str, dict[str, str], int, str], Any],
                 topic: str = DIAGNOSTICS_TOPIC) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._callback = callback
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"robot_rl_runner_{os.getpid()}", context=self.context,
                                      start_parameter_services=False)
        self.node.create_subscription(DiagnosticArray, topic, self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="diagnostics", daemon=True)
        self._thread.start()

    def _on_diagnostics(self, msg) -> None:
        for st in msg.status:
            try:
                self._callback(st.name, {kv.key: kv.value for kv in st.values}, st.level,
                               st.message)
            except Exception:  # noqa: BLE001 - a malformed status must not end the monitor
                continue

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:  # noqa: BLE001 - shutdown races
                if self._stop.is_set():
                    return
                time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.executor.shutdown(timeout_sec=1)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.context.shutdown()


# --------------------------------------------------------------------------- processes


def _child_setup(nice: int, rt_priority: int = 0) -> Callable[[], None]:
    """``preexec_fn`` of a node: niceness or SCHED_FIFO priority (inherited by every thread the
    node starts later), and SIGTERM when the runner dies (Linux). A refused real-time priority
    leaves the node on normal scheduling; the runner checks and says so."""

    def setup() -> None:
        if nice:
            os.nice(nice)
        if rt_priority:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
            except (OSError, AttributeError):
                pass
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return setup


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path
    started: float
    stop_result: str = ""
    log_offset: int = 0  #: where this start's output begins in the (appended) log

    @property
    def name(self) -> str:
        return self.spec.fully_qualified_name

    def exited(self) -> bool:
        """Has it exited? Does not reap it, so its pid (= its process group) stays reserved."""
        if self.popen.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> int:
        if self.popen.returncode is None:
            # Exited but not reaped: its pid still names the group (no reuse possible), so
            # this reaches only stragglers of that group.
            self.signal_group(signal.SIGKILL)
            self.popen.wait()
        return self.popen.returncode


class _LogEcho(threading.Thread):
    """``--verbose``: follows every node's log and echoes new lines as ``[node] line``."""

    def __init__(self, children: Sequence[Child], out: TextIO) -> None:
        super().__init__(name="log-echo", daemon=True)
        self.out = out
        self.files = []
        for c in children:
            f = open(c.log_path, "r", errors="replace")
            f.seek(c.log_offset)
            self.files.append((c.name, f))
        self.stop_event = threading.Event()

    def run(self) -> None:
        while True:
            stopping = self.stop_event.is_set()
            for name, f in self.files:
                for line in f.readlines():
                    self.out.write(f"[{name}] {line.rstrip()}\n")
            self.out.flush()
            if stopping:
                break
            self.stop_event.wait(0.2)
        for _, f in self.files:
            f.close()


class Runner:
    """Starts :attr:`RunPlan.nodes` as processes, prints progress, stops them (see module doc)."""

    def __init__(self, plan: RunPlan, *, until_success: float | None = None,
                 max_env_steps: int | None = None, max_time: float | None = None,
                 max_demo_episodes: int | None = None, progress_every: float = 2.0, stop_timeout: float = 10.0,
                 verbose: bool = False, monitor: bool = True, out: TextIO | None = None,
                 argv: Sequence[str] | None = None, domain_check: float = 4.0) -> None:
        if until_success is not None and not 0.0 < until_success <= 1.0:
            raise ValueError(f"--until-success: expected a success rate in (0, 1], got "
                             f"{until_success}")
        if max_env_steps is not None and max_env_steps < 1:
            raise ValueError(f"--max-env-steps: expected >= 1, got {max_env_steps}")
        if max_demo_episodes is not None and max_demo_episodes < 1:
            raise ValueError(f"--max-demo-episodes: expected >= 1, got {max_demo_episodes}")
        if max_time is not None and not max_time > 0:
            raise ValueError(f"--max-time: expected seconds > 0, got {max_time}")
        if progress_every <= 0:
            raise ValueError(f"progress period: expected seconds > 0, got {progress_every}")
        if not domain_check >= 0:
            raise ValueError(f"--domain-check: expected seconds >= 0, got {domain_check}")
        roles = {s.role for s in plan.nodes}
        if until_success is not None and "learner" not in roles:
            raise ValueError("--until-success: the run has no learner node (it reports "
                             "eval_success_rate); drop --no-learner or --until-success")
        if max_env_steps is not None and "actor" not in roles:
            raise ValueError("--max-env-steps: the run has no actor node (actors report "
                             "env_steps)")
        if max_demo_episodes is not None and "replay" not in roles:
            raise ValueError("--max-demo-episodes: the run has no replay node (it counts the "
                             "demo episodes it stores)")
        self.plan = plan
        self.max_demo_episodes = max_demo_episodes
        self.until_success = until_success
        self.max_env_steps = max_env_steps
        self.max_time = max_time
        self.progress_every = progress_every
        self.stop_timeout = stop_timeout
        self.verbose = verbose
        self.want_monitor = monitor
        self.domain_check = domain_check
        self.out = out or sys.stdout
        self.argv = argv
        # The whole graph, also on a host that runs only part of it (--only).
        self.progress = Progress(plan.graph, others=plan.split)
        self._lock = threading.Lock()
        self.children: list[Child] = []
        self._signals: list[int] = []

    # -- output ---------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- the run --------------------------------------------------------------------------

    def run(self) -> int:
        """Prepare, start, watch, stop. Returns the exit status (0: a stop condition was met;
        130 / 143: stopped by SIGINT / SIGTERM; 1: a node failed)."""
        plan = self.plan
        clash = self._domain_clash()
        if clash:
            domain = os.environ.get("ROS_DOMAIN_ID", "0")
            self.say(
                f"robot-rl up: ROS_DOMAIN_ID={domain} already has {', '.join(clash)} (another "
                "graph is running there). Two graphs on one domain exchange joint states, "
                "commands and transitions: its data would end up in this run's store and the "
                "other way round. Stop the other graph, or give this run its own domain, e.g. "
                f"ROS_DOMAIN_ID={(int(domain) + 1) % 233 if domain.isdigit() else 1} "
                "robot-rl up ... Nothing was started or written.")
            return EXIT_DOMAIN_IN_USE
        if plan.resume and plan.config_file.exists():
            try:
                old = yaml.safe_load(plan.config_file.read_text()) or {}
                diff = config_differences(old, plan.cfg.model_dump(mode="json"))
            except (OSError, yaml.YAMLError):
                diff = ["(unreadable old config.yaml)"]
            if diff:
                self.say(f"note: resuming with a changed configuration: {', '.join(diff)} "
                         "(old one kept as config.previous.yaml)")
        write_run_files(plan, self.argv)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for s in previous:
                signal.signal(s, self._on_signal)
        listener = echo = failed = None
        reason = "runner error"
        t0 = time.monotonic()
        try:
            self.say(f"robot-rl up {plan.kind}: {len(plan.nodes)} node(s), {plan.num_robots} "
                     f"robot(s), run {plan.run_dir} (ROS_DOMAIN_ID="
                     f"{os.environ.get('ROS_DOMAIN_ID', '0')})")
            failed = self._start_all()
            # Threads only after every fork (preexec_fn is unsafe beside running threads).
            if failed is None:
                listener = self._start_monitor()
                if self.verbose:
                    echo = _LogEcho(self.children, self.out)
                    echo.start()
                reason, failed = self._watch(t0, listener is not None)
            else:
                reason = "a node failed to start"
        finally:
            # Whatever happened above (an error in the runner included), no node outlives it.
            self.say(f"stopping ({reason}) ...")
            self._stop_all()
            if echo is not None:
                echo.stop_event.set()
                echo.join(timeout=5)
            if listener is not None:
                if self.children:
                    self.say(self.progress.line(time.monotonic() - t0))
                listener.close()
            if in_main:
                for s, h in previous.items():
                    signal.signal(s, h)
        self._report(failed)
        if failed is not None:
            return EXIT_NODE_FAILED
        if self._signals:
            return 128 + self._signals[0]
        return 0

    def _domain_clash(self) -> list[str]:
        """Nodes of this plan's names already on the ROS domain (``domain_check`` s of
        discovery in a probe process; 0 skips the check). A probe that cannot run (no rclpy,
        no DDS) is reported and the run goes on: the nodes will say what is wrong."""
        if self.domain_check <= 0:
            return []
        names = [s.fully_qualified_name for s in self.plan.nodes]
        try:
            res = subprocess.run([sys.executable, "-c", _DOMAIN_PROBE, str(self.domain_check),
                                  *names], capture_output=True, text=True,
                                 timeout=self.domain_check + 60, env=self._env(),
                                 stdin=subprocess.DEVNULL)
            seen = set(json.loads(res.stdout.strip().splitlines()[-1]))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            self.say(f"note: could not list the nodes already on this ROS domain "
                     f"({type(e).__name__}); starting anyway")
            return []
        return [n for n in names if n in seen]

    def _on_signal(self, signum, _frame) -> None:
        # No printing here: the handler may interrupt a write to the same stream.
        self._signals.append(signum)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _start_all(self) -> Child | None:
        env = self._env()
        for spec in self.plan.nodes:
            if self._signals:
                return None
            log_path = self.plan.log_file(spec)
            cmd = self.plan.command(spec)
            with open(log_path, "ab") as log:
                log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} robot-rl up: "
                          f"{shlex.join(cmd)} (nice {spec.nice})\n".encode())
                log.flush()
                offset = log.tell()
                try:
                    popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True,
                                             preexec_fn=_child_setup(spec.nice,
                                                                     spec.rt_priority))
                except OSError as e:
                    self.say(f"robot-rl up: cannot start {spec.fully_qualified_name}: {e}")
                    return Child(spec, _FailedPopen(), log_path, time.monotonic())
            child = Child(spec, popen, log_path, time.monotonic(), log_offset=offset)
            self.children.append(child)
            nice = f", nice {spec.nice}" if spec.nice else ""
            if spec.rt_priority:
                try:
                    rt = os.sched_getscheduler(popen.pid) == os.SCHED_FIFO
                except OSError:
                    rt = False
                nice += (f", SCHED_FIFO {spec.rt_priority}" if rt else
                         f", normal scheduling (SCHED_FIFO {spec.rt_priority} refused: needs "
                         "root, CAP_SYS_NICE or an rtprio limit)")
            self.say(f"  started {child.name:<28} pid {popen.pid}{nice}, log {log_path}")
        return None

    def _start_monitor(self) -> DiagnosticsListener | None:
        if not self.want_monitor:
            return None
        try:
            return DiagnosticsListener(self._on_status)
        except Exception as e:  # noqa: BLE001 - no rclpy / no DDS: run without progress
            self.say(f"note: no progress monitor ({type(e).__name__}: {e}); nodes run anyway")
            return None

    def _on_status(self, name: str, values: dict[str, str], level: int, message: str) -> None:
        with self._lock:
            self.progress.update(name, values, level, message)

    def _watch(self, t0: float, monitored: bool) -> tuple[str, Child | None]:
        next_line = t0 + self.progress_every
        while True:
            if self._signals:
                return f"{signal.Signals(self._signals[0]).name} received", None
            for c in self.children:
                if c.exited():
                    return f"{c.name} exited on its own", c
            now = time.monotonic()
            elapsed = now - t0
            if self.max_time is not None and elapsed >= self.max_time:
                return f"--max-time {self.max_time:g} s reached", None
            if monitored:
                with self._lock:
                    s = self.progress.summary()
                    line = self.progress.line(elapsed) if now >= next_line else None
                if line is not None:
                    self.say(line)
                    next_line = now + self.progress_every
                ev = s["eval_success_rate"]
                if self.until_success is not None and ev is not None and ev >= self.until_success:
                    return (f"eval success {_fmt_rate(ev)} >= --until-success "
                            f"{_fmt_rate(self.until_success)}"), None
                steps = s["env_steps"]
                if self.max_env_steps is not None and steps is not None \
                        and steps >= self.max_env_steps:
                    return f"--max-env-steps {self.max_env_steps} reached ({steps:.0f})", None
                demos = s["demo_episodes"]
                if self.max_demo_episodes is not None and demos is not None \
                        and demos >= self.max_demo_episodes:
                    return (f"--max-demo-episodes {self.max_demo_episodes} reached "
                            f"({demos:.0f} stored)"), None
            time.sleep(0.1)

    def _stop_all(self) -> None:
        """Reverse start order; SIGINT to each group, SIGKILL after ``stop_timeout``."""
        stopped_actor = announced = False
        for c in reversed(self.children):
            if c.spec.role == "safety" and stopped_actor and not c.exited() \
                    and len(self._signals) < 2:
                time.sleep(BRAKE_GRACE_S)  # the watchdogs brake the arms to zero meanwhile
                stopped_actor = False
            if c.exited():
                if not c.stop_result:
                    c.stop_result = "had already exited"
                c.reap()
                continue
            t = time.monotonic()
            if len(self._signals) >= 2 and not announced:
                self.say("second interrupt: killing the remaining nodes now")
                announced = True
            c.signal_group(signal.SIGINT if len(self._signals) < 2 else signal.SIGKILL)
            deadline = t + self.stop_timeout
            while not c.exited() and time.monotonic() < deadline and len(self._signals) < 2:
                time.sleep(0.05)
            if c.exited():
                c.stop_result = f"stopped in {time.monotonic() - t:.1f} s"
            else:
                c.stop_result = ("KILLED (second interrupt)" if len(self._signals) >= 2 else
                                 f"KILLED: still running {self.stop_timeout:g} s after SIGINT")
            c.reap()
            stopped_actor |= c.spec.role == "actor"

    def _report(self, failed: Child | None) -> None:
        plan = self.plan
        if failed is not None:
            code = failed.popen.returncode
            self.say(f"robot-rl up: node {failed.name} ({failed.spec.role}) "
                     f"{_describe_exit(code)}; the run was stopped (nothing is restarted)")
            body = tail(failed.log_path)
            self.say(f"--- last lines of {failed.log_path} ---")
            self.say("\n".join(f"  | {ln}" for ln in body.splitlines()) or "  | (empty)")
        killed = [c.name for c in self.children if c.stop_result.startswith("KILLED")]
        for c in self.children:
            self.say(f"  {c.name:<28} {_describe_exit(c.popen.returncode):<22} {c.stop_result}")
        if killed:
            self.say(f"needed SIGKILL: {', '.join(killed)}")
        rd = plan.run_dir
        self.say(f"run:          {rd}")
        self.say(f"config:       {plan.config_file}")
        self.say(f"logs:         {rd / 'logs'}")
        for label, path in (("checkpoints:", rd / "checkpoints"), ("replay store:", rd / "replay.zarr")):
            if path.exists():
                self.say(f"{label:<13} {path}")
        if (rd / "tb").exists():
            self.say(f"TensorBoard:  tensorboard --logdir {rd / 'tb'}")
        if (rd / "eval.csv").exists():
            try:
                from robot_rl.agents.trainer import plot_run

                self.say(f"learning curve: {plot_run(rd)}")
            except Exception as e:  # noqa: BLE001 - the run's report must still finish
                self.say(f"learning curve: not made ({type(e).__name__}: {e})")


class _FailedPopen:
    """Stands in for a process that could not be started (exit code 127)."""

    pid = -1
    returncode = 127

    def wait(self, timeout=None) -> int:
        return 127


# --------------------------------------------------------------------------- e-stop


def estop_services(namespaces: Sequence[str]) -> list[str]:
    """The e-stop service of each robot namespace (``/robot_0/safety/estop``, ``/safety/estop``)."""
    out = []
    for ns in namespaces:
        ns = check_namespace(ns)
        out.append(f"/{ns}/{ESTOP_SERVICE}" if ns else f"/{ESTOP_SERVICE}")
    return out


@dataclass
class EstopResult:
    service: str
    ok: bool
    message: str


def call_estop(services: Sequence[str] | None, latch: bool, *, timeout: float = 10.0,
               discover: float = 2.0) -> list[EstopResult]:
    """Call ``std_srvs/SetBool`` ``data=latch`` on each e-stop service, all at once.

    ``services`` None: every ``*/safety/estop`` service seen on the ROS graph within
    ``discover`` s, waiting up to ``timeout`` s for the first (an empty list when none). A service that does not answer within
    ``timeout`` s is reported unreachable. Calls are re-sent while unanswered (the service is
    idempotent; a fresh server's first response can be lost while DDS matches).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import SetBool

    ctx = rclpy.Context()
    rclpy.init(args=[], context=ctx)
    node = rclpy.create_node(f"robot_rl_estop_{os.getpid()}", context=ctx,
                             start_parameter_services=False)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        if services is None:
            # Look for `discover` s, and on (up to `timeout`) until at least one is seen.
            t0 = time.monotonic()
            found: set[str] = set()
            while time.monotonic() - t0 < (discover if found else max(discover, timeout)):
                ex.spin_once(timeout_sec=0.05)
                for name, types in node.get_service_names_and_types():
                    if (name == f"/{ESTOP_SERVICE}" or name.endswith(f"/{ESTOP_SERVICE}")) \
                            and "std_srvs/srv/SetBool" in types:
                        found.add(name)
            services = sorted(found)
        clients = {s: node.create_client(SetBool, s) for s in services}
        futures: dict[str, Any] = {}
        sent: dict[str, float] = {}
        results: dict[str, EstopResult] = {}
        end = time.monotonic() + timeout
        while len(results) < len(clients) and time.monotonic() < end:
            now = time.monotonic()
            for s, cl in clients.items():
                if s in results:
                    continue
                fut = futures.get(s)
                if fut is not None and fut.done():
                    r = fut.result()
                    if r is None:
                        futures.pop(s)
                    else:
                        results[s] = EstopResult(s, bool(r.success), r.message)
                        continue
                if cl.service_is_ready() and (fut is None or now - sent[s] > 2.0):
                    futures[s] = cl.call_async(SetBool.Request(data=latch))
                    sent[s] = now
            ex.spin_once(timeout_sec=0.02)
        for s in clients:
            if s not in results:
                why = ("no answer" if s in futures else "service not found")
                results[s] = EstopResult(s, False, f"unreachable: {why} within {timeout:g} s")
        return [results[s] for s in services]
    finally:
        ex.shutdown(timeout_sec=1)
        node.destroy_node()
        ctx.shutdown()
