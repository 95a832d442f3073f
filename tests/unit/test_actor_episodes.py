"""The actor's episode machine (robot_rl.actor.Actor), without rclpy: the same inputs the actor
node feeds it (states, applied commands, operator commands, acknowledgements, reset answers,
housekeeping), its outputs recorded by a port.

The mark-on-the-time-limit case is the one a fresh-clone CI run hit through the graph
(tests/ros/test_demos_graph.py): the operator's mark came on the same state as the task's time
limit; the episode went out, the actor then waited for a mark again for that episode, the next
mark closed the ghost (0 transitions) and the next real episode was never sent.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.actor import Actor, ActorCore, Homing, Outbox, TransitionRow
from robot_rl.config import config_from_dict
from robot_rl.teleop import MARK_DISCARD, MARK_FAILURE, MARK_NONE, MARK_SUCCESS

pytestmark = pytest.mark.unit

MAX_STEPS = 5
FAR_GOAL = np.array([0.6, 0.3, 0.2])  # never reached by a still arm: no success by the task


class Port:
    """Records what the machine sends; the sim's reset is a counter the test advances."""

    def __init__(self, reset_ready: bool = True):
        self.proposals: list[tuple[int, int, np.ndarray]] = []
        self.rows: list[TransitionRow] = []
        self.logs: list[tuple[str, str]] = []
        self.resets = 0
        self.reset_ready = reset_ready
        self.fail_sends = 0

    def propose(self, seq, stamp_ns, velocities):
        self.proposals.append((seq, stamp_ns, np.asarray(velocities)))

    def send(self, row):
        if self.fail_sends:
            self.fail_sends -= 1
            raise RuntimeError("cannot publish data")
        self.rows.append(row)

    def request_reset(self):
        if self.reset_ready:
            self.resets += 1
        return self.reset_ready

    def log(self, level, text):
        self.logs.append((level, text))

    def lines(self, pattern: str) -> list[str]:
        return [t for _, t in self.logs if pattern in t]


class Rig:
    """An actor, its port and a simulated robot that stands still and resets on request."""

    def __init__(self, *, demos=False, homing=False, capacity=1000, reset_ready=True,
                 max_steps=MAX_STEPS, goal=FAR_GOAL):
        self.cfg = config_from_dict({"task": {"action_mode": "ee_velocity",
                                              "max_steps": max_steps}})
        self.core = ActorCore(self.cfg, robot_id=3, session=0xABC, seed=0)
        self.port = Port(reset_ready)
        home = np.asarray(self.cfg.robot.home, float)
        h = Homing(home, np.asarray(self.cfg.robot.limits.dq_max, float)) if homing else None
        self.actor = Actor(self.core, self.port, Outbox(capacity, resend_after=1.0),
                           demos=demos, homing=h)
        self.q = home.copy()
        self.dq = np.zeros(7)
        self.goal = np.asarray(goal, float)
        self.now = 0.0
        self.stamp = 0
        self.sim_episode = 0
        self._resets_seen = 0

    def state(self, apply: bool = True) -> None:
        """One control period: the sim resets if asked, publishes its state; the actor acts;
        the safety node passes the proposal through (``apply``)."""
        if self.port.resets > self._resets_seen:
            self._resets_seen = self.port.resets
            self.sim_episode += 1
        self.now += 0.05
        self.stamp += 50_000_000
        n = len(self.port.proposals)
        self.actor.step(self.q, self.dq, self.stamp, self.goal, None, self.sim_episode, self.now)
        if apply:
            for seq, _, v in self.port.proposals[n:]:
                self.actor.applied(seq, v, 0, self.now)

    def states(self, n: int, **kw) -> None:
        for _ in range(n):
            self.state(**kw)

    def operator(self, mark=MARK_NONE, deadman=True, action=(0.0, 0.0, 0.0)):
        return self.actor.teleop(np.asarray(action, np.float32), deadman, mark, self.now)

    def until_running(self) -> None:
        for _ in range(10):
            if self.actor.mode == "running":
                return
            self.state()
        raise AssertionError(f"not running: {self.actor.mode}")

    def episodes(self) -> dict[int, list[TransitionRow]]:
        out: dict[int, list[TransitionRow]] = {}
        for r in self.port.rows:
            out.setdefault(r.episode_id, []).append(r)
        return out


