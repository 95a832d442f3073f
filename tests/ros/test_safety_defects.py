"""The safety node's defects found by the black-box fuzzer of issue 15, each as a real node
process driven only through its topics and services (real DDS, real time).

1. the watchdog brakes in every clock mode while joint states keep streaming (the README
   command with ``launch/config/safety.yaml``, and lockstep);
2. bursts of proposals do not multiply the acceleration a once-per-period driver sees;
3. stale, repeated and out-of-order proposals are not actions (and are counted);
4. a proposal that answers a state beyond a position limit waits for that state (it is not
   computed against the state before it);
5. the e-stop brakes before its file write, and the service answers once it is on disk.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool

from robot_rl.config import load_config
from robot_rl.ros_nodes.safety_node import read_estop, write_estop
from robot_rl.safety import Rule, SafetyParams
from robot_rl.safety_audit import audit_outputs, audit_sampled
from robot_rl_interfaces.msg import ActionProposal, AppliedCommand

REPO = Path(__file__).resolve().parents[2]
SAFETY = str(Path(sys.executable).parent / "safety_node")
SAFETY_YAML = REPO / "launch" / "config" / "safety.yaml"
CFG = load_config(None)
JOINTS = list(CFG.robot.joint_names)
HOME = [float(x) for x in CFG.robot.home]
DT = 1.0 / CFG.sim.control_hz  # 20 Hz: proposal-triggered outputs
WD = 2 * DT  # the default watchdog timeout
J3, J7 = 2, 6
PARAMS = SafetyParams.from_config(CFG.robot, CFG.safety, control_hz=CFG.sim.control_hz)
TOL = 0.15  # s: a loaded 2-core CI machine (the figures themselves are in docs/safety.md)


def start_safety(ros_process, tmp_path, *extra: str):
    """The README's command: ``safety_node --ros-args --params-file launch/config/safety.yaml``
    (plus an e-stop file of its own, released, and ``extra`` parameters)."""
    estop = tmp_path / "estop.json"
    if not estop.exists():
        write_estop(estop, False, "test: released")
    args = [SAFETY, "--ros-args", "--params-file", str(SAFETY_YAML),
            "-p", f"safety.estop_file:={estop}"]
    for e in extra:
        args += ["-p", e]
    proc = ros_process(args, name="safety")
    proc.wait_for_line(r"safety node /safety_node .*output_hz=20 ", timeout=60)
    return proc, estop


class Driver:
    """Joint states and proposals into the node, its commands out (all in the root namespace)."""

    def __init__(self):
        self.node = rclpy.create_node("safety_driver")
        self.applied: list[tuple[float, AppliedCommand]] = []  # (wall arrival, msg)
        self.node.create_subscription(AppliedCommand, "safety/applied",
                                      lambda m: self.applied.append((time.time(), m)), 1000)
        self.diag: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.prop_pub = self.node.create_publisher(ActionProposal, "rl/action_proposal", 10)
        self.state_pub = self.node.create_publisher(JointState, "joint_states", 10)
        self.seq = 0
        self.q = list(HOME)
        self.last_state_ns = 0

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name.startswith("/safety_node"):
                self.diag = {kv.key: kv.value for kv in st.values}

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.002)

    def state(self, q=None, stamp_ns=None) -> int:
        stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
        js = JointState(name=JOINTS, position=list(self.q if q is None else q),
                        velocity=[0.0] * 7)
        js.header.stamp.sec, js.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        self.state_pub.publish(js)
        self.last_state_ns = stamp_ns
        return stamp_ns

    def propose(self, v, stamp_ns=None, seq=None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.prop_pub.publish(ActionProposal(
            seq=seq, stamp_ns=self.last_state_ns if stamp_ns is None else stamp_ns,
            velocities=[float(x) for x in v]))
        return seq

    def drive(self, seconds: float, v=None, hz: float = 20.0, each=None) -> float:
        """States at ``hz``, each answered by a proposal ``v`` (None: none) 5 ms later, or by
        ``each(k)``; returns the wall time of the last proposal."""
        t_last = None
        k = 0
        nxt = time.monotonic()
        end = nxt + seconds
        while time.monotonic() < end:
            if time.monotonic() >= nxt:
                nxt += 1.0 / hz
                self.state()
                self.spin(0.005)
                if each is not None:
                    each(k)
                    t_last = time.time()
                elif v is not None:
                    self.propose(v)
                    t_last = time.time()
                k += 1
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.002, nxt - time.monotonic())))
        return t_last

    def wait_ready(self) -> None:
        assert self.spin_until(lambda: self.prop_pub.get_subscription_count() >= 1
                               and self.state_pub.get_subscription_count() >= 1, 30)
        self.drive(0.5)  # a first state: the node starts commanding

    def spin_until(self, cond, timeout) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)
            if cond():
                return True
        return False

    def since(self, t_wall: float) -> list[AppliedCommand]:
        return [m for w, m in self.applied if m.stamp_ns * 1e-9 > t_wall]


@pytest.fixture
def driver():
    rclpy.init()
    d = Driver()
    yield d
    d.node.destroy_node()
    rclpy.shutdown()


def vec(j, x):
    v = [0.0] * 7
    v[j] = x
    return v


@pytest.mark.parametrize("clock", ["shipped", "lockstep"])
def test_watchdog_brakes_while_joint_states_keep_streaming(ros_process, driver, tmp_path, clock):
    """Defect 1: with the README command the node ran in lockstep (the config default) and
    its backstop only fired when joint states stopped: a dead actor beside a streaming driver
    was never braked. Now the shipped YAML is real time, and lockstep brakes too."""
    extra = ("sim.clock:=lockstep",) if clock == "lockstep" else ()
    safety, _ = start_safety(ros_process, tmp_path, *extra)
    driver.wait_ready()
    t_last = driver.drive(1.0, v=vec(J7, 0.5))
    driver.drive(1.0)  # states keep streaming, no proposals
    out = driver.since(t_last - 0.5)
    moving = [m for m in out if m.velocities[J7] > 0.4]
    assert moving, f"never moved: {[int(m.rules_fired) for m in out]}\n{safety.tail()}"
    wd = [m for m in out if m.rules_fired & Rule.WATCHDOG and m.stamp_ns * 1e-9 > t_last]
    assert wd, f"no WATCHDOG command after the proposals stopped\n{safety.tail()}"
    onset = wd[0].stamp_ns * 1e-9 - t_last
    assert onset <= WD + DT + TOL, onset
    # braking at the acceleration limit, one command per state, down to zero
    a7 = PARAMS.a_max[J7]
    after = [m.velocities[J7] for m in out if m.stamp_ns >= wd[0].stamp_ns]
    assert after[-1] == 0.0, after
    steps = np.diff([moving[-1].velocities[J7]] + after)
    assert (steps <= 1e-12).all() and (-steps <= a7 * DT * (1 + 1e-9)).all(), steps


@pytest.fixture
def joint_only():
    return ("safety.workspace_enabled:=false", "safety.ee_speed_max:=1000.0")


def _audit(msgs, params=PARAMS):
    t = [m.stamp_ns * 1e-9 for m in msgs]
    v = np.array([list(m.velocities) for m in msgs])
    kw = dict(dt=params.dt, v_max=params.v_max, a_max=params.a_max, j_max=params.j_max)
    return audit_outputs(t, v, **kw), audit_sampled(t, v, **kw)


def test_bursts_stay_within_the_limits_per_driver_period(ros_process, driver, tmp_path,
                                                         joint_only):
    """Defect 2: every proposal made a command at once, limited against the previous command
    as if a whole period had passed, so duplicates or three proposals within 2 ms gave a
    driver that samples once per period several periods' worth of change. Now no two commands
    leave within one period, and every period's change is within A dt."""
    start_safety(ros_process, tmp_path, *joint_only)
    driver.wait_ready()
    t0 = time.time()
    j2 = 1  # joint 2: the smallest acceleration limit (0.9 * 7.5 rad/s^2)

    def each(k):
        v = 1.0 if (k // 10) % 2 == 0 else -1.0
        if k % 3 == 0:  # the same proposal twice
            driver.propose(vec(j2, v))
            driver.propose(vec(j2, v))
        elif k % 3 == 1:  # three within 2 ms, alternating
            for x in (v, -v, v):
                driver.propose(vec(j2, x))
                time.sleep(0.0007)
        else:
            driver.propose(vec(j2, v))

    driver.drive(3.0, each=each)
    driver.spin(0.3)
    msgs = driver.since(t0)
    assert len(msgs) > 40
    assert max(abs(m.velocities[j2]) for m in msgs) > 0.5  # it did move
    per_output, sampled = _audit(msgs)
    assert per_output.total == 0, per_output.as_dict()
    assert sampled.total == 0, sampled.as_dict()


def test_stale_repeated_and_out_of_order_proposals_are_not_actions(ros_process, driver,
                                                                   tmp_path, joint_only):
    """Defect 3: proposals stamped 0.5-10 s in the past, and repeated or decreasing seq, were
    sent to the robot. Now they are counted (``rejected.*`` on /diagnostics) and ignored."""
    start_safety(ros_process, tmp_path, *joint_only)
    driver.wait_ready()
    t0 = time.time()
    bad_seqs = set()

    def each(k):
        driver.propose(vec(J7, 0.3))  # the honest stream: +0.3 rad/s on joint 7
        # (the command QoS keeps the newest message only: let the node take the honest one
        # first, or the "repeated" seq would be the first the node sees of it)
        driver.spin(0.005)
        if k % 4 == 1:  # stale: its state is 0.5 s / 10 s old
            age = 0.5 if k % 8 == 1 else 10.0
            bad_seqs.add(driver.propose(vec(J7, -2.0),
                                        stamp_ns=driver.last_state_ns - int(age * 1e9)))
        elif k % 4 == 2:  # repeated seq
            driver.propose(vec(J7, -2.0), seq=driver.seq)
        elif k % 4 == 3:  # decreasing seq
            driver.propose(vec(J7, -2.0), seq=max(driver.seq - 5, 0))

    driver.drive(2.0, each=each)
    driver.spin(0.2)
    msgs = driver.since(t0)
    assert len(msgs) > 20
    assert not bad_seqs & {int(m.proposal_seq) for m in msgs}
    assert min(m.velocities[J7] for m in msgs) >= 0.0, "a -2.0 proposal was executed"
    assert max(m.velocities[J7] for m in msgs) == 0.3  # the honest one passes bit for bit
    assert driver.spin_until(lambda: int(driver.diag.get("rejected.stale_proposal", 0)) >= 8
                             and int(driver.diag.get("rejected.out_of_order_proposal", 0)) >= 16,
                             3), driver.diag


def test_a_proposal_waits_for_the_state_it_answers(ros_process, driver, tmp_path, joint_only):
    """Defect 4 (the outward command past q_max): the proposal answering a state in which
    joint 3 is beyond its limit arrived before that state and was computed against the state
    before it, so +0.1 rad/s went out although joint 3 stood at 2.9219 > q_max. Now a proposal
    waits (``answer_wait``) for the state it answers."""
    start_safety(ros_process, tmp_path, *joint_only, "sim.clock:=realtime")
    inside = list(HOME)
    inside[J3] = 2.75  # inside q_max - margin = 2.8473, far enough to move at 0.1 rad/s
    driver.q = inside
    driver.wait_ready()
    driver.drive(0.5, v=vec(J3, 0.1))
    results = []
    for _ in range(5):
        driver.drive(0.3, v=vec(J3, 0.1))
        before = time.time()
        # the answer first, then the state it answers (joint 3 past q_max), 3 ms apart
        stamp = time.time_ns()
        seq = driver.propose(vec(J3, 0.1), stamp_ns=stamp)
        driver.spin(0.003)
        beyond = list(inside)
        beyond[J3] = 2.9219
        driver.state(beyond, stamp_ns=stamp)
        driver.spin(0.1)
        out = [m for m in driver.since(before) if m.proposal_seq == seq]
        assert out, "the proposal got no command"
        results.append((out[0].velocities[J3], out[0].state_stamp_ns == stamp,
                        int(out[0].rules_fired)))
        driver.q = inside
    assert all(v <= 0.0 and used and r & Rule.POSITION for v, used, r in results), results


SLOW_FSYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
/* A slow disk: every fsync takes SLOW_FSYNC_MS longer. */
int fsync(int fd) {
    static int (*real)(int) = 0;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *ms = getenv("SLOW_FSYNC_MS");
    long d = ms ? atol(ms) : 0;
    struct timespec ts = {d / 1000, (d % 1000) * 1000000L};
    nanosleep(&ts, 0);
    return real(fd);
}
"""
SLOW_FSYNC_MS = 400  # the fuzzer saw 374 ms from the call to zero commands


def slow_fsync_library(tmp_path: Path) -> Path:
    """An LD_PRELOAD library that delays fsync (a real slow disk, not a change to the node)."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the slow-fsync library")
    src = tmp_path / "slow_fsync.c"
    src.write_text(SLOW_FSYNC_C)
    lib = tmp_path / "slow_fsync.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    return lib


