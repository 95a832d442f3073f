#!/usr/bin/env python3
"""Graph benchmark: the whole ROS 2 training graph as real processes over Fast DDS.

Prints one JSON object. Every part starts the graph of ``robot_rl.graph`` (the node list of
``robot-rl up sim`` and the launch files, through the runner's plan) with two sim robots, as
real processes on this machine, and reads what it needs from the graph itself:

* **lockstep** -- env steps/s through the whole graph in lockstep (sim -> actors -> safety
  nodes -> sim, transitions -> replay), total and per robot, from the actors' ``env_steps``
  on ``/diagnostics`` over a ``--duration`` window after a warm-up. Without the learner, and
  with the learner training flat out beside it (``learner_gate`` off, ``agent.utd_ratio`` 20:
  it never runs out of work; default 256x256 networks, batch 256, 1 thread, nice 10). Also
  with the gate on (``make sim``'s configuration: the sim waits for the learner's UTD-1
  allowance), where the env rate is the learner's update rate. With ``--rt``, the learner
  flat out once more with the control path (sim, actors, safety nodes) at SCHED_FIFO
  priority ``--rt`` (``run.rt_priority``), so the learner cannot slow the lockstep loop. Reference: raw in-process
  physics of one robot, about 3,266 steps/s here (bench/sim_steps.py).
* **latency** -- state -> command in real time (20 Hz sim): for every proposal, the time from
  the joint state it answers (``ActionProposal.stamp_ns`` is that state's stamp, set by the
  sim node when it published it) to the safety node's command for it (``AppliedCommand.stamp_ns``,
  the safety node's clock at output; same machine, same clock). p50 / p99 / p99.9 / max per
  run, without and with the learner training flat out, and both again with the control path
  (sim, actors, safety nodes) at SCHED_FIFO priority ``--rt`` (``run.rt_priority``). Watchdog
  outputs are not counted.
* **ingest** -- transitions/s over ROS into the replay node alone: a publisher process sends
  ``--ingest-rows`` valid transitions (obs 20, act 3) as fast as the replay acknowledges them
  (at most ``--ingest-window`` unacknowledged, like an actor's outbox), timed from the first
  message to the acknowledgement of the last; then the store is read back: ``lost`` and
  ``duplicated`` must be 0.

    python bench/graph.py                      # about 3-4 minutes
    python bench/graph.py --quick              # CI: seconds per part, 1 robot
    python bench/graph.py --parts lockstep,latency --duration 30

Each part runs on its own ``ROS_DOMAIN_ID`` (``--domain``, default from the environment or
a free one) with discovery on localhost only.
"""
from __future__ import annotations

import signal
import sys

# ------------------------------------------------------------------ stop signals, first of all
#
# SIGTERM, SIGINT and SIGHUP stop the bench: it stops every process it started and exits
# 128 + the signal's number (143 for SIGTERM), whatever it was doing when the signal came. The
# handler only records the signal; the bench acts on it at its own check points
# (check_stop(): every wait and sleep polls it at least every 0.2 s, and every node start).
# It used to raise SystemExit from the handler, i.e. wherever the main thread happened to be,
# and what became of that exception depended on the moment: inside rclpy's pybind11 module
# init (the import right after the graph's nodes start) it turned into "ImportError:
# initialization failed" (exit 1) or a C++ std::terminate (abort); in the middle of
# Graph.stop() it left nodes writing into the temporary directory as it was removed (exit 1);
# before the handler was installed (the imports below) the signal killed the bench outright
# (-15). The handler is installed here, before any other import; a signal during the
# interpreter's own start-up, before this line, still kills it by the default action.

#: The signals that stop the bench; it exits 128 + the number of the first one received.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_stop_signal = 0  # the first stop signal received; 0: none yet


class Stopped(BaseException):
    """Raised by :func:`check_stop` (in the bench's own code, never in a signal handler) once a
    stop signal has come. A ``BaseException``, so that no ``except Exception`` takes it."""


def _record_stop_signal(signum: int, frame: object) -> None:
    global _stop_signal
    if not _stop_signal:
        _stop_signal = signum


