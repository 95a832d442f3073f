"""replay_node as a real process over real DDS, writing a real zarr store on disk.

* ingest: two robots / two sessions, re-sent (duplicate) and bad (NaN, wrong length) transitions;
  every valid one is stored exactly once, the bad ones never, the acks reach each session's last
  seq, /diagnostics counts it all, Ctrl-C commits and exits 0;
* SIGKILL mid-stream, restart on the same run directory, the test's "actors" re-send whatever is
  not acknowledged (as the actor's outbox does): exactly once in the store; SIGTERM stops it
  cleanly;
* a second replay node on the same store exits 3, naming the first one (pid) as the lock holder;
* the numpy decoding of serialized Transitions agrees with rclpy's serialization.
"""
from __future__ import annotations

import array
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.serialization import serialize_message

from robot_rl.replay import ReplayReader
from robot_rl.ros_nodes.common import ACK_QOS, TRANSITION_QOS
from robot_rl.ros_nodes.replay_node import CdrLayout, EXIT_STORE
from robot_rl_interfaces.msg import ReplayAck, Transition

OBS, ACT = 20, 7  # the default config's reach task: 20 observations, 7 joint-velocity actions
READY = r"replay node /replay_node: store .*\((created|resumed): (\d+) rows"
NODE = ["-m", "robot_rl.ros_nodes.replay_node", "--ros-args"]
FAST = ["-p", "replay.flush_interval:=0.2", "-p", "ack_period:=0.3"]


def _values(robot_id: int, session: int, seq: int) -> tuple[list[float], list[float], list[float]]:
    """Deterministic observation/action/next observation of a key, inside the spec's bounds."""
    ph = 0.01 * seq + 0.3 * robot_id + 0.001 * (session % 1000)
    obs = [0.2 * math.sin(ph + j) for j in range(OBS)]
    nxt = [0.2 * math.sin(ph + 0.01 + j) for j in range(OBS)]
    act = [0.9 * math.cos(3 * ph + j) for j in range(ACT)]
    return obs, act, nxt


def transition(robot_id: int, session: int, seq: int, *, obs=None) -> Transition:
    o, a, n = _values(robot_id, session, seq)
    return Transition(
        observation=array.array("f", o if obs is None else obs), action=array.array("f", a),
        next_observation=array.array("f", n), reward=-0.001 * seq, terminated=False,
        truncated=seq % 50 == 49, source=Transition.SOURCE_POLICY, robot_id=robot_id,
        actor_session=session, seq=seq, episode_id=session * 1000 + seq // 50,
        step_index=seq % 50, stamp_ns=1_000_000 * seq, policy_version=seq // 100,
        safety_rules=seq % 3)


