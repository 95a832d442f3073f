#!/usr/bin/env python3
"""Black-box fuzz of the safety node: a real node process, real DDS, real time, driven only
through its topics and its e-stop service. Seeded; prints one JSON object on stdout.

The fuzzer plays the robot and the actor. Its arm *tracks* the commands it receives (joint
positions integrate them), and it streams honest joint states and 20 Hz proposals the way an
actor answers them, while it throws in adversarial input (issue 15):

* proposals: NaN / inf / 1e300 values, wrong lengths, stale stamps (0.2-10 s old), future
  stamps, repeated and decreasing ``seq``, bursts (2-8 within 2 ms), velocities beyond the
  limits, proposals sent before the state they answer;
* joint states: NaN positions, wrong lengths, shuffled / missing / duplicated / unknown joint
  names, stale, future, repeated and decreasing stamps, teleports past the position limits;
* silences (proposals stop while states stream: the watchdog), e-stop latches and releases,
  SIGKILL restarts of the node while latched, and missing / corrupt e-stop files at start.

Every ``AppliedCommand`` is checked (:mod:`robot_rl.safety_audit`):

* velocity, acceleration, jerk and spacing between consecutive commands (the node's output
  rate), and as a once-per-period driver samples them (five phases);
* position: against the state each command was computed from (``state_stamp_ns``), a joint may
  only speed up outward while it can still stop before its margin (the filter's own stopping
  distance); a command computed from an unusable state only brakes (toward zero);
* watchdog: after proposals stop, the first ``WATCHDOG`` command within ``watchdog_timeout``
  + one period (+ ``--allowance`` for scheduling on this machine) and zero no later than the
  acceleration and jerk limits allow (+ the same allowance);
* e-stop: the first ``ESTOP`` command within one period (+ allowance) of the call, every
  command ``ESTOP`` until the release, also after SIGKILL restarts, and latched at start when
  the file is missing or corrupt;
* no rejected proposal (stale, future, repeated / decreasing seq) moves the arm.

    python bench/safety_fuzz.py --mode proposal20 --messages 100000   # docs/safety.md
    python bench/safety_fuzz.py --mode timer1k --messages 100000
    python bench/safety_fuzz.py --quick                                # CI-sized, both modes
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robot_rl.config import load_config  # noqa: E402
from robot_rl.safety import Rule, SafetyParams, stopping_distance  # noqa: E402
from robot_rl.safety_audit import audit_outputs, audit_sampled  # noqa: E402

MODES = {
    # name: (safety parameters, honest joint-state rate)
    "proposal20": ({}, 20.0),
    "timer1k": ({"safety.output_hz": 1000.0}, 250.0),
}
POISON_SEQ0 = 2**40  #: the seqs of proposals that must be rejected start here
TARGET_ZERO = int(Rule.NONFINITE | Rule.BAD_LENGTH | Rule.STALE_STATE | Rule.WATCHDOG
                  | Rule.ESTOP | Rule.JOINT_ORDER)


@dataclass
class Segment:
    """One life of the node process: its commands and when they arrived."""

    commands: list = field(default_factory=list)  # (arrival wall s, AppliedCommand)


class Fuzzer:
    def __init__(self, mode: str, seed: int, workdir: Path, allowance: float, log=None):
        import rclpy
        from rclpy.experimental import EventsExecutor
        from sensor_msgs.msg import JointState
        from std_srvs.srv import SetBool

        from robot_rl_interfaces.msg import ActionProposal, AppliedCommand

        self.rclpy, self.JointState, self.SetBool = rclpy, JointState, SetBool
        self.ActionProposal = ActionProposal
        self.mode = mode
        self.params_extra, self.state_hz = MODES[mode]
        self.rng = random.Random(seed)
        self.nrng = np.random.default_rng(seed)
        self.workdir = workdir
        self.allowance = allowance
        self.log = log or (lambda *a: None)
        self.cfg = load_config(None)
        self.profile = self.cfg.robot
        self.names = list(self.profile.joint_names)
        self.n = len(self.names)
        hz = self.params_extra.get("safety.output_hz")
        scfg = self.cfg.safety.model_copy(update={"output_hz": hz}) if hz else self.cfg.safety
        self.p = SafetyParams.from_config(self.profile, scfg, control_hz=self.cfg.sim.control_hz)
        self.dt = self.p.dt
        self.wd = self.p.watchdog_timeout
        self.q_min = np.asarray(self.profile.limits.q_min, float)
        self.q_max = np.asarray(self.profile.limits.q_max, float)
        self.home = np.asarray(self.profile.home, float)
        self.estop_file = workdir / "estop.json"
        self.node = rclpy.create_node("safety_fuzzer")
        self.ex = EventsExecutor()
        self.ex.add_node(self.node)
        self.segments: list[Segment] = [Segment()]
        self.node.create_subscription(AppliedCommand, "safety/applied", self._on_applied, 10000)
        self.prop_pub = self.node.create_publisher(ActionProposal, "rl/action_proposal", 100)
        self.state_pub = self.node.create_publisher(JointState, "joint_states", 100)
        self.estop_cli = self.node.create_client(SetBool, "safety/estop")
        # the robot the fuzzer plays
        self.q = self.home.copy()
        self.v = np.zeros(self.n)  # the newest command received
        self.t_q = time.monotonic()
        self.seq = 0
        self.honest_seq = 0  # the newest honest proposal's seq
        self.t_last_prop = 0.0  # when it was sent (wall s)
        self.last_stamp = 0  # newest honest state stamp
        self.states: dict[int, np.ndarray | None] = {}  # stamp -> q (None: unusable)
        self.sent = {"proposals": 0, "states": 0, "adversarial": 0}
        self.poison_seqs: set[int] = set()  # seqs only rejected proposals carry
        self._poison = 0
        self.events: list[tuple] = []  # (kind, wall time, extra) for the timing checks
        self.proc = None
        self.restarts = 0

    # -- the node ------------------------------------------------------------------------

    def start_node(self, expect_latched: bool | None = None) -> None:
        args = [sys.executable, "-m", "robot_rl.ros_nodes.safety_node", "--ros-args",
                "--params-file", str(ROOT / "launch" / "config" / "safety.yaml"),
                "-p", f"safety.estop_file:={self.estop_file}"]
        for k, v in self.params_extra.items():
            args += ["-p", f"{k}:={v}"]
        logf = open(self.workdir / f"safety_{self.restarts}.log", "w")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.restarts += 1
        end = time.monotonic() + 60
        while time.monotonic() < end:
            txt = (self.workdir / f"safety_{self.restarts - 1}.log").read_text()
            if "safety node /safety_node" in txt:
                if expect_latched is not None:
                    latched = "estop=latched" in txt
                    self.events.append(("start_latched", time.time(), latched, expect_latched))
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"safety node exited {self.proc.returncode}:\n{txt}")
            time.sleep(0.05)
        else:
            raise RuntimeError("safety node did not start in 60 s")
        end = time.monotonic() + 20
        while time.monotonic() < end and (self.prop_pub.get_subscription_count() < 1
                                          or self.state_pub.get_subscription_count() < 1):
            self.spin(0.05)

    def kill_node(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.spin(0.3)  # what it sent before it died still arrives
        self.segments.append(Segment())
        # The command stream died: the arm's own reflexes stop it (a real controller would
        # hold the last command; that is what the e-stop and the robot's brakes are for).
        self.v = np.zeros(self.n)

    def stop_node(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    # -- io ------------------------------------------------------------------------------

    def _on_applied(self, msg) -> None:
        self.segments[-1].commands.append((time.time(), msg))
        self.v = np.asarray(msg.velocities, float)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.ex.spin_once(timeout_sec=0.0005)
            if time.monotonic() >= end:
                return

    def _advance_robot(self) -> None:
        now = time.monotonic()
        self.q = self.q + self.v * (now - self.t_q)  # the arm tracks the command
        self.t_q = now

    def _stamp(self) -> int:
        s = max(time.time_ns(), self.last_stamp + 1)
        self.last_stamp = s
        return s

    def send_state(self, q=None, names=None, stamp=None, velocity=None, usable=True,
                   adversarial=False, q_profile=None) -> int:
        """Publish a joint state; remember its positions in profile order (``q_profile``, when
        ``names`` reorder them) under its stamp, or None when it is unusable."""
        js = self.JointState()
        js.name = list(self.names if names is None else names)
        q = self.q if q is None else q
        js.position = [float(x) for x in q]
        vel = self.v if velocity is None else velocity
        js.velocity = [float(x) for x in vel][:len(js.position)]
        if len(js.velocity) != len(js.position):
            js.velocity = []
        stamp = self._stamp() if stamp is None else int(stamp)
        js.header.stamp.sec, js.header.stamp.nanosec = divmod(max(stamp, 0), 10**9)
        self.state_pub.publish(js)
        # (a repeated stamp is ignored by the node: the first state with it is the one used)
        qp = q if q_profile is None else q_profile
        self.states.setdefault(stamp, np.asarray(qp, float).copy() if usable else None)
        self.sent["states"] += 1
        self.sent["adversarial"] += adversarial
        return stamp

    def send_proposal(self, v, *, seq=None, stamp=None, adversarial=False, poison=False) -> int:
        """``poison``: one the node must reject whatever its seq (stale or future stamp); it
        gets a seq of its own range, so that no other proposal can carry it."""
        if poison:
            self._poison += 1
            seq = POISON_SEQ0 + self._poison
        elif seq is None:
            self.seq += 1
            seq = self.seq
        self.prop_pub.publish(self.ActionProposal(
            seq=int(seq), stamp_ns=int(self.last_stamp if stamp is None else stamp),
            velocities=[float(x) for x in v]))
        self.sent["proposals"] += 1
        self.sent["adversarial"] += adversarial
        if poison:
            self.poison_seqs.add(int(seq))
        elif not adversarial:
            self.honest_seq = int(seq)
            self.t_last_prop = time.time()
        return seq

    def estop(self, latched: bool, timeout: float = 10.0):
        assert self.estop_cli.wait_for_service(timeout_sec=20), "no e-stop service"
        t = time.time()
        fut = self.estop_cli.call_async(self.SetBool.Request(data=latched))
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            self.tick_honest(propose=True)
        return t, fut.result() if fut.done() else None

    # -- traffic -------------------------------------------------------------------------

    def honest_velocity(self) -> np.ndarray:
        v = np.zeros(self.n)
        j = self.rng.randrange(self.n)
        v[j] = self.rng.uniform(-1.3, 1.3) * self.p.v_max[j]  # sometimes beyond V
        if self.rng.random() < 0.3:
            v += self.nrng.uniform(-0.3, 0.3, self.n)
        return v

    def tick_honest(self, propose: bool, v=None, before_state=False) -> None:
        """One honest state period: the state (and, every 20 Hz, the actor's answer)."""
        self._advance_robot()
        if propose and before_state:  # the answer overtakes its state (defect 4)
            stamp = max(time.time_ns() + 2_000_000, self.last_stamp + 1)
            self.send_proposal(self._v_target if v is None else v, stamp=stamp)
            self.spin(0.002)
            self.send_state(stamp=stamp)
            self.last_stamp = stamp
        else:
            self.send_state()
            if propose:
                self.spin(0.002)
                self.send_proposal(self._v_target if v is None else v)
        self.spin(1.0 / self.state_hz)

    _v_target = np.zeros(7)

    def adversarial(self) -> None:
        r = self.rng.random()
        now = time.time_ns()
        n = self.n
        kind = self.rng.randrange(15)
        vbad = self.nrng.uniform(-3, 3, n)
        if kind == 0:
            v = vbad.copy()
            v[self.rng.randrange(n)] = self.rng.choice([math.nan, math.inf, -math.inf, 1e300])
            self.send_proposal(v, adversarial=True)
        elif kind == 1:
            self.send_proposal(self.nrng.uniform(-1, 1, self.rng.choice([0, 1, 6, 8, 50])),
                               adversarial=True)
        elif kind == 2:  # stale
            self.send_proposal(vbad, stamp=now - int(self.rng.uniform(0.2, 10) * 1e9),
                               adversarial=True, poison=True)
        elif kind == 3:  # future
            self.send_proposal(vbad, stamp=now + int(self.rng.uniform(0.2, 10) * 1e9),
                               adversarial=True, poison=True)
        elif kind == 4:  # repeated seq (the newest honest one's)
            self.send_proposal(vbad, seq=self.honest_seq, adversarial=True)
        elif kind == 5:  # decreasing seq
            self.send_proposal(vbad, seq=max(0, self.honest_seq - self.rng.randrange(1, 100)),
                               adversarial=True)
        elif kind == 6:  # burst
            for _ in range(self.rng.randrange(2, 9)):
                self.send_proposal(self.honest_velocity(), adversarial=True)
                time.sleep(self.rng.uniform(0, 0.0003))
        elif kind == 7:  # NaN / inf state
            q = self.q.copy()
            q[self.rng.randrange(n)] = self.rng.choice([math.nan, math.inf])
            self.send_state(q, usable=False, adversarial=True)
        elif kind == 8:  # wrong length
            m = self.rng.choice([0, 3, 6, 8])
            self.send_state(np.resize(self.q, m), names=(self.names * 2)[:m], usable=False,
                            adversarial=True)
        elif kind == 9:  # shuffled names (a valid state, other order)
            perm = self.nrng.permutation(n)
            self.send_state(self.q[perm], names=[self.names[i] for i in perm],
                            velocity=self.v[perm], adversarial=True, q_profile=self.q)
        elif kind == 10:  # missing / duplicated / unknown names
            names = list(self.names)
            which = self.rng.randrange(3)
            if which == 0:  # another joint's name twice
                i = self.rng.randrange(n)
                names[i] = names[(i + 1 + self.rng.randrange(n - 1)) % n]
            elif which == 1:
                names[self.rng.randrange(n)] = "gripper_joint"
            else:
                names = names[:-1]
                self.send_state(self.q[:-1], names=names, usable=False, adversarial=True)
                return
            self.send_state(names=names, usable=False, adversarial=True)
        elif kind == 11:  # stale / future / repeated / decreasing state stamps
            which = self.rng.randrange(4)
            stamp = {0: now - int(self.rng.uniform(0.2, 10) * 1e9),
                     1: now + int(self.rng.uniform(0.2, 10) * 1e9),
                     2: self.last_stamp, 3: self.last_stamp - 1_000_000}[which]
            q = self.q + self.nrng.uniform(-0.3, 0.3, n)
            self.send_state(q, stamp=stamp, adversarial=True, usable=stamp not in self.states)
        elif kind == 12:  # teleport past a limit
            q = self.q.copy()
            j = self.rng.randrange(n)
            q[j] = (self.q_max[j] + self.rng.uniform(-0.02, 0.3) if r < 0.5
                    else self.q_min[j] - self.rng.uniform(-0.02, 0.3))
            self.send_state(q, adversarial=True)
        elif kind == 13:  # a huge honest-looking proposal
            self.send_proposal(vbad * 100, adversarial=True)
        else:  # an answer to a teleport, sent before it
            q = self.q.copy()
            j = self.rng.randrange(n)
            q[j] = self.q_max[j] + 0.02
            stamp = max(now + 1_000_000, self.last_stamp + 1)
            v = np.zeros(n)
            v[j] = 0.5
            self.send_proposal(v, stamp=stamp, adversarial=True)
            self.spin(0.001)
            self.last_stamp = stamp
            self.send_state(q, stamp=stamp, adversarial=True)

    # -- scenarios -----------------------------------------------------------------------

    def scenario_mixed(self, seconds: float, rate: float) -> None:
        """Honest traffic with adversarial messages at ``rate`` per second."""
        end = time.monotonic() + seconds
        k = 0
        per_tick = rate / self.state_hz
        every = max(1, int(round(self.state_hz / 20.0)))
        while time.monotonic() < end:
            if k % (every * 10) == 0:
                self._v_target = self.honest_velocity()
            self.tick_honest(propose=k % every == 0,
                             before_state=self.rng.random() < 0.1)
            n_adv = int(per_tick) + (self.rng.random() < per_tick - int(per_tick))
            for _ in range(n_adv):
                self.adversarial()
            k += 1

    def scenario_silence(self) -> None:
        """Proposals at 20 Hz, then none (states go on, rejected proposals too)."""
        every = max(1, int(round(self.state_hz / 20.0)))
        self._v_target = self.honest_velocity()
        for k in range(int(0.6 * self.state_hz)):
            self.tick_honest(propose=k % every == 0)
        self.events.append(("silence", self.t_last_prop))
        for k in range(int(1.0 * self.state_hz)):
            self.tick_honest(propose=False)
            if k % 3 == 0:  # stale / future: neither may refresh the watchdog
                now = time.time_ns()
                self.send_proposal(self.honest_velocity(), stamp=now - 10**9,
                                   adversarial=True, poison=True)
                self.send_proposal(self.honest_velocity(), stamp=now + 10**9,
                                   adversarial=True, poison=True)

    def scenario_estop(self, kill: bool) -> None:
        every = max(1, int(round(self.state_hz / 20.0)))
        self._v_target = self.honest_velocity()
        for k in range(int(0.5 * self.state_hz)):
            self.tick_honest(propose=k % every == 0)
        t_call, resp = self.estop(True)
        self.events.append(("estop", t_call, bool(resp and resp.success)))
        for k in range(int(0.4 * self.state_hz)):
            self.tick_honest(propose=k % every == 0)
            if self.rng.random() < 0.5:
                self.adversarial()
        if kill:
            self.kill_node()
            self.start_node(expect_latched=True)
            for k in range(int(0.5 * self.state_hz)):
                self.tick_honest(propose=k % every == 0)
        t_rel, resp = self.estop(False)
        self.events.append(("release", t_rel, bool(resp and resp.success)))

    def scenario_bad_file(self) -> None:
        """Restart the node with its e-stop file missing or corrupt: it must start latched."""
        self.kill_node()
        which = self.rng.randrange(3)
        if which == 0:
            self.estop_file.unlink(missing_ok=True)
        elif which == 1:
            self.estop_file.write_text("{corrupt")
        else:
            self.estop_file.write_text('{"latched": "no"}')
        self.start_node(expect_latched=True)
        every = max(1, int(round(self.state_hz / 20.0)))
        t0 = time.time()
        for k in range(int(0.5 * self.state_hz)):
            self.tick_honest(propose=k % every == 0)
        self.events.append(("latched_window", t0, time.time()))
        t_rel, resp = self.estop(False)
        self.events.append(("release", t_rel, bool(resp and resp.success)))

    def run(self, messages: int) -> dict:
        from robot_rl.ros_nodes.safety_node import write_estop

        write_estop(self.estop_file, False, "fuzz: released")
        self.start_node(expect_latched=False)
        t0 = time.monotonic()
        for _ in range(int(self.state_hz)):  # let it start commanding
            self.tick_honest(propose=True, v=np.zeros(self.n))
        counts = {"mixed": 0, "silence": 0, "estop": 0, "estop_kill": 0, "bad_file": 0}
        while self.sent["proposals"] + self.sent["states"] < messages:
            r = self.rng.random()
            if r < 0.70:
                self.scenario_mixed(self.rng.uniform(0.5, 1.5), rate=self.rng.choice(
                    [200.0, 1000.0, 3000.0]))
                counts["mixed"] += 1
            elif r < 0.85:
                self.scenario_silence()
                counts["silence"] += 1
            elif r < 0.95:
                kill = self.rng.random() < 0.4
                self.scenario_estop(kill)
                counts["estop_kill" if kill else "estop"] += 1
            else:
                self.scenario_bad_file()
                counts["bad_file"] += 1
            if self.rng.random() < 0.2:  # the arm back home now and then (a reset)
                self.q = self.home.copy() + self.nrng.uniform(-0.2, 0.2, self.n)
            self.log(f"{self.mode}: {self.sent['proposals'] + self.sent['states']} / "
                     f"{messages} messages")
        for _ in range(int(0.5 * self.state_hz)):
            self.tick_honest(propose=False)
        self.spin(0.3)
        elapsed = time.monotonic() - t0
        self.stop_node()
        result = self.check()
        result.update(mode=self.mode, scenarios=counts, sent=dict(self.sent),
                      seconds=round(elapsed, 1), node_starts=self.restarts,
                      output_hz=round(1.0 / self.dt, 3), watchdog_timeout=self.wd,
                      allowance_s=self.allowance)
        return result

    # -- checks --------------------------------------------------------------------------

    def check(self) -> dict:
        p = self.p
        kw = dict(dt=self.dt, v_max=p.v_max, a_max=p.a_max, j_max=p.j_max)
        per_output = sampled = None
        pos = {"checked": 0, "violations": 0, "unmatched_state": 0, "examples": []}
        brake = {"checked": 0, "violations": 0, "examples": []}
        poison = 0
        gaps = []
        all_cmds = []
        for seg in self.segments:
            msgs = [m for _, m in seg.commands]
            if not msgs:
                continue
            t = np.array([m.stamp_ns * 1e-9 for m in msgs])
            v = np.array([list(m.velocities) for m in msgs])
            a1, a2 = audit_outputs(t, v, **kw), audit_sampled(t, v, **kw)
            per_output = a1 if per_output is None else per_output.merge(a1)
            sampled = a2 if sampled is None else sampled.merge(a2)
            gaps.extend(np.diff(t).tolist())
            all_cmds.extend(msgs)
            # position and unusable-state braking, against the state each command used
            D = stopping_distance(np.abs(v), p.a_max, p.tau, self.dt)
            for k in range(1, len(msgs)):
                m = msgs[k]
                prev = v[k - 1]
                cur = v[k]
                if m.proposal_seq in self.poison_seqs:
                    poison += 1
                st = m.state_stamp_ns
                if st == 0:
                    continue
                if st not in self.states:
                    pos["unmatched_state"] += 1
                    continue
                q = self.states[st]
                if q is None or m.rules_fired & TARGET_ZERO:
                    brake["checked"] += 1
                    toward_zero = ((np.abs(cur) <= np.abs(prev) + 1e-12)
                                   & ((cur * prev >= 0) | (np.abs(cur) <= 1e-12)))
                    if not toward_zero.all():
                        brake["violations"] += int((~toward_zero).sum())
                        if len(brake["examples"]) < 5:
                            j = int(np.flatnonzero(~toward_zero)[0])
                            brake["examples"].append({
                                "joint": j, "prev": float(prev[j]), "cmd": float(cur[j]),
                                "rules": int(m.rules_fired), "unusable": q is None})
                    continue
                pos["checked"] += 1
                up = (cur > np.maximum(prev, 0.0) + 1e-12) & (q + D[k] > p.q_upper + 1e-9)
                dn = (cur < np.minimum(prev, 0.0) - 1e-12) & (q - D[k] < p.q_lower - 1e-9)
                bad = up | dn
                if bad.any():
                    pos["violations"] += int(bad.sum())
                    if len(pos["examples"]) < 5:
                        j = int(np.flatnonzero(bad)[0])
                        pos["examples"].append({"joint": j, "q": float(q[j]),
                                                "prev": float(prev[j]), "cmd": float(cur[j])})
        timing = self._check_timing(all_cmds)
        g = np.array(gaps) if gaps else np.zeros(1)
        total = (per_output.total + sampled.total + pos["violations"] + brake["violations"]
                 + poison + timing["violations"])
        return {
            "commands": len(all_cmds),
            "violations": total,
            "output_rate": per_output.as_dict() if per_output else None,
            "driver_sampled": sampled.as_dict() if sampled else None,
            "position": pos, "unusable_state_braking": brake,
            "rejected_proposals_executed": poison,
            "timing": timing,
            "command_gap_ms": {"median": round(float(np.median(g)) * 1e3, 3),
                               "p99": round(float(np.percentile(g, 99)) * 1e3, 3),
                               "max": round(float(g.max()) * 1e3, 3)},
        }

    def _check_timing(self, cmds) -> dict:
        p = self.p
        stamps = np.array([m.stamp_ns * 1e-9 for m in cmds])
        out = {"watchdog_onset_excess_ms": [], "watchdog_zero_excess_ms": [],
               "watchdog_zero_commands_excess": [],
               "estop_onset_ms": [], "estop_not_latched": 0, "start_not_latched": 0,
               "violations": 0}
        al = self.allowance
        for ev in self.events:
            kind, t = ev[0], ev[1]
            if kind == "silence":
                i = np.searchsorted(stamps, t)
                wd = [k for k in range(i, len(cmds)) if cmds[k].rules_fired & Rule.WATCHDOG]
                if not wd:
                    out["violations"] += 1
                    continue
                kb = wd[0]
                onset = stamps[kb] - t - (self.wd + self.dt)
                out["watchdog_onset_excess_ms"].append(round(onset * 1e3, 1))
                v0 = np.abs(np.asarray(cmds[kb - 1].velocities)) if kb else np.zeros(self.n)
                zero = next((k for k in range(kb, len(cmds)) if not any(cmds[k].velocities)),
                            None)
                bound = float(np.max(v0 / p.a_max + p.a_max / p.j_max)) + self.dt
                if zero is None:
                    out["violations"] += 1
                    continue
                # As fast as the limits allow, per command: zero within the commands a stop at
                # A (after the jerk ramp) takes. In wall time that stretches by every period the
                # node missed (reported: the excess over the bound).
                n_cmds = int(np.max(np.ceil(v0 / (p.a_max * self.dt) + p.n_ramp))) + 1
                out["watchdog_zero_commands_excess"].append(zero - kb - n_cmds)
                zx = stamps[zero] - stamps[kb] - bound
                out["watchdog_zero_excess_ms"].append(round(zx * 1e3, 1))
                out["violations"] += int(onset > al) + int(zero - kb > n_cmds)
            elif kind == "estop":
                i = np.searchsorted(stamps, t)
                first = next((k for k in range(i, len(cmds)) if cmds[k].rules_fired & Rule.ESTOP),
                             None)
                if first is None or not ev[2]:
                    out["violations"] += 1
                    continue
                on = stamps[first] - t
                out["estop_onset_ms"].append(round(on * 1e3, 1))
                out["violations"] += int(on > self.dt + al)
                rel = next((e[1] for e in self.events if e[0] == "release" and e[1] > t), None)
                end = rel if rel is not None else math.inf
                bad = [k for k in range(first, len(cmds))
                       if stamps[k] < end and not cmds[k].rules_fired & Rule.ESTOP]
                out["estop_not_latched"] += len(bad)
                out["violations"] += len(bad)
            elif kind == "latched_window":
                bad = [m for m, s in zip(cmds, stamps) if t <= s <= ev[2]
                       and not m.rules_fired & Rule.ESTOP]
                out["estop_not_latched"] += len(bad)
                out["violations"] += len(bad)
            elif kind == "start_latched":
                if ev[2] != ev[3]:
                    out["start_not_latched"] += 1
                    out["violations"] += 1
        for k in ("watchdog_onset_excess_ms", "watchdog_zero_excess_ms",
                  "watchdog_zero_commands_excess", "estop_onset_ms"):
            xs = out[k]
            out[k] = {"n": len(xs), "median": float(np.median(xs)) if xs else None,
                      "max": float(max(xs)) if xs else None}
        return out


def run_mode(mode: str, messages: int, seed: int, allowance: float, verbose=False) -> dict:
    import rclpy

    from robot_rl.ros_nodes import common  # noqa: F401 - the package imports cleanly

    with tempfile.TemporaryDirectory(prefix=f"safety_fuzz_{mode}_") as d:
        rclpy.init()
        fz = None
        try:
            fz = Fuzzer(mode, seed, Path(d), allowance,
                        log=(lambda *a: print(*a, file=sys.stderr)) if verbose else None)
            return fz.run(messages)
        finally:
            if fz is not None:
                fz.stop_node()
                fz.node.destroy_node()
            rclpy.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=[*MODES, "both"], default="both")
    ap.add_argument("--messages", type=int, default=100_000,
                    help="proposals + joint states to send per mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--allowance", type=float, default=0.05,
                    help="s of scheduling slack on the watchdog / e-stop timing bounds")
    ap.add_argument("--quick", action="store_true", help="3000 messages per mode (CI)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if "ROS_DOMAIN_ID" not in os.environ:  # stay off the default domain (a real robot's)
        os.environ["ROS_DOMAIN_ID"] = str(150 + os.getpid() % 50)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    n = 3000 if a.quick else a.messages
    modes = list(MODES) if a.mode == "both" else [a.mode]
    out = {"seed": a.seed, "messages_per_mode": n, "cpu_count": os.cpu_count(),
           "results": [run_mode(m, n, a.seed, a.allowance, a.verbose) for m in modes]}
    out["violations"] = sum(r["violations"] for r in out["results"])
    print(json.dumps(out, indent=1))
    return 0 if out["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