def test_estop_brakes_before_the_file_is_written(ros_process, driver, tmp_path):
    """Defect 5: the fsynced write ran inside the service callback before the latch, so the
    first braking command waited for the write (374 ms at 20 Hz on the fuzzer's machine). Now
    the latch brakes at once, the write runs on a thread, and the service answers once the
    file is on disk. The disk here is made slow (every fsync + 400 ms, LD_PRELOAD)."""
    import os

    lib = slow_fsync_library(tmp_path)
    estop = tmp_path / "estop.json"
    write_estop(estop, False, "test: released")
    env = {**os.environ, "LD_PRELOAD": str(lib), "SLOW_FSYNC_MS": str(SLOW_FSYNC_MS)}
    safety = ros_process([SAFETY, "--ros-args", "--params-file", str(SAFETY_YAML),
                          "-p", f"safety.estop_file:={estop}"], name="safety", env=env)
    safety.wait_for_line(r"safety node /safety_node .*output_hz=20 ", timeout=60)
    client = driver.node.create_client(SetBool, "safety/estop")
    assert client.wait_for_service(timeout_sec=20)
    driver.wait_ready()
    lat = []
    for trial in range(3):
        driver.drive(0.6, v=vec(J7, 0.5))
        fut = {}
        answered = {}

        def call():
            fut["f"] = client.call_async(SetBool.Request(data=True))
            fut["t"] = time.time()

        driver.drive(0.02, v=vec(J7, 0.5))
        call()
        # keep proposing (the actor does not know) while waiting for the answer
        while not fut["f"].done():
            driver.drive(0.01, v=vec(J7, 0.5))
        answered["t"] = time.time()
        assert fut["f"].result().success, fut["f"].result().message
        assert read_estop(estop)[0] is True  # on disk when the service answers
        driver.drive(0.3, v=vec(J7, 0.5))
        first = next(m for m in driver.since(fut["t"] - 0.001) if m.rules_fired & Rule.ESTOP)
        lat.append((first.stamp_ns * 1e-9 - fut["t"], answered["t"] - fut["t"]))
        # braking went out within a period, long before the (slow) write was done
        assert first.stamp_ns * 1e-9 - fut["t"] <= DT + TOL, (lat, safety.tail())
        assert answered["t"] - fut["t"] >= SLOW_FSYNC_MS * 1e-3, lat  # the disk was slow
        assert first.stamp_ns * 1e-9 < answered["t"], lat
        # and every command meanwhile is a braking one, a period apart
        during = [m for m in driver.since(first.stamp_ns * 1e-9 - 1e-6)
                  if m.stamp_ns * 1e-9 <= answered["t"]]
        assert len(during) >= 5 and all(m.rules_fired & Rule.ESTOP for m in during)
        rel = client.call_async(SetBool.Request(data=False))
        assert driver.spin_until(rel.done, 10) and rel.result().success
    print(f"\ne-stop: (first braking command, service answer) after the call [ms]: "
          f"{[(round(a * 1e3, 1), round(b * 1e3, 1)) for a, b in lat]}")