def test_training_episodes_stream_with_contiguous_seqs_and_reset_at_the_time_limit():
    rig = Rig()
    rig.state()
    assert rig.actor.mode == "resetting" and rig.port.resets == 1  # the first state: reset
    rig.until_running()
    rig.states(3 * (MAX_STEPS + 2))
    rows = rig.port.rows
    assert [r.seq for r in rows] == list(range(len(rows)))
    eps = rig.episodes()
    assert len(eps) >= 3
    for ep in list(eps.values())[:3]:
        assert [r.step_index for r in ep] == list(range(MAX_STEPS))
        assert [r.truncated for r in ep] == [False] * (MAX_STEPS - 1) + [True]
        assert not any(r.terminated for r in ep) and {r.source for r in ep} == {0}
        assert all(r.robot_id == 3 and r.actor_session == 0xABC for r in ep)
        for a, b in zip(ep, ep[1:]):  # each row's next observation is the next row's observation
            np.testing.assert_array_equal(a.next_observation, b.observation)
    assert rig.core.episodes >= 3 and rig.port.resets >= 4


def test_reaching_the_goal_terminates_the_episode():
    rig = Rig()
    rig.goal = rig.core.kin.ee_position(rig.q)  # the arm is already there
    rig.until_running()
    rig.states(2)
    ep = next(iter(rig.episodes().values()))
    assert len(ep) == 1 and ep[0].terminated and not ep[0].truncated and ep[0].reward == 0.0


def _demo_rig() -> Rig:
    rig = Rig(demos=True)
    rig.operator()  # deadman held, zero action
    rig.until_running()
    return rig


def test_a_mark_on_the_same_state_as_the_time_limit_closes_that_episode_once():
    """The CI failure: both demo episodes go out whole, each with its own mark."""
    rig = _demo_rig()
    rig.states(MAX_STEPS - 1)  # MAX_STEPS proposals out, MAX_STEPS - 1 transitions complete
    rig.operator(MARK_FAILURE)  # the operator's mark arrives with the time-limit state
    rig.state()
    eps = rig.episodes()
    assert len(eps) == 1 and len(next(iter(eps.values()))) == MAX_STEPS
    assert rig.actor.mode == "resetting" and rig.actor.demo_episodes_sent == 1
    assert not rig.port.lines("waiting for the operator's mark")  # marked: nothing to wait for
    rig.operator()
    rig.until_running()
    rig.states(MAX_STEPS)  # the second episode reaches its time limit: held, unmarked
    assert rig.actor.mode == "awaiting mark" and len(rig.episodes()) == 1
    rig.operator(MARK_SUCCESS)
    rig.state()
    eps = list(rig.episodes().values())
    assert len(eps) == 2 and [len(e) for e in eps] == [MAX_STEPS, MAX_STEPS]
    assert eps[0][0].episode_id != eps[1][0].episode_id
    assert all(r.source == 1 for e in eps for r in e)
    assert [e[-1].truncated for e in eps] == [True, True]
    assert rig.actor.demo_episodes_sent == 2
    assert not rig.port.lines("0 transitions")


def test_a_mark_after_the_time_limit_sends_the_held_episode_and_holds_the_arm_meanwhile():
    rig = _demo_rig()
    rig.states(MAX_STEPS)
    assert rig.actor.mode == "awaiting mark" and rig.port.rows == []
    assert rig.port.lines("waiting for the operator's mark")
    n = len(rig.port.proposals)
    rig.states(3)  # held: zero-velocity proposals, nothing sent, no step counted
    assert [float(np.abs(v).max()) for _, _, v in rig.port.proposals[n:]] == [0.0] * 3
    assert rig.port.rows == [] and rig.core.env_steps == MAX_STEPS
    rig.operator(MARK_FAILURE)
    rig.state()
    ep = next(iter(rig.episodes().values()))
    assert [r.step_index for r in ep] == list(range(MAX_STEPS)) and ep[-1].truncated
    assert rig.actor.mode == "resetting"