class Actors:
    """The test's node: publishes Transitions like the actors' outboxes (kept until
    acknowledged), and records ReplayAcks and the replay node's diagnostics."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("replay_test_actors")
        self.pub = self.node.create_publisher(Transition, "/rl/transitions", TRANSITION_QOS)
        self.acks: dict[tuple[int, int], int] = {}
        self.last_ack_stamp = 0  # ReplayAck.stamp_ns of the newest ack
        self.outbox: dict[tuple[int, int], dict[int, Transition]] = {}
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(ReplayAck, "/rl/replay_ack", self.on_ack, ACK_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)

    def on_ack(self, msg: ReplayAck) -> None:
        key = (msg.robot_id, msg.actor_session)
        self.last_ack_stamp = max(self.last_ack_stamp, msg.stamp_ns)
        self.acks[key] = max(self.acks.get(key, -1), msg.committed_seq)
        box = self.outbox.get(key, {})
        for seq in [q for q in box if q <= msg.committed_seq]:
            del box[seq]

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name == "/replay_node":
                self.diagnostics.append({kv.key: kv.value for kv in st.values})

    def spin_until(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)
            if cond():
                return True
        return cond()

    def wait_matched(self, timeout: float = 30) -> None:
        assert self.spin_until(lambda: self.pub.get_subscription_count() >= 1, timeout), \
            "the replay node's transitions subscription never matched"

    def send(self, msg: Transition, keep: bool = True) -> None:
        """Publish; ``keep`` puts it in the outbox (an actor keeps every valid transition)."""
        if keep:
            self.outbox.setdefault((msg.robot_id, msg.actor_session), {})[msg.seq] = msg
        self.pub.publish(msg)

    def resend_unacked(self) -> int:
        n = 0
        for box in self.outbox.values():
            for seq in sorted(box):
                msg = box.get(seq)  # an ack may have taken it out meanwhile
                if msg is None:
                    continue
                self.pub.publish(msg)
                n += 1
                if n % 200 == 0:
                    rclpy.spin_once(self.node, timeout_sec=0.001)
        return n

    def acked_up_to(self, last: dict[tuple[int, int], int]) -> bool:
        return all(self.acks.get(k, -1) >= q for k, q in last.items())


@pytest.fixture
def actors():
    rclpy.init()
    a = Actors()
    yield a
    a.node.destroy_node()
    rclpy.shutdown()


def _start(ros_process, run_dir: Path, *extra: str, name: str = "replay_node"):
    proc = ros_process.python([*NODE, "-p", f"run_dir:={run_dir}", *FAST, *extra], name=name)
    match = proc.wait_for_line(READY, timeout=60)
    return proc, int(match.group(2))


def _stored(run_dir: Path) -> dict[str, np.ndarray]:
    r = ReplayReader(run_dir / "replay.zarr")
    return r.read(0, len(r))


def _keys(cols: dict[str, np.ndarray]) -> list[tuple[int, int, int]]:
    return list(zip(cols["robot_id"].tolist(), cols["actor_session"].tolist(),
                    cols["seq"].tolist()))


def _check_rows(cols: dict[str, np.ndarray]) -> None:
    """Every stored row holds what its key's transition held (nothing torn or mixed up)."""
    for i, (r, s, q) in enumerate(_keys(cols)):
        o, a, n = _values(r, s, q)
        np.testing.assert_array_equal(cols["observation"][i], np.float32(o))
        np.testing.assert_array_equal(cols["action"][i], np.float32(a))
        np.testing.assert_array_equal(cols["next_observation"][i], np.float32(n))
        assert cols["reward"][i] == np.float32(-0.001 * q)
        assert (cols["episode_id"][i], cols["step_index"][i]) == (s * 1000 + q // 50, q % 50)
        assert bool(cols["truncated"][i]) == (q % 50 == 49) and not cols["terminated"][i]
        assert (cols["stamp_ns"][i], cols["policy_version"][i], cols["safety_rules"][i]) == (
            1_000_000 * q, q // 100, q % 3)


SESSIONS = [(0, 0xA11CE), (1, 0xB0B)]  # two robots, one actor session each


def test_ingest_dedup_reject_ack_and_clean_stop(ros_process, actors, tmp_path):
    proc, rows0 = _start(ros_process, tmp_path)
    assert rows0 == 0
    actors.wait_matched()
    n = 400
    nan_seqs, short_seqs = {10, 11, 250}, {20, 300}
    bad = [(k, q) for k in SESSIONS for q in sorted(nan_seqs | short_seqs)]
    for q in range(n):
        for r, s in SESSIONS:
            if q in nan_seqs:
                obs = _values(r, s, q)[0]
                obs[3] = float("nan")
                actors.send(transition(r, s, q, obs=obs), keep=False)
            elif q in short_seqs:
                actors.send(transition(r, s, q, obs=[0.0] * (OBS - 1)), keep=False)
            else:
                actors.send(transition(r, s, q))
        if q % 50 == 49:
            rclpy.spin_once(actors.node, timeout_sec=0.001)
    for r, s in SESSIONS:  # re-send the first 50 valid ones and one bad one: duplicates
        for q in range(50):
            if q not in nan_seqs | short_seqs:
                actors.send(transition(r, s, q), keep=False)
        actors.send(transition(r, s, 10, obs=[float("nan")] * OBS), keep=False)
    last = {k: n - 1 for k in SESSIONS}
    assert actors.spin_until(lambda: actors.acked_up_to(last), 20), (
        f"acks {actors.acks}, expected {last}\n{proc.tail()}")
    assert all(not box for box in actors.outbox.values())
    valid = n - len(nan_seqs | short_seqs)
    dups = 2 * (50 - len({q for q in nan_seqs | short_seqs if q < 50}) + 1)

    def diag_done() -> bool:
        d = actors.diagnostics[-1] if actors.diagnostics else {}
        return d.get("rows") == str(2 * valid) and d.get("duplicates") == str(dups)

    assert actors.spin_until(diag_done, 5), actors.diagnostics[-1:]
    d = actors.diagnostics[-1]
    assert d["received"] == str(2 * n + dups) and d["accepted"] == str(2 * valid)
    assert d["rejected"] == str(len(bad)) and d["sessions"] == "2"
    assert d["rejected.observation.non_finite"] == str(2 * len(nan_seqs))
    assert d["rejected.observation.shape"] == str(2 * len(short_seqs))
    assert float(d["ingest_per_s"]) >= 0 and int(d["commits"]) >= 1
    proc.wait_for_line(r"rejected \d+ transition\(s\) for observation.non_finite .*observation"
                       r"\[3\] \(q4\) is not finite", timeout=5)
    proc.wait_for_line(r"rejected \d+ transition\(s\) for observation.shape .*expected shape "
                       r"\(20,\), got \(19,\)", timeout=5)

    assert proc.stop() == 0, proc.tail()
    assert any(f"final: rows={2 * valid} " in line for line in proc.lines), proc.tail()
    cols = _stored(tmp_path)
    keys = _keys(cols)
    expected = {(r, s, q) for r, s in SESSIONS for q in range(n)} - {(r, s, q) for (r, s), q in bad}
    assert len(keys) == len(set(keys)) == len(expected)
    assert set(keys) == expected
    _check_rows(cols)
    assert (tmp_path / "replay.zarr.lock").read_text() == ""  # released cleanly


def test_sigkill_restart_resend_exactly_once(ros_process, actors, tmp_path):
    proc, _ = _start(ros_process, tmp_path, "-p", "replay.flush_interval:=0.3")
    actors.wait_matched()
    n = 1500
    q = 0
    # stream until some rows are committed and acknowledged, then kill mid-stream
    while q < n and not (q > 300 and actors.acked_up_to({k: 100 for k in SESSIONS})):
        for r, s in SESSIONS:
            actors.send(transition(r, s, q))
        q += 1
        if q % 10 == 0:
            actors.spin_until(lambda: False, 0.01)  # < 2k transitions/s
    proc.popen.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    killed_at = q
    assert 300 < killed_at < n, "the node acknowledged nothing before the kill"
    acked_before = dict(actors.acks)
    for q in range(killed_at, n):  # the actors go on while the replay is down: lost
        for r, s in SESSIONS:
            actors.send(transition(r, s, q))
        if q % 100 == 0:
            rclpy.spin_once(actors.node, timeout_sec=0.001)

    t_restart = time.time_ns()
    proc2, resumed = _start(ros_process, tmp_path, name="replay_node_2")
    assert resumed >= sum(a + 1 for a in acked_before.values()), (resumed, acked_before)
    assert "took over the writer lock" in proc2.output  # the killed writer's lock file
    # the new node re-publishes the stored sessions' acks: once one arrives, it is discovered
    # (the killed node's subscription may still count as matched for a while)
    assert actors.spin_until(lambda: actors.last_ack_stamp > t_restart, 20), proc2.tail()
    last = {k: n - 1 for k in SESSIONS}
    resent = 0
    for _ in range(20):  # the outbox re-sends what is unacknowledged until it is
        resent += actors.resend_unacked()
        if actors.spin_until(lambda: actors.acked_up_to(last), 2.0):
            break
    assert actors.acked_up_to(last), f"acks {actors.acks}\n{proc2.tail()}"
    assert resent > 0
    print(f"killed after {2 * killed_at} of {2 * n} sent, {acked_before} acknowledged; restart "
          f"resumed {resumed} rows; {resent} re-sent")
    proc2.popen.send_signal(signal.SIGTERM)  # a clean stop by SIGTERM too: commits, exits 0
    assert proc2.wait(30) == 0, proc2.tail()
    assert any("final: rows=" in line for line in proc2.lines), proc2.tail()

    cols = _stored(tmp_path)
    keys = _keys(cols)
    assert len(keys) == len(set(keys)), "a transition was stored twice"
    assert set(keys) == {(r, s, q) for r, s in SESSIONS for q in range(n)}
    _check_rows(cols)


def test_second_writer_refused_names_the_holder(ros_process, tmp_path):
    first, _ = _start(ros_process, tmp_path)
    second = ros_process.python([*NODE, "-p", f"run_dir:={tmp_path}"], name="second")
    assert second.wait(60) == EXIT_STORE, second.tail()
    out = second.output
    assert "is already open for writing by" in out, out
    assert f"pid {first.popen.pid} " in out, out
    assert first.running
    bad = ros_process.python([*NODE, "-p", f"run_dir:={tmp_path / 'other'}", "-p",
                              "ack_period:=0.0"], name="bad")
    assert bad.wait(60) == 2 and "ack_period: expected > 0" in bad.output, bad.tail()
    assert first.stop() == 0, first.tail()


@pytest.mark.parametrize("dims", [(OBS, ACT), (3, 1), (0, 0), (5, 2)])
def test_cdr_layout_matches_rclpy_serialization(dims):
    layout = CdrLayout(*dims)
    assert layout.self_check() is None


def test_cdr_decode_keeps_only_messages_with_the_layout():
    layout = CdrLayout(OBS, ACT)
    good = [serialize_message(transition(1, 7, q)) for q in range(5)]
    short = serialize_message(transition(1, 7, 99, obs=[0.0] * (OBS - 1)))
    # same total size, other array lengths: must not be decoded as the fixed layout
    swapped = transition(1, 7, 98, obs=[0.0] * (OBS + 1))
    swapped.action = array.array("f", [0.0] * (ACT - 1))
    swapped = serialize_message(swapped)
    assert len(swapped) == layout.size
    raws = [good[0], short, good[1], swapped, *good[2:]]
    cols, fits = layout.decode(raws)
    assert fits.tolist() == [True, False, True, False, True, True, True]
    assert cols["seq"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(cols["observation"][2], np.float32(_values(1, 7, 2)[0]))
    assert layout.decode([short])[0] is None


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
