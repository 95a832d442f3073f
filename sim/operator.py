"""A scripted human operator: the stand-in for a person at a SpaceMouse or gamepad in CI.

PyBullet stands in for the arm; :class:`ScriptedOperator` stands in for the person who drives it.
It produces what a *device* reports -- the device vector (spacenav: the Twist as linear x, y, z,
angular x, y, z; joy: the Joy axes) and button states -- not actions: its output goes through the
teleop mapping (:mod:`robot_rl.teleop`) exactly as a real operator's does. ROS-free; its ROS face
is ``robot_rl.ros_nodes.scripted_operator_node``.

How it drives (one :meth:`ScriptedOperator.step` per control period):

* **sees late**: it acts on the end-effector position of ``reaction_time`` s ago (drawn per
  episode);
* **P-control in the hand's frame**: intended end-effector velocity ``gain * (goal - ee)``
  (gain drawn per episode), turned into device deflections through the inverse of the teleop
  mapping's axes and scales (it knows which way to push), **saturated** at a SpaceMouse's
  ``max_deflection`` (about 0.68 of spacenav's full scale);
* **a hand, not a servo**: deflections follow the intent with a first-order lag, plus tremor
  (white noise), a slow drift (Ornstein-Uhlenbeck) and, on a SpaceMouse, some rotation picked up
  with the translation (cross-talk the mapping must ignore);
* **suboptimal, sometimes**: per episode it may move along the largest error first (an L-shaped
  path), brake late (a higher gain: overshoot with its reaction delay; once it sees the hand
  moving away from a goal it nearly reached it becomes more careful, ``careful_gain``), and it
  pauses now and then (hand still, deadman held);
* **deadman**: pressed ``grab_time`` after the episode starts, held while driving, released after
  the mark;
* **episode marks**: success once the end-effector has looked well within ``task.success_threshold``
  (``success_margin`` of it) and settled (slower than ``settle_speed``) for ``success_hold``
  consecutive steps (then it lets go of the motion and clicks); failure when
  its time (``time_limit`` steps, default ``task.max_steps``) is up; with probability
  ``discard_prob`` per episode it discards the episode somewhere in the middle.

Everything random comes from one ``numpy`` generator seeded at construction: the same seed and
the same observations give the same device stream.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from robot_rl.config import Config
from robot_rl.teleop import (MARK_DISCARD, MARK_FAILURE, MARK_NONE, MARK_SUCCESS, SPACENAV_RANGE,
                             TeleopMapping, resolve_mapping)


@dataclass(frozen=True)
class OperatorParams:
    """How the scripted operator behaves (ranges are drawn uniformly per episode)."""

    reaction_time: tuple[float, float] = (0.1, 0.2)  #: s between seeing and acting
    grab_time: tuple[float, float] = (0.05, 0.2)  #: s from episode start to deadman press
    gain: tuple[float, float] = (2.5, 4.0)  #: 1/s, intended EE velocity per metre of error
    hand_time_constant: float = 0.08  #: s, first-order lag of the hand on the device
    tremor: float = 0.02  #: std of white noise per device axis and step
    drift: float = 0.03  #: stationary std of the slow drift per device axis
    drift_time: float = 0.5  #: s, correlation time of the drift
    crosstalk: float = 0.15  #: SpaceMouse: rotation picked up per unit of translation
    max_deflection: float = SPACENAV_RANGE  #: |device value| the hand can reach
    axis_by_axis: float = 0.3  #: probability per episode: largest error axis first
    overshoot: float = 0.3  #: probability per episode: brakes late (gain x overshoot_gain)
    overshoot_gain: float = 1.6
    careful_gain: float = 0.6  #: after it sees itself move away from a near goal: gain x this
    hesitation_rate: float = 0.2  #: pauses per second while driving
    hesitation_time: tuple[float, float] = (0.1, 0.3)  #: s per pause
    success_hold: int = 2  #: steps seen within the success threshold before marking success
    success_margin: float = 0.7  #: ... within this fraction of it (a person aims for the middle)
    settle_speed: float = 0.08  #: m/s: ... and seen moving slower than this (it has settled)
    press_time: float = 0.1  #: s a mark button is held down
    release_time: float = 0.1  #: s from the mark until the deadman is released
    discard_prob: float = 0.05  #: probability per episode of discarding it mid-way
    time_limit: int | None = None  #: steps until it gives up (failure); None: task.max_steps


@dataclass(frozen=True)
class DeviceCommand:
    """What the device reports this step.

    ``axes``: the device vector (spacenav: Twist linear x, y, z, angular x, y, z; joy: Joy axes);
    ``buttons``: Joy button states (0/1); ``deadman`` / ``mark``: what the operator means by them
    (for tests and logs); ``phase``: grab / drive / mark / release / done.
    """

    axes: np.ndarray
    buttons: tuple[int, ...]
    deadman: bool
    mark: int
    phase: str


@dataclass
class _Episode:
    goal: np.ndarray
    delay: int
    grab: int
    gain: float
    axis_first: bool
    overshoot: bool
    discard_at: int | None
    rot: np.ndarray  # 3x3 cross-talk (SpaceMouse)
    t: int = 0
    phase: str = "grab"
    phase_t: int = 0
    mark: int = MARK_NONE
    inside: int = 0
    pause_left: int = 0
    last_seen: np.ndarray | None = None
    last_dist: float | None = None
    receding: bool = False


class ScriptedOperator:
    """A noisy, delayed, sometimes suboptimal person driving the end-effector to the goal.

    Args:
        config: the run's config (its ``teleop`` mapping, ``task`` and ``sim.control_hz``).
        seed: seeds every random draw.
        params: behaviour (:class:`OperatorParams`).

    Call :meth:`reset` with the goal at each new episode, then :meth:`step` with the observed
    end-effector position once per control period.
    """

    def __init__(self, config: Config, seed: int = 0, params: OperatorParams | None = None):
        self.config = config
        self.params = p = params or OperatorParams()
        self.mapping: TeleopMapping = resolve_mapping(config)
        if self.mapping.out_dim != 3 or not (self.mapping.mode == "cartesian"
                                             or config.task.action_mode == "ee_velocity"):
            raise ValueError(
                "the scripted operator drives the end-effector: it needs task.action_mode "
                "ee_velocity or teleop.mapping cartesian (got action_mode "
                f"{config.task.action_mode!r}, mapping {self.mapping.mode!r})")
        m = self.mapping
        self.dt = config.sim.control_dt
        self.ee_speed = config.task.ee_speed
        self.threshold = config.task.success_threshold
        self.time_limit = p.time_limit if p.time_limit is not None else config.task.max_steps
        self.n_axes = 6 if m.input == "spacenav" else max(6, max(m.axes) + 1)
        used = [m.deadman_button, *m.mark_buttons.values()]
        self.n_buttons = max(used) + 1
        self.rng = np.random.default_rng(seed)
        self._hand = np.zeros(self.n_axes)
        self._drift = np.zeros(self.n_axes)
        self._seen: deque[np.ndarray] = deque()
        self.ep: _Episode | None = None
        self.episodes = 0

    def _steps(self, seconds: float) -> int:
        return max(int(round(seconds / self.dt)), 0)

    def reset(self, goal) -> None:
        """A new episode towards ``goal`` (robot base frame, m)."""
        p, r = self.params, self.rng
        delay = self._steps(r.uniform(*p.reaction_time))
        grab = self._steps(r.uniform(*p.grab_time))
        gain = r.uniform(*p.gain)
        axis_first = bool(r.random() < p.axis_by_axis)
        overshoot = bool(r.random() < p.overshoot)
        discard = bool(r.random() < p.discard_prob)
        discard_at = int(r.integers(int(0.2 * self.time_limit), int(0.5 * self.time_limit) + 1))
        rot = r.normal(0.0, 1.0, (3, 3))
        rot /= np.linalg.norm(rot, axis=1, keepdims=True)
        self.ep = _Episode(goal=np.asarray(goal, dtype=np.float64).copy(), delay=delay, grab=grab,
                           gain=gain * (p.overshoot_gain if overshoot else 1.0),
                           axis_first=axis_first, overshoot=overshoot,
                           discard_at=discard_at if discard else None, rot=rot)
        self._hand[:] = 0.0
        self._drift[:] = 0.0
        self._seen.clear()
        self.episodes += 1

    @property
    def done(self) -> bool:
        """The episode is marked and the deadman released: waiting for the next episode."""
        return self.ep is None or self.ep.phase == "done"

    # -- the person ---------------------------------------------------------------------------

    def _intent(self, ep: _Episode, seen: np.ndarray) -> np.ndarray | None:
        """Intended device deflections (before the hand's lag and noise); None: hands off."""
        m, p = self.mapping, self.params
        err = ep.goal - seen
        if np.linalg.norm(err) < p.success_margin * self.threshold:
            return None  # there: lets the puck centre and watches it settle
        u = ep.gain * err / self.ee_speed  # intended action (v / ee_speed), per base axis
        if ep.axis_first:
            j = int(np.argmax(np.abs(err)))
            if abs(err[j]) > self.threshold:
                u = np.where(np.arange(3) == j, u, 0.25 * u)
        dev = np.zeros(self.n_axes)
        for i, (a, s) in enumerate(zip(m.axes, m.scale)):
            if a >= 0 and s != 0.0:
                dev[a] += u[i] / s
        return np.clip(dev, -p.max_deflection, p.max_deflection)

    def _buttons(self, deadman: bool, mark: int) -> tuple[int, ...]:
        b = [0] * self.n_buttons
        if deadman:
            b[self.mapping.deadman_button] = 1
        if mark != MARK_NONE and mark in self.mapping.mark_buttons:
            b[self.mapping.mark_buttons[mark]] = 1
        return tuple(b)

    def idle(self) -> DeviceCommand:
        """Hands off the device: no deflection, no button pressed (the deadman released)."""
        return DeviceCommand(np.zeros(self.n_axes), self._buttons(False, MARK_NONE), False,
                             MARK_NONE, "done")

    def step(self, ee_pos) -> DeviceCommand:
        """What the device reports this control period, given the end-effector position now."""
        p, r = self.params, self.rng
        ep = self.ep
        zero = np.zeros(self.n_axes)
        if ep is None:
            return DeviceCommand(zero, self._buttons(False, MARK_NONE), False, MARK_NONE, "done")
        self._seen.append(np.asarray(ee_pos, dtype=np.float64).copy())
        while len(self._seen) > ep.delay + 1:
            self._seen.popleft()
        seen = self._seen[0]  # what it saw reaction_time ago
        ep.t += 1
        ep.phase_t += 1
        noise = r.normal(0.0, 1.0, (2, self.n_axes))  # drawn every step: a fixed stream

        if ep.phase == "grab":
            if ep.phase_t >= ep.grab:
                ep.phase, ep.phase_t = "drive", 0
            return DeviceCommand(zero, self._buttons(False, MARK_NONE), False, MARK_NONE, "grab")

        if ep.phase == "drive":
            dist = float(np.linalg.norm(ep.goal - seen))
            receding = ep.last_dist is not None and dist > ep.last_dist + 1e-3
            if receding and not ep.receding and dist < 3.0 * self.threshold:
                ep.gain *= p.careful_gain  # overshot a goal it nearly had: slower from here on
            ep.receding, ep.last_dist = receding, dist
            speed = (float(np.linalg.norm(seen - ep.last_seen)) / self.dt
                     if ep.last_seen is not None else math.inf)
            ep.last_seen = seen
            settled = dist < p.success_margin * self.threshold and speed < p.settle_speed
            ep.inside = ep.inside + 1 if settled else 0
            if ep.inside >= p.success_hold:
                self._to_mark(ep, MARK_SUCCESS)
            elif ep.t >= self.time_limit:
                self._to_mark(ep, MARK_FAILURE)
            elif ep.discard_at is not None and ep.t >= ep.discard_at:
                self._to_mark(ep, MARK_DISCARD)
            else:
                return self._drive(ep, seen, noise)

        if ep.phase == "mark":
            pressing = ep.phase_t <= max(self._steps(p.press_time), 1)
            if ep.phase_t >= max(self._steps(p.press_time), 1) + max(self._steps(p.release_time), 1):
                ep.phase, ep.phase_t = "done", 0
                return DeviceCommand(zero, self._buttons(False, MARK_NONE), False, MARK_NONE,
                                     "release")
            mark = ep.mark if pressing else MARK_NONE
            return DeviceCommand(zero, self._buttons(True, mark), True, mark, "mark")
        return DeviceCommand(zero, self._buttons(False, MARK_NONE), False, MARK_NONE, "done")

    def _to_mark(self, ep: _Episode, mark: int) -> None:
        ep.phase, ep.phase_t, ep.mark = "mark", 0, mark
        self._hand[:] = 0.0  # lets go of the puck: the spring centres it

    def _drive(self, ep: _Episode, seen: np.ndarray, noise: np.ndarray) -> DeviceCommand:
        p, r = self.params, self.rng
        if ep.pause_left > 0:
            ep.pause_left -= 1
            intent = np.zeros(self.n_axes)
        elif r.random() < p.hesitation_rate * self.dt:
            ep.pause_left = self._steps(r.uniform(*p.hesitation_time))
            intent = np.zeros(self.n_axes)
        else:
            intent = self._intent(ep, seen)
        hands_off = intent is None
        if hands_off:
            intent = np.zeros(self.n_axes)
        k = 1.0 - math.exp(-self.dt / p.hand_time_constant) if p.hand_time_constant > 0 else 1.0
        self._hand += k * (intent - self._hand)
        a = math.exp(-self.dt / p.drift_time)
        self._drift = a * self._drift + p.drift * math.sqrt(1.0 - a * a) * noise[0]
        dev = self._hand + (0.0 if hands_off else 1.0) * (self._drift + p.tremor * noise[1])
        if self.mapping.input == "spacenav" and p.crosstalk > 0:
            dev[3:6] += p.crosstalk * (ep.rot @ self._hand[0:3])
        dev = np.clip(dev, -1.0, 1.0)
        return DeviceCommand(dev, self._buttons(True, MARK_NONE), True, MARK_NONE, "drive")
