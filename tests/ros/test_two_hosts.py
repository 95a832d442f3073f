"""Two hosts, as a lab deploys it (issue 15): the robot PC runs the sim (or the driver), the
safety nodes and the actors; the workstation runs the replay and the learner.

Two network namespaces joined by a veth pair stand in for the two machines: each has only ``lo``
and its end of the pair (``10.213.0.1/30`` on the robot PC, ``10.213.0.2/30`` on the
workstation; addresses that exist only inside these namespaces), and DDS runs over UDP only
(``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: no shared memory, which would cross the "hosts") with
``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` on the test's own ``ROS_DOMAIN_ID``. Each host runs
``robot-rl up sim --only ...`` with the same config and robots, its own run directory.

* :func:`test_two_hosts_train_over_udp` -- transitions of both robots reach the workstation's
  replay store (zarr on disk), exactly once each; the learner's weights reach the actors (the
  rows carry policy versions > 0, two or more per robot); every node runs in its host's
  namespace; the robot PC writes no store; each host's progress line shows the whole graph.
* :func:`test_partition_loses_and_duplicates_nothing` -- the link is cut for 10 s mid-run: the
  actors keep acting on the last policy and keep every unacknowledged transition in their
  outboxes; once the link is back the outboxes drain and every transition is stored exactly
  once (per (robot, actor session, seq): no duplicates, no gaps from 0 to the highest seq).

Needs root and ``ip netns`` (CI has both); otherwise the tests skip, saying why. The namespaces
(``rrl2h<pid>r`` / ``rrl2h<pid>w``) are deleted at teardown, also when a test fails; ones left by
a test process that no longer exists are deleted at the next set-up.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from robot_rl.replay import ReplayReader

pytestmark = pytest.mark.timeout(180)

BIN = Path(sys.executable).parent
ROBOT_ROLES = "sim,safety,actor"
WORKSTATION_ROLES = "replay,learner"
ROBOTS = 2
NODES = 7  # sim, 2 x (safety, actor), replay, learner
NS_PREFIX = "rrl2h"
PARTITION_S = 10.0

#: Prints, one JSON line each, every /diagnostics status and every ReplayAck it hears (run in the
#: robot PC's namespace: it hears the actors there, and the replay across the link).
_PROBE = r"""
import json, time
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from robot_rl.ros_nodes.common import ACK_QOS
from robot_rl_interfaces.msg import ReplayAck

rclpy.init()
node = rclpy.create_node("two_hosts_probe")

def on_diag(msg):
    for st in msg.status:
        print(json.dumps({"t": time.monotonic(), "node": st.name.split(":")[0].strip(),
                          "values": {kv.key: kv.value for kv in st.values}}), flush=True)

def on_ack(msg):
    print(json.dumps({"t": time.monotonic(), "ack": [int(msg.robot_id), int(msg.actor_session),
                                                    int(msg.committed_seq)]}), flush=True)

node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
node.create_subscription(ReplayAck, "/rl/replay_ack", on_ack, ACK_QOS)
print("probe ready", flush=True)
try:
    rclpy.spin(node)
except Exception:
    pass
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_stale_namespaces() -> None:
    """Namespaces of this test whose test process is gone (a run killed before teardown)."""
    res = _ip("netns", "list", check=False)
    for line in res.stdout.splitlines():
        m = re.match(rf"^({NS_PREFIX}(\d+)[rw])\b", line.strip())
        if m and not _pid_alive(int(m.group(2))):
            _ip("netns", "del", m.group(1), check=False)


@dataclass(frozen=True)
class Host:
    netns: str
    veth: str
    address: str  #: inside the namespace only