def check_stop() -> None:
    """Raise :class:`Stopped` if a stop signal has come."""
    if _stop_signal:
        raise Stopped(signal.Signals(_stop_signal).name)


if __name__ == "__main__":
    for _sig in STOP_SIGNALS:
        signal.signal(_sig, _record_stop_signal)

import argparse  # noqa: E402  (after the handler)
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robot_rl.runner import _child_setup  # noqa: E402  (after the path)


def _sleep(seconds: float) -> None:
    """``time.sleep`` that stops (:class:`Stopped`) within 0.1 s of a stop signal."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check_stop()
        time.sleep(min(0.1, left))
    check_stop()


# ------------------------------------------------------------------ the processes it starts

#: Every process the bench started, oldest first: stop_children() stops what is still running.
_CHILDREN: list[subprocess.Popen] = []


def _preexec(parent: int):
    """A started process's ``preexec_fn``: the default action for the stop signals (the
    bench's recording handler must not swallow PR_SET_PDEATHSIG's SIGTERM between here and
    exec), then the runner's set-up (PR_SET_PDEATHSIG), then: had the bench already died
    before PR_SET_PDEATHSIG was set, no signal will come, so exit now."""
    setup = _child_setup(0)

    def preexec() -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        setup()
        if os.getppid() != parent:
            os._exit(128 + signal.SIGTERM)

    return preexec


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start ``cmd`` in its own session (process group), dying with the bench, and remember it
    for :func:`stop_children`. Nothing starts once a stop signal has come."""
    check_stop()
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_preexec(os.getpid()),
                            **kwargs)
    _CHILDREN.append(proc)
    return proc


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop_processes(procs: list[subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGINT to each process group still running (last started first), SIGKILL to whatever
    is left after ``timeout`` s; returns when all have exited. Never raises :class:`Stopped`
    (the handler does not raise): a stop signal now does not cut a stop short."""
    live = [p for p in reversed(procs) if p.poll() is None]
    for p in live:
        _killpg(p, signal.SIGINT)
    end = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            _killpg(p, signal.SIGKILL)
            p.wait()


def stop_children() -> None:
    """Stop every process the bench started that is still running."""
    stop_processes(_CHILDREN)


def _meta() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "git_commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_avg_1m_start": os.getloadavg()[0]}


# --------------------------------------------------------------------------- graph processes


_RT_ALLOWED: bool | None = None


def _rt_allowed() -> bool:
    """Whether this process may start children at SCHED_FIFO (asked once, with ``chrt``)."""
    global _RT_ALLOWED
    if _RT_ALLOWED is None:
        try:
            _RT_ALLOWED = subprocess.run(["chrt", "-f", "1", "true"], capture_output=True,
                                         timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _RT_ALLOWED = False
    return _RT_ALLOWED


class Graph:
    """The sim graph's nodes as processes, started from the runner's plan."""

    def __init__(self, root: Path, name: str, overrides: list[str], *, robots: int,
                 learner: bool, gate: bool = False, learner_params: dict | None = None,
                 resume: bool = False):
        from robot_rl.config import load_config
        from robot_rl.runner import plan_run, write_run_files

        cfg = load_config(None, overrides + [f"run.root={root}", f"run.name={name}"])
        # resume: the run directory already holds a run (demos recorded into it first)
        self.plan = plan_run("sim", cfg, robots=robots, learner=learner, resume=resume)
        for spec in self.plan.nodes:
            if spec.role == "sim":
                spec.parameters["learner_gate"] = bool(gate and learner)
            if spec.role == "learner" and learner_params:
                spec.parameters.update(learner_params)
        write_run_files(self.plan, sys.argv)
        self.procs: list[tuple[Any, subprocess.Popen]] = []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for spec in self.plan.nodes:
            log = open(self.plan.log_file(spec), "a")
            cmd = self.plan.command(spec)
            if spec.nice:
                cmd = ["nice", "-n", str(spec.nice)] + cmd
            if spec.rt_priority and _rt_allowed():
                cmd = ["chrt", "-f", str(spec.rt_priority)] + cmd
            elif spec.rt_priority:  # as the runner does: normal scheduling, said in the log
                log.write(f"# SCHED_FIFO {spec.rt_priority} refused by this kernel (needs root, "
                          f"CAP_SYS_NICE or an rtprio limit): normal scheduling\n")
                log.flush()
            # PR_SET_PDEATHSIG: a node dies with the bench (a killed bench left the graph
            # running, at SCHED_FIFO in the --rt cases)
            self.procs.append((spec, spawn(cmd, stdout=log, stderr=subprocess.STDOUT,
                                           env=env)))

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds each node's process has used so far, by node name."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for spec, p in self.procs:
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[spec.fully_qualified_name] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                out[spec.fully_qualified_name] = float("nan")
        return out

    def check_alive(self) -> None:
        for spec, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{spec.fully_qualified_name} exited ({p.returncode}); see "
                                   f"{self.plan.log_file(spec)}")

    def stop(self) -> None:
        stop_processes([p for _, p in self.procs])


class Probe:
    """Reads /diagnostics and (optionally) every robot's proposals and applied commands."""

    def __init__(self, namespaces: list[str], latency: bool):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("graph_bench_probe", context=self.ctx)
        self.status: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 100)
        self.proposals: dict[tuple[str, int], int] = {}
        self.latencies: dict[str, list[float]] = {ns: [] for ns in namespaces}
        self.watchdog_outputs = 0
        self.recording = False
        if latency:
            from robot_rl.safety import Rule
            from robot_rl_interfaces.msg import ActionProposal, AppliedCommand

            self._wd = int(Rule.WATCHDOG)
            for ns in namespaces:
                pre = f"/{ns}" if ns else ""
                self.node.create_subscription(
                    ActionProposal, f"{pre}/rl/action_proposal",
                    lambda m, ns=ns: self._proposal(ns, m), 100)
                self.node.create_subscription(
                    AppliedCommand, f"{pre}/safety/applied",
                    lambda m, ns=ns: self._applied(ns, m), 100)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _diag(self, msg):
        with self.lock:
            for st in msg.status:
                self.status[st.name.split(":")[0]] = {kv.key: kv.value for kv in st.values}

    def _proposal(self, ns, m):
        self.proposals[(ns, m.seq)] = m.stamp_ns

    def _applied(self, ns, m):
        t = self.proposals.pop((ns, m.proposal_seq), None)
        if t is None:
            return  # a later output for the same proposal, or one we did not see
        if m.rules_fired & self._wd:
            self.watchdog_outputs += 1
            return
        if self.recording:
            self.latencies[ns].append((m.stamp_ns - t) * 1e-6)

    def values(self, key: str, prefix: str) -> dict[str, float]:
        with self.lock:
            out = {}
            for name, v in self.status.items():
                if name.endswith(prefix) and key in v:
                    try:
                        out[name] = float(v[key])
                    except ValueError:
                        pass
            return out

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.node.destroy_node()
        self.ctx.try_shutdown()


def _wait(cond, timeout: float, graph: Graph, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        check_stop()
        graph.check_alive()
        if cond():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _wait_running(graph: Graph, probe: Probe, robots: int, learner: bool) -> None:
    """Until every actor made a step (and the learner, if any, an update)."""
    _wait(lambda: len(probe.values("env_steps", "actor_node")) == robots and
          min(probe.values("env_steps", "actor_node").values()) > 0, 120, graph, "actors")
    if learner:
        _wait(lambda: probe.values("updates", "learner_node").get("/learner_node", 0) > 0,
              120, graph, "the learner to train")


def _namespaces(robots: int) -> list[str]:
    return [""] if robots == 1 else [f"robot_{i}" for i in range(robots)]


BASE = ["task.action_mode=ee_velocity", "safety.ee_speed_max=0.55"]


def run_lockstep(root: Path, robots: int, learner: bool, gate: bool, duration: float,
                 warmup: float, rt: int = 0) -> dict[str, Any]:
    name = f"lockstep_{'learner' if learner else 'nolearner'}{'_gated' if gate else ''}_rt{rt}"
    over = BASE + ["sim.clock=lockstep", "agent.warmup_steps=500", f"run.rt_priority={rt}"]
    if learner and not gate:
        over.append("agent.utd_ratio=20")
    g = Graph(root, name, over, robots=robots, learner=learner, gate=gate)
    probe = None
    try:
        probe = Probe(_namespaces(robots), latency=False)
        _wait_running(g, probe, robots, learner)
        _sleep(warmup)
        s0, t0 = probe.values("env_steps", "actor_node"), time.monotonic()
        u0 = probe.values("updates", "learner_node").get("/learner_node", 0.0)
        c0 = g.cpu_seconds()
        _sleep(duration)
        g.check_alive()
        s1, t1 = probe.values("env_steps", "actor_node"), time.monotonic()
        c1 = g.cpu_seconds()
        u1 = probe.values("updates", "learner_node").get("/learner_node", 0.0)
        per = {k: (s1[k] - s0[k]) / (t1 - t0) for k in sorted(s1)}
        steps = sum(s1[k] - s0[k] for k in s1)
        # CPU per env step, by node: less sensitive to other load than the rates (a busy
        # machine stretches the window, not the work), and it says how many cores a rate needs
        cpu = {k: c1[k] - c0[k] for k in c1}
        roles = {spec.fully_qualified_name: spec.role for spec, _ in g.procs}
        graph_cpu = sum(v for k, v in cpu.items() if roles[k] != "learner")
        return {"learner": learner, "learner_gate": gate, "rt_priority": rt, "robots": robots,
                "env_steps_per_s_total": round(sum(per.values()), 1),
                "env_steps_per_s_per_robot": {k: round(v, 1) for k, v in per.items()},
                "learner_updates_per_s": round((u1 - u0) / (t1 - t0), 1) if learner else None,
                "window_s": round(t1 - t0, 1),
                "cpu_cores_used": {k: round(v / (t1 - t0), 3) for k, v in cpu.items()},
                "cpu_ms_per_env_step": ({k: round(1e3 * v / steps, 3) for k, v in cpu.items()}
                                        if steps else None),
                "graph_cpu_ms_per_env_step": round(1e3 * graph_cpu / steps, 3) if steps else None,
                "graph_cores_for_500_steps_per_s": (round(500 * graph_cpu / steps, 2)
                                                    if steps else None)}
    finally:
        if probe is not None:
            probe.close()
        g.stop()


def run_latency(root: Path, robots: int, learner: bool, duration: float,
                warmup: float, rt: int = 0) -> dict[str, Any]:
    name = f"latency_{'learner' if learner else 'nolearner'}_rt{rt}"
    over = BASE + ["sim.clock=realtime", "agent.warmup_steps=200", "agent.utd_ratio=20",
                   f"run.rt_priority={rt}"]
    g = Graph(root, name, over, robots=robots, learner=learner)
    probe = None
    try:
        probe = Probe(_namespaces(robots), latency=True)
        _wait_running(g, probe, robots, learner)
        _sleep(warmup)
        probe.recording = True
        u0 = probe.values("updates", "learner_node").get("/learner_node", 0.0)
        t0 = time.monotonic()
        _sleep(duration)
        probe.recording = False
        g.check_alive()
        u1 = probe.values("updates", "learner_node").get("/learner_node", 0.0)
        lat = np.array([x for v in probe.latencies.values() for x in v])
        if lat.size == 0:
            raise RuntimeError("no proposal/command pairs recorded")
        q = np.percentile(lat, [50, 99, 99.9])
        return {"learner": learner, "rt_priority": rt, "robots": robots,
                "samples": int(lat.size),
                "p50_ms": round(float(q[0]), 3), "p99_ms": round(float(q[1]), 3),
                "p99_9_ms": round(float(q[2]), 3), "max_ms": round(float(lat.max()), 3),
                "mean_ms": round(float(lat.mean()), 3),
                "learner_updates_per_s": (round((u1 - u0) / (time.monotonic() - t0), 1)
                                          if learner else None)}
    finally:
        if probe is not None:
            probe.close()
        g.stop()


INGEST_PUBLISHER = r'''
import sys, time, array
import numpy as np
import rclpy
from robot_rl.ros_nodes.common import ACK_QOS, TRANSITION_QOS
from robot_rl_interfaces.msg import ReplayAck, Transition
n, window, sessions = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rclpy.init()
node = rclpy.create_node("ingest_bench_publisher")
pub = node.create_publisher(Transition, "/rl/transitions", TRANSITION_QOS)
acked = {}
node.create_subscription(ReplayAck, "/rl/replay_ack",
                         lambda m: acked.__setitem__(m.actor_session, max(acked.get(m.actor_session, -1), m.committed_seq)), ACK_QOS)
from robot_rl.config import load_config
from robot_rl.tasks import make_task
cfg = load_config(None, ["task.action_mode=ee_velocity"])
spec = make_task(cfg.task, cfg.robot).observation_spec   # valid rows only: inside the spec
rng = np.random.default_rng(0)
obs = (spec.low + (spec.high - spec.low) * rng.uniform(0.25, 0.75, (1024, spec.dim))).astype(np.float32)
act = rng.uniform(-1, 1, (1024, 3)).astype(np.float32)
def msg(s, i):
    k = i % 1024
    return Transition(observation=array.array("f", obs[k].tobytes()), action=array.array("f", act[k].tobytes()),
                      next_observation=array.array("f", obs[(k + 1) % 1024].tobytes()), reward=-0.1,
                      terminated=False, truncated=(i % 50 == 49), source=0, robot_id=s, actor_session=1000 + s,
                      seq=i, episode_id=i // 50, step_index=i % 50, stamp_ns=i, policy_version=0, safety_rules=0)
# wait for the replay's subscription
end = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
per = n // sessions
sent = [0] * sessions
t0 = time.perf_counter()
resent = 0
last_progress, last_acked = time.monotonic(), None
while min(acked.get(1000 + s, -1) for s in range(sessions)) < per - 1:
    for s in range(sessions):
        a = acked.get(1000 + s, -1)
        while sent[s] < per and sent[s] - a <= window:
            pub.publish(msg(s, sent[s])); sent[s] += 1
    rclpy.spin_once(node, timeout_sec=0.0005)
    progress = sum(acked.values())
    if progress != last_acked:
        last_acked, last_progress = progress, time.monotonic()
    elif time.monotonic() - last_progress > 2.0:   # stalled: re-send what is unacknowledged
        for s in range(sessions):
            for i in range(acked.get(1000 + s, -1) + 1, sent[s]):
                pub.publish(msg(s, i)); resent += 1
        last_progress = time.monotonic()
t1 = time.perf_counter()
print(f"RESULT {n} {t1 - t0:.6f} {resent}", flush=True)
'''


def run_ingest(root: Path, rows: int, window: int, sessions: int) -> dict[str, Any]:
    over = BASE + ["replay.flush_interval=0.1"]
    from robot_rl.config import load_config
    from robot_rl.runner import plan_run, write_run_files

    cfg = load_config(None, over + [f"run.root={root}", "run.name=ingest"])
    plan = plan_run("sim", cfg, robots=1, learner=False, roles=["replay"])
    write_run_files(plan, sys.argv)
    spec = plan.nodes[0]
    log = open(plan.log_file(spec), "a")
    replay = spawn(plan.command(spec), stdout=log, stderr=subprocess.STDOUT,
                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
    publisher = None
    try:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            publisher = spawn([sys.executable, "-c", INGEST_PUBLISHER, str(rows), str(window),
                               str(sessions)], stdout=out, stderr=err, text=True)
            end = time.monotonic() + 600
            while publisher.poll() is None:
                if time.monotonic() > end:
                    raise RuntimeError("ingest publisher: no result within 600 s")
                _sleep(0.1)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        line = next((x for x in stdout.splitlines() if x.startswith("RESULT")), None)
        if line is None:
            raise RuntimeError(f"ingest publisher failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
        _, n, secs, resent = line.split()
        n, secs, resent = int(n), float(secs), int(resent)
    finally:
        stop_processes([replay] + ([publisher] if publisher is not None else []), 30)
    from robot_rl.replay import ReplayReader

    r = ReplayReader(plan.run_dir / "replay.zarr")
    cols = r.read(0, len(r), ("actor_session", "seq"))
    per = n // sessions
    lost = dup = 0
    for s in range(sessions):
        seq = np.sort(cols["seq"][cols["actor_session"] == 1000 + s])
        u = np.unique(seq)
        dup += len(seq) - len(u)
        lost += per - len(np.intersect1d(u, np.arange(per)))
    return {"rows": per * sessions, "sessions": sessions, "window": window,
            "seconds": round(secs, 3), "transitions_per_s": round(per * sessions / secs, 1),
            "resent": resent, "lost": int(lost), "duplicated": int(dup),
            "stored_rows": len(r), "fsync": bool(cfg.replay.fsync)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI mode: seconds per part")
    ap.add_argument("--parts", default="lockstep,latency,ingest")
    ap.add_argument("--robots", type=int, default=2)
    ap.add_argument("--duration", type=float, default=20.0, help="measurement window (s)")
    ap.add_argument("--warmup", type=float, default=5.0, help="s after start-up before measuring")
    ap.add_argument("--rt", type=int, default=20,
                    help="also measure latency (with and without the learner) and lockstep "
                         "(with the learner) with the control path at this SCHED_FIFO "
                         "priority (run.rt_priority; 0: skip; needs root/CAP_SYS_NICE)")
    ap.add_argument("--ingest-rows", type=int, default=100_000)
    ap.add_argument("--ingest-window", type=int, default=20_000)
    ap.add_argument("--ingest-sessions", type=int, default=2)
    args = ap.parse_args(argv)
    if args.quick:
        args.robots, args.duration, args.warmup = 1, 3.0, 1.0
        args.ingest_rows, args.ingest_window = 4000, 2000
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"lockstep", "latency", "ingest"}
    if unknown:
        ap.error(f"--parts: unknown {sorted(unknown)}; expected lockstep, latency, ingest")
    res: dict[str, Any] = {"bench": "graph", "quick": args.quick, **_meta(),
                           "ros_domain_id": os.environ.get("ROS_DOMAIN_ID", "0")}
    with tempfile.TemporaryDirectory(prefix="robot_rl_graph_bench_") as tmp:
        root = Path(tmp)
        try:
            if "lockstep" in parts:
                cases = [(False, False, 0), (True, False, 0)] + ([] if args.quick else [
                    (True, True, 0)] + ([(False, False, args.rt), (True, False, args.rt)]
                                        if args.rt else []))
                res["lockstep"] = [run_lockstep(root, args.robots, lrn, gate, args.duration,
                                                args.warmup, rt) for lrn, gate, rt in cases]
            if "latency" in parts:
                cases = [(False, 0), (True, 0)] + ([] if args.quick or not args.rt else
                                                   [(False, args.rt), (True, args.rt)])
                res["latency"] = [run_latency(root, args.robots, lrn, args.duration,
                                              args.warmup, rt) for lrn, rt in cases]
            if "ingest" in parts:
                res["ingest"] = run_ingest(root, args.ingest_rows, args.ingest_window,
                                           args.ingest_sessions)
        finally:
            stop_children()  # before the directory they write into goes
    check_stop()
    res["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1))
    return 0


def run_script(argv=None) -> int:
    """:func:`main` as the script runs it. On every path every process the bench started is
    stopped before it returns; once a stop signal has come -- at any moment, whatever was
    raised meanwhile -- the exit status is 128 + the signal's number."""
    try:
        rc = main(argv)
    except BaseException as e:
        stop_children()
        if not _stop_signal:
            raise
        if not isinstance(e, Stopped):  # something else went wrong after the signal came
            print(f"graph bench: {type(e).__name__}: {e}", file=sys.stderr)
        rc = 1
    stop_children()
    if _stop_signal:
        print(f"graph bench: stopped by {signal.Signals(_stop_signal).name}", file=sys.stderr)
        return 128 + _stop_signal
    return rc


if __name__ == "__main__":
    sys.exit(run_script())