def test_a_mark_mid_episode_ends_it_at_the_step_in_flight():
    rig = _demo_rig()
    rig.states(2)  # 3 proposals out, 2 transitions complete
    rig.operator(MARK_SUCCESS)
    rig.state()
    ep = next(iter(rig.episodes().values()))
    assert len(ep) == 3 and ep[-1].truncated and not any(r.truncated for r in ep[:-1])
    assert rig.actor.mode == "resetting"


def test_a_marked_episode_waits_for_its_last_applied_command():
    rig = _demo_rig()
    rig.states(MAX_STEPS - 2)
    rig.state(apply=False)  # the last step's proposal: the safety node's reply is late
    last_seq = rig.port.proposals[-1][0]
    rig.operator(MARK_SUCCESS)
    rig.state()  # the time-limit state
    assert rig.port.rows == [] and rig.actor.mode == "awaiting mark"
    rig.actor.applied(last_seq, np.zeros(7), 0, rig.now)
    assert len(rig.port.rows) == MAX_STEPS and rig.actor.mode == "resetting"


def test_discard_drops_the_episode_and_a_late_applied_command_does_not_resurrect_it():
    rig = _demo_rig()
    rig.states(2, apply=False)
    rig.operator(MARK_DISCARD)
    rig.state()
    assert rig.actor.demo_episodes_discarded == 1 and rig.actor.mode == "resetting"
    rig.actor.housekeeping(rig.now + 5.0)  # the late steps complete (applied overdue): dropped
    assert rig.port.rows == []
    rig.operator()
    rig.until_running()
    rig.states(MAX_STEPS)
    rig.operator(MARK_SUCCESS)
    rig.state()
    assert [len(e) for e in rig.episodes().values()] == [MAX_STEPS]


def test_marks_outside_an_episode_or_while_training_are_ignored():
    rig = Rig(demos=True)
    rig.operator(MARK_SUCCESS)
    rig.state()  # start: nothing to mark
    assert rig.port.lines("outside an episode")
    train = Rig()
    train.until_running()
    train.operator(MARK_SUCCESS, deadman=False)
    train.states(MAX_STEPS + 1)
    assert train.port.lines("marks are for demonstrations")
    assert len(next(iter(train.episodes().values()))) == MAX_STEPS


def test_a_held_deadman_takes_over_as_intervention_and_bad_commands_are_refused():
    rig = Rig()
    rig.until_running()
    assert not rig.operator(action=(0.1, math.nan, 0.0))
    assert not rig.operator(action=(0.1, 0.2))
    assert rig.actor.teleop_refused == 2 and rig.port.lines("teleop command refused")
    assert rig.operator(action=(5.0, -0.5, 0.25))  # out of the box: clipped, not refused
    rig.states(2)
    r = rig.port.rows[-1]  # proposed on the first of the two states (rows[0]: the policy's)
    assert r.source == 2  # Source.INTERVENTION
    np.testing.assert_allclose(r.action, [1.0, -0.5, 0.25], atol=0.05)  # applied, mapped back
    rig.now += 1.0  # the command goes stale: the policy acts again
    rig.states(2)
    assert rig.port.rows[-1].source == 0
    assert rig.actor.intervention_steps >= 1 and 0 < rig.actor.intervention_rate < 1


def test_the_outbox_cut_pauses_and_an_ack_resumes_with_a_new_episode():
    rig = Rig(capacity=8, max_steps=50)
    rig.until_running()
    rig.states(12)
    rows = rig.port.rows
    assert len(rows) == 8 and rows[-1].truncated and rig.actor.mode == "paused"
    assert rig.port.lines("outbox full")
    n = len(rig.port.proposals)
    rig.states(3)
    assert len(rig.port.proposals) == n and len(rig.port.rows) == 8  # nothing proposed
    rig.actor.ack(rows[-1].seq, rig.now)
    rig.until_running()
    rig.state()
    new = rig.port.rows[8]
    assert (new.seq, new.step_index) == (8, 0) and new.episode_id != rows[0].episode_id