class TwoHosts:
    """Two namespaces joined by a veth pair, and the processes started in them."""

    def __init__(self, ros_process, domain: int) -> None:
        pid = os.getpid()
        self.robot = Host(f"{NS_PREFIX}{pid}r", f"rrl{pid}r", "10.213.0.1")
        self.workstation = Host(f"{NS_PREFIX}{pid}w", f"rrl{pid}w", "10.213.0.2")
        self.domain = domain
        self._ros_process = ros_process
        self.procs: list = []

    def create(self) -> None:
        r, w = self.robot, self.workstation
        for h in (r, w):
            _ip("netns", "add", h.netns)
        # The pair is made inside the robot's namespace, its peer moved to the workstation's:
        # nothing of it ever exists in the machine's own network namespace.
        _ip("-n", r.netns, "link", "add", r.veth, "type", "veth", "peer", "name", w.veth,
            "netns", w.netns)
        for h in (r, w):
            _ip("-n", h.netns, "addr", "add", f"{h.address}/30", "dev", h.veth)
            _ip("-n", h.netns, "link", "set", "lo", "up")
            _ip("-n", h.netns, "link", "set", h.veth, "up")

    def delete(self) -> None:
        for h in (self.robot, self.workstation):
            _ip("netns", "del", h.netns, check=False)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ROS_DOMAIN_ID=str(self.domain), FASTDDS_BUILTIN_TRANSPORTS="UDPv4",
                   ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET")
        return env

    def start(self, host: Host, args: list[str], name: str):
        proc = self._ros_process(["ip", "netns", "exec", host.netns, *map(str, args)],
                                 env=self.env(), name=name)
        self.procs.append(proc)
        return proc

    def up(self, host: Host, roles: str, cfg: Path, root: Path, name: str):
        return self.start(host, [BIN / "robot-rl", "up", "sim", "--config", cfg,
                                 "--robots", ROBOTS, "--only", roles, "--name", name,
                                 f"run.root={root}", "--max-time", 170,
                                 "--progress-every", 2], name=f"{name} ({host.netns})")

    def set_link(self, up: bool) -> None:
        """The robot PC's end of the pair down or up (the peer loses its carrier with it)."""
        _ip("-n", self.robot.netns, "link", "set", self.robot.veth, "up" if up else "down")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def two_hosts(ros_process, ros_domain_id):
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are Linux only")
    if os.geteuid() != 0:
        pytest.skip("two-host test: needs root to create network namespaces (ip netns)")
    if shutil.which("ip") is None:
        pytest.skip("two-host test: no `ip` command (iproute2)")
    _delete_stale_namespaces()
    hosts = TwoHosts(ros_process, ros_domain_id)
    probe = _ip("netns", "add", hosts.robot.netns, check=False)
    if probe.returncode != 0:
        pytest.skip(f"two-host test: `ip netns add` failed: {probe.stderr.strip()}")
    _ip("netns", "del", hosts.robot.netns, check=False)
    try:
        try:
            hosts.create()
        except RuntimeError as e:
            pytest.skip(f"two-host test: cannot build the veth link: {e}")
        yield hosts
    finally:
        # Processes first (an `ip netns exec` child keeps its namespace alive), then the names.
        hosts.stop_all()
        hosts.delete()


# --------------------------------------------------------------------------- helpers


def _config(tmp_path: Path) -> Path:
    """test_graph_e2e's small graph, in real time (a lab's arm; the actors act while the link is
    down), with a learner that publishes every few seconds (utd 2: 200 updates per 2.5 s)."""
    p = tmp_path / "cfg.yaml"
    p.write_text(
        "task: {action_mode: ee_velocity, max_steps: 20}\n"
        "sim: {clock: realtime}\n"
        "safety: {ee_speed_max: 0.55}\n"
        "agent: {hidden: [32, 32], batch_size: 32, warmup_steps: 100, utd_ratio: 2.0}\n"
        "replay: {flush_interval: 0.2}\n"
        "run: {eval_every: 1000000}\n")
    return p


def _started(proc) -> dict[str, int]:
    """``{node: pid}`` from a runner's ``started <node> pid <pid>`` lines."""
    return {m.group(1): int(m.group(2)) for m in
            (re.search(r"^\s+started (\S+)\s+pid (\d+)", ln) for ln in proc.lines) if m}


def _store_cols(store: Path, names=("robot_id", "actor_session", "seq", "policy_version")):
    if not (store / "commit" / "zarr.json").exists():
        return None
    r = ReplayReader(store)
    n = len(r)
    return r.read(0, n, names) if n else None


def _wait(cond, timeout: float, procs, what: str, step: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            assert p.running, f"{p.name} exited while waiting for {what}\n{p.tail(40)}"
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                         + "\n".join(p.tail(25) for p in procs))


def _check_placement(hosts: TwoHosts, robot_up, ws_up) -> None:
    """Every node of each runner runs in its host's namespace (and only the roles asked for)."""
    placed = {**{n: (p, hosts.robot.netns) for n, p in _started(robot_up).items()},
              **{n: (p, hosts.workstation.netns) for n, p in _started(ws_up).items()}}
    assert sorted(placed) == sorted([
        "/sim_robot_node", "/robot_0/safety_node", "/robot_0/actor_node", "/robot_1/safety_node",
        "/robot_1/actor_node", "/replay_node", "/learner_node"]), placed
    for node, (pid, netns) in placed.items():
        res = _ip("netns", "identify", str(pid), check=False)
        assert res.stdout.split() == [netns], (node, pid, res.stdout, res.stderr)


def _last_progress(proc) -> str:
    """The runner's newest progress line."""
    return next((ln for ln in reversed(proc.lines) if re.match(r"^\[\s*[\d.]+ s\] ", ln)), "")


def _stop_runner(proc) -> int:
    proc.popen.send_signal(signal.SIGINT)
    return proc.wait(60)


class ProbeLog:
    """The probe's JSON lines, parsed as they come."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self._seen = 0
        self.status: list[dict] = []  # {"t", "node", "values"}
        self.acks: list[tuple[float, int, int, int]] = []  # t, robot, session, committed

    def poll(self) -> "ProbeLog":
        lines = self.proc.lines
        for ln in lines[self._seen:]:
            if not ln.startswith("{"):
                continue
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if "ack" in rec:
                self.acks.append((rec["t"], *rec["ack"]))
            else:
                self.status.append(rec)
        self._seen = len(lines)
        return self

    def latest(self, node: str, before: float = float("inf"), after: float = -float("inf")):
        for rec in reversed(self.poll().status):
            if rec["node"] == node and after < rec["t"] <= before:
                return rec["values"]
        return None

    def values(self, node: str, key: str, after: float, before: float) -> list[str]:
        return [rec["values"].get(key) for rec in self.poll().status
                if rec["node"] == node and after < rec["t"] <= before]


# --------------------------------------------------------------------------- tests


def test_two_hosts_train_over_udp(two_hosts, tmp_path):
    cfg = _config(tmp_path)
    robot_root, ws_root = tmp_path / "robot_pc", tmp_path / "workstation"
    ws_up = two_hosts.up(two_hosts.workstation, WORKSTATION_ROLES, cfg, ws_root, "ws")
    robot_up = two_hosts.up(two_hosts.robot, ROBOT_ROLES, cfg, robot_root, "robot")
    store = ws_root / "ws" / "replay.zarr"
    t0 = time.monotonic()

    def trained():
        cols = _store_cols(store)
        if cols is None:
            return False
        new = [np.unique(cols["policy_version"][(cols["robot_id"] == i)
                                                & (cols["policy_version"] > 0)])
               for i in range(ROBOTS)]
        return all(len(v) >= 2 for v in new)

    _wait(trained, 140, [ws_up, robot_up],
          "rows of both robots acted with two published policies")
    t_trained = time.monotonic() - t0
    _check_placement(two_hosts, robot_up, ws_up)
    # Each host's progress line sums up the whole graph (/diagnostics crosses the link): the
    # robot PC shows the learner's policy and the replay's rows, the workstation the env steps.
    for up in (robot_up, ws_up):
        up.wait_for_line(r"env steps [1-9][\d,]* \|.*\| policy v[1-9][\d,]* \| "
                         r"replay rows [1-9][\d,]* \|.*\| nodes 7/7$", timeout=20)
    assert _stop_runner(robot_up) == 130, robot_up.tail(40)
    assert _stop_runner(ws_up) == 130, ws_up.tail(40)

    assert not (robot_root / "robot" / "replay.zarr").exists()  # the robot PC stores nothing
    r = ReplayReader(store)
    cols = r.read(0, len(r), ("robot_id", "actor_session", "seq", "policy_version", "source"))
    for i in range(ROBOTS):
        mine = cols["robot_id"] == i
        assert mine.sum() > 100
        assert len(np.unique(cols["actor_session"][mine])) == 1  # one actor start per robot
        seq = np.sort(cols["seq"][mine])
        assert np.array_equal(seq, np.arange(len(seq))), "lost or duplicated transitions"
        assert len(np.unique(cols["policy_version"][mine & (cols["policy_version"] > 0)])) >= 2
        log = (robot_root / "robot" / "logs" / f"robot_{i}_actor_node.log").read_text()
        assert re.search(r"policy version [1-9]\d* in use", log), log[-2000:]
    assert np.all(cols["source"] == 0)
    print(f"\ntwo hosts: {len(r)} rows stored on the workstation, policy versions up to "
          f"{int(cols['policy_version'].max())} acted on the robot PC; {t_trained:.0f} s from "
          "start to two versions per robot")


def test_partition_loses_and_duplicates_nothing(two_hosts, tmp_path):
    cfg = _config(tmp_path)
    robot_root, ws_root = tmp_path / "robot_pc", tmp_path / "workstation"
    actors = [f"/robot_{i}/actor_node" for i in range(ROBOTS)]
    ws_up = two_hosts.up(two_hosts.workstation, WORKSTATION_ROLES, cfg, ws_root, "ws")
    robot_up = two_hosts.up(two_hosts.robot, ROBOT_ROLES, cfg, robot_root, "robot")
    probe = ProbeLog(two_hosts.start(two_hosts.robot, [sys.executable, "-c", _PROBE],
                                     name="probe (robot PC)"))
    store = ws_root / "ws" / "replay.zarr"
    procs = [ws_up, robot_up, probe.proc]

    def warm():
        vs = [probe.latest(a) for a in actors]
        return all(v and int(v["policy_version"]) >= 1 and int(v["sent"]) >= 100 for v in vs)

    _wait(warm, 140, procs, "actors with a published policy and 100 transitions each")
    sim_pid = _started(robot_up)["/sim_robot_node"]
    frozen = False
    try:
        # ---- cut the link for PARTITION_S s
        t_down = time.monotonic()
        two_hosts.set_link(False)
        before = {a: probe.latest(a) for a in actors}
        time.sleep(2.0)  # what was in flight at the cut is committed by now
        rows_cut = len(ReplayReader(store))
        time.sleep(PARTITION_S - 2.0)
        rows_end = len(ReplayReader(store))
        t_up = time.monotonic()
        at_up = {a: probe.latest(a, before=t_up) for a in actors}
        lines_cut = [_last_progress(up) for up in (robot_up, ws_up)]
        two_hosts.set_link(True)
        down_s = t_up - t_down

        assert rows_end == rows_cut, (rows_cut, rows_end)  # nothing crossed the cut link
        # each host's line says the other host's nodes went silent
        assert lines_cut[0].endswith("| nodes 5/7") and lines_cut[1].endswith("| nodes 2/7"), \
            lines_cut
        for a in actors:
            b, u = before[a], at_up[a]
            # the actors kept acting, on the policy they had, and kept what the replay missed
            assert int(u["env_steps"]) >= int(b["env_steps"]) + 60, (a, b, u)
            assert int(u["outbox"]) >= 60, (a, u)
            late = probe.values(a, "policy_version", t_down + 2.0, t_up)
            assert late and len(set(late)) == 1, (a, late)

        # ---- drain: everything sent before the link came back is acknowledged
        sessions = {a: int(at_up[a]["session"], 16) for a in actors}
        need = {a: int(at_up[a]["sent"]) - 1 for a in actors}

        def drained():
            done = {}
            for a in actors:
                i = actors.index(a)
                hits = [t for t, r, s, c in probe.poll().acks
                        if r == i and s == sessions[a] and c >= need[a] and t > t_up]
                if not hits:
                    return None
                done[a] = min(hits) - t_up
            return done

        drain = _wait(drained, 60, procs, "the outboxes to drain after the link came back",
                      step=0.2)
        # ---- and the learner's weights reach the actors again
        v_cut = {a: int(at_up[a]["policy_version"]) for a in actors}
        _wait(lambda: all(int((probe.latest(a) or {}).get("policy_version", 0)) > v_cut[a]
                          for a in actors), 60, procs, "a new policy after the partition")

        # ---- stop the world (freeze the sim: no new states, no new steps), drain to 0, count
        os.kill(sim_pid, signal.SIGSTOP)
        frozen = True
        t_freeze = time.monotonic()

        def empty():
            vs = [probe.latest(a, after=t_freeze + 1.5) for a in actors]
            return all(v is not None and v["outbox"] == "0" for v in vs)

        _wait(empty, 60, procs, "every outbox empty after the freeze")
        time.sleep(1.5)
        final = {a: probe.latest(a) for a in actors}
        replay_final = probe.latest("/replay_node")
        cols = _store_cols(store)
    finally:
        if frozen:
            os.kill(sim_pid, signal.SIGCONT)
        two_hosts.set_link(True)
    assert _stop_runner(robot_up) == 130, robot_up.tail(40)
    assert _stop_runner(ws_up) == 130, ws_up.tail(40)

    result = {"link_down_s": round(down_s, 2), "robots": ROBOTS,
              "rows_stored": int(len(cols["seq"])),
              "rows_sent": sum(int(final[a]["sent"]) for a in actors),
              "store_rows_during_cut": rows_end - rows_cut,
              "progress_during_cut": {"robot_pc": lines_cut[0], "workstation": lines_cut[1]},
              "actors": {}}
    for i, a in enumerate(actors):
        sent = int(final[a]["sent"])
        assert final[a]["session"] == at_up[a]["session"]  # the same actor start throughout
        mine = (cols["robot_id"] == i) & (cols["actor_session"] == sessions[a])
        seq = cols["seq"][mine]
        uniq = np.unique(seq)
        duplicates = int(len(seq) - len(uniq))
        gaps = int(uniq.max() + 1 - len(uniq))
        result["actors"][a] = {
            "sent": sent, "stored": int(len(seq)), "duplicates": duplicates, "gaps": gaps,
            "sent_during_partition": int(at_up[a]["sent"]) - int(before[a]["sent"]),
            "outbox_at_link_up": int(at_up[a]["outbox"]), "resent": int(final[a]["resent"]),
            "drain_s": round(drain[a], 2)}
        assert duplicates == 0 and gaps == 0, result
        assert len(seq) == sent and int(uniq.max()) == sent - 1, result  # every one, once
    assert int(len(cols["seq"])) == sum(int(final[a]["sent"]) for a in actors), result
    result["replay_duplicates_dropped"] = int(replay_final["duplicates"])
    print("\ntwo hosts, partition: " + json.dumps(result))