def test_unacknowledged_rows_are_resent_and_failed_sends_counted():
    rig = Rig()
    rig.port.fail_sends = 1
    rig.until_running()
    rig.states(3)
    assert rig.actor.publish_failures == 1 and rig.port.lines("not sent")
    sent = len(rig.port.rows)
    rig.actor.housekeeping(rig.now + 1.5)  # resend_after 1 s: everything goes again
    assert len(rig.port.rows) == sent + len(rig.actor.outbox)
    rig.actor.ack(rig.port.rows[-1].seq, rig.now + 1.6)
    assert len(rig.actor.outbox) == 0


def test_a_missing_applied_command_records_the_last_one_sent_after_the_timeout():
    rig = Rig()
    rig.until_running()
    rig.state()  # the first proposal, applied
    v_last = rig.port.proposals[-1][2]
    rig.state(apply=False)
    rig.state(apply=False)
    def seqs():
        return {r.seq for r in rig.port.rows}

    n = len(seqs())
    rig.actor.housekeeping(rig.now + 0.5)  # not yet overdue
    assert len(seqs()) == n
    rig.actor.housekeeping(rig.now + 1.5)
    assert len(seqs()) == n + 1 and rig.actor.applied_missing == 1
    row = max(rig.port.rows, key=lambda r: r.seq)
    np.testing.assert_allclose(row.action, rig.core.mapper.to_action(v_last, rig.q).clip(-1, 1),
                               atol=1e-6)


def test_reset_service_unavailable_then_failing_then_silent_is_retried():
    rig = Rig(reset_ready=False)
    rig.states(3)
    assert rig.actor.mode == "resetting" and rig.port.lines("reset service not available")
    rig.port.reset_ready = True
    rig.actor.housekeeping(rig.now)
    assert rig.port.resets == 1
    rig.actor.reset_answer(False, "sim busy", rig.now)  # a failed reset: asked again
    assert rig.port.resets == 2 and rig.port.lines("reset failed: sim busy")
    rig.actor.housekeeping(rig.now + 6.0)  # no answer within 5 s: asked again
    assert rig.port.resets == 3 and rig.port.lines("did not answer")
    rig.actor.reset_answer(True, "", rig.now + 6.1)
    rig.actor.housekeeping(rig.now + 20.0)  # answered: no more retries
    assert rig.port.resets == 3
    rig.until_running()


def test_homing_moves_home_through_proposals_before_each_episode():
    rig = Rig(homing=True)
    rig.q = rig.q + 0.2  # away from home
    rig.state()
    assert rig.actor.mode == "homing" and rig.port.resets == 0
    rig.state()
    _, _, v = rig.port.proposals[-1]
    dq_max = np.asarray(rig.cfg.robot.limits.dq_max)
    assert np.all(v < 0) and np.all(np.abs(v) <= 0.25 * dq_max + 1e-12)  # towards home, slowly
    rig.q = np.asarray(rig.cfg.robot.home, float)  # arrived, at rest
    rig.state()
    assert rig.actor.mode == "running" and rig.port.rows == []


def test_homing_parameters_are_checked():
    home, dq = np.zeros(7), np.ones(7)
    for kw, field in (({"speed": 1.5}, "homing_speed"), ({"tolerance": 0.0}, "homing_tolerance"),
                      ({"gain": math.nan}, "homing_gain")):
        with pytest.raises(ValueError, match=field):
            Homing(home, dq, **kw)


def test_a_state_outside_the_spec_is_refused_and_counted():
    rig = Rig()
    rig.until_running()
    n = len(rig.port.proposals)
    rig.dq = np.full(7, 100.0)
    rig.state()
    assert rig.actor.bad_states == 1 and len(rig.port.proposals) == n
    assert rig.port.lines("state refused")
