"""Teleoperation input -> the policy's action space (ROS-free; the teleop node's logic).

A person drives the arm with a SpaceMouse (the ``spacenav`` driver publishes
``geometry_msgs/Twist`` on ``/spacenav/twist`` and ``sensor_msgs/Joy`` on ``/spacenav/joy``) or a
gamepad (``joy``'s ``game_controller_node`` publishes ``sensor_msgs/Joy``). :class:`TeleopMapper`
turns what the device reports into what ``TeleopCommand`` carries: an action in the policy's
action space ([-1, 1]^n), the deadman and at most one episode mark per command. The same mapping
serves the live teleop node and anything that maps a recorded device stream (a rosbag) into the
action space.

Device vector
    spacenav: the Twist as ``(linear.x, linear.y, linear.z, angular.x, angular.y, angular.z)``
    (the driver's frame: x away from the operator, y left, z up); its buttons come from the Joy
    topic. joy: the Joy ``axes`` (game_controller_node: 0 LEFTX, 1 LEFTY, 2 RIGHTX, 3 RIGHTY,
    4/5 triggers; left and up are positive) and ``buttons`` (0 A, 1 B, 2 X, 3 Y, ...,
    9 LEFTSHOULDER, 10 RIGHTSHOULDER).

Mapping (``teleop`` config section)
    output element ``i`` = clip(``axis_scale[i]`` * deadband(device[``axes[i]``]), -1, 1), where
    deadband(x) = 0 for |x| < ``deadband`` and sign(x) (|x| - deadband) / (1 - deadband) above
    (full deflection still gives full scale). ``direct``: the outputs are the action elements.
    ``cartesian`` (joint action mode): the outputs are the end-effector velocity (v_x, v_y, v_z)
    in units of ``task.ee_speed`` (robot base frame), turned into joint actions by damped least
    squares at the current joint positions, scaled down uniformly into [-1, 1] -- a SpaceMouse
    then drives the hand even when the policy acts on joints.

Defaults (``None`` in the config)

    ========== ============ ================================================ ======================
    input      action mode  axes -> outputs                                  buttons
    ========== ============ ================================================ ======================
    spacenav   ee_velocity  linear x, y, z -> v_x, v_y, v_z; scale 1.4       deadman 0, success 1,
               joint        the same, ``cartesian``                          failure 2, discard 3
    joy        ee_velocity  LEFTY -> v_x, LEFTX -> v_y, RIGHTY -> v_z;       deadman 9 (LB),
                            scale 1.0                                        success 0 (A),
               joint        LEFTX, LEFTY, RIGHTX, RIGHTY -> joints 1-4;      failure 1 (B),
                            with RB (10) held: LEFTX, LEFTY, RIGHTX ->       discard 2 (X)
                            joints 5-7; scale 0.5 (half of the action range)
    ========== ============ ================================================ ======================

    A SpaceMouse at full deflection reads about +-0.68 (about 350 counts over the driver's
    ``full_scale`` of 512), so the spacenav scale 1.4 maps the device's real range onto the
    action range; clipping handles devices that go further. The default axes assume the operator
    faces the way the robot's x axis points (standing behind the base); facing the robot, negate
    the x and y scales. Two-button SpaceMice have only the deadman and success buttons by
    default; map the others to buttons the device has, or mark those episodes another way.

Deadman and input loss
    The deadman button must be held: released -> ``deadman`` false and a zero action. No device
    message for ``input_timeout`` s (either topic for spacenav) -> the input is lost: deadman
    false, zero action, and a deadman held through the dropout does not re-engage until it has
    been released and pressed again. The deadman engages only after it has been seen released
    (spacenav reports buttons as events, so its buttons start released; a joy deadman held at
    start must be released first). ``cartesian`` also needs a joint state no older than
    ``input_timeout``.

Episode marks
    A mark button fires once per press (a released -> pressed edge); the mark goes out in the
    next command, one mark per command (several presses within one period queue up). Marks are
    independent of the deadman. A joy button's first reading only sets its baseline (a button
    already held at start is no press); spacenav's buttons start released.

Button arrays shorter than a configured index leave that button's state as it was (the older
spacenav driver sends motion messages with an empty ``buttons`` array).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robot_rl.config import Config, ConfigError

#: Episode marks (the constants of ``robot_rl_interfaces/TeleopCommand``).
MARK_NONE, MARK_SUCCESS, MARK_FAILURE, MARK_DISCARD = 0, 1, 2, 3
MARK_NAMES = {MARK_NONE: "none", MARK_SUCCESS: "success", MARK_FAILURE: "failure",
              MARK_DISCARD: "discard"}

#: The spacenav device vector: Twist components, in this order.
SPACENAV_AXES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")
#: About what a SpaceMouse reads at full deflection (spacenav's full_scale 512, ~350 counts).
SPACENAV_RANGE = 0.68
#: Default spacenav scale: the device's real range onto the action range.
SPACENAV_SCALE = 1.4

# game_controller_node indices (joy's README)
JOY_LEFTX, JOY_LEFTY, JOY_RIGHTX, JOY_RIGHTY = 0, 1, 2, 3
JOY_A, JOY_B, JOY_X, JOY_LB, JOY_RB = 0, 1, 2, 9, 10


@dataclass(frozen=True)
class TeleopMapping:
    """A resolved ``teleop`` section (no ``None`` left), for one action space.

    ``mode`` is ``direct`` or ``cartesian``; ``axes`` / ``scale`` / ``shift_axes`` have one entry
    per output element (``out_dim``: the action dimension, or 3 for ``cartesian``).
    ``mark_buttons`` maps a mark to its button (only enabled ones).
    """

    input: str
    mode: str
    action_mode: str
    action_dim: int
    axes: tuple[int, ...]
    scale: tuple[float, ...]
    shift_button: int
    shift_axes: tuple[int, ...] | None
    deadband: float
    deadman_button: int
    mark_buttons: dict[int, int]
    input_timeout: float

    @property
    def out_dim(self) -> int:
        return 3 if self.mode == "cartesian" else self.action_dim

    def describe(self) -> str:
        marks = " ".join(f"{MARK_NAMES[m]}={b}" for m, b in sorted(self.mark_buttons.items()))
        shift = (f" shift_button={self.shift_button} shift_axes={list(self.shift_axes)}"
                 if self.shift_axes is not None else "")
        return (f"input={self.input} action_mode={self.action_mode} mapping={self.mode} "
                f"axes={list(self.axes)} scale={[round(s, 4) for s in self.scale]}{shift} "
                f"deadband={self.deadband:g} deadman_button={self.deadman_button} {marks} "
                f"input_timeout={self.input_timeout:g}s")


def _defaults(inp: str, action_mode: str, mode: str, n: int) -> dict:
    if inp == "spacenav":
        d = {"deadman_button": 0, "success_button": 1, "failure_button": 2, "discard_button": 3,
             "shift_button": -1, "shift_axes": None}
        if mode == "cartesian" or action_mode == "ee_velocity":
            d.update(axes=(0, 1, 2), axis_scale=(SPACENAV_SCALE,) * 3)
        else:  # joint, direct: the six device axes onto the first six joints
            axes = tuple(i if i < 6 else -1 for i in range(n))
            d.update(axes=axes, axis_scale=(SPACENAV_SCALE,) * n)
        return d
    d = {"deadman_button": JOY_LB, "success_button": JOY_A, "failure_button": JOY_B,
         "discard_button": JOY_X}
    if mode == "cartesian" or action_mode == "ee_velocity":
        d.update(axes=(JOY_LEFTY, JOY_LEFTX, JOY_RIGHTY), axis_scale=(1.0,) * 3,
                 shift_button=-1, shift_axes=None)
    else:  # joint, direct: sticks -> joints 1-4; with RB held -> joints 5-7
        base = (JOY_LEFTX, JOY_LEFTY, JOY_RIGHTX, JOY_RIGHTY)
        shifted = (JOY_LEFTX, JOY_LEFTY, JOY_RIGHTX)
        axes = tuple(base[i] if i < 4 else -1 for i in range(n))
        shift_axes = tuple(shifted[i - 4] if 4 <= i < 7 else -1 for i in range(n))
        d.update(axes=axes, axis_scale=(0.5,) * n, shift_button=JOY_RB, shift_axes=shift_axes)
    return d


def resolve_mapping(cfg: Config) -> TeleopMapping:
    """The ``teleop`` section with its defaults filled in for ``cfg.task.action_mode``.

    Raises :class:`ConfigError` naming the ``teleop.*`` field that does not fit.
    """
    t = cfg.teleop
    action_mode = cfg.task.action_mode
    n = cfg.robot.n_joints if action_mode == "joint" else 3
    mode = t.mapping
    if mode == "auto":
        mode = "cartesian" if (t.input == "spacenav" and action_mode == "joint") else "direct"
    if mode == "cartesian" and action_mode == "ee_velocity":
        mode = "direct"  # the action already is the end-effector velocity
    d = _defaults(t.input, action_mode, mode, n)
    out_dim = 3 if mode == "cartesian" else n
    what = "v_x, v_y, v_z" if out_dim == 3 and (mode == "cartesian" or action_mode != "joint") \
        else "one per joint"
    errors = []

    def pick(name):
        v = getattr(t, name)
        return d[name] if v is None else v

    axes = tuple(int(a) for a in pick("axes"))
    scale = tuple(float(s) for s in pick("axis_scale"))
    shift_button = int(pick("shift_button"))
    shift_axes = t.shift_axes if t.shift_axes is not None else (
        d["shift_axes"] if t.shift_button is None else None)
    max_axis = 5 if t.input == "spacenav" else 10**6
    for name, vals in (("axes", axes), ("shift_axes", shift_axes)):
        if vals is None:
            continue
        if len(vals) != out_dim:
            errors.append(f"teleop.{name}: expected {out_dim} values ({what}), got {len(vals)}")
        for i, a in enumerate(vals):
            if not -1 <= a <= max_axis:
                rng = "0..5 (twist linear x, y, z, angular x, y, z)" if t.input == "spacenav" \
                    else ">= 0"
                errors.append(f"teleop.{name}[{i}]: expected -1 (unused) or an axis {rng}, got {a}")
    if len(scale) != out_dim:
        errors.append(f"teleop.axis_scale: expected {out_dim} values ({what}), got {len(scale)}")
    if not all(np.isfinite(scale)):
        errors.append(f"teleop.axis_scale: values must be finite, got {list(scale)}")
    if shift_button >= 0 and shift_axes is None:
        errors.append(f"teleop.shift_axes: needed with shift_button = {shift_button}")
    if shift_button < 0 and t.shift_axes is not None:
        errors.append("teleop.shift_axes: given without a shift_button")
    if shift_button < 0:
        shift_axes = None
    deadman = int(pick("deadman_button"))
    if deadman < 0:
        errors.append("teleop.deadman_button: a deadman button is required (got -1)")
    buttons = {"deadman_button": deadman, "shift_button": shift_button}
    marks = {}
    for mark, name in ((MARK_SUCCESS, "success_button"), (MARK_FAILURE, "failure_button"),
                       (MARK_DISCARD, "discard_button")):
        b = int(pick(name))
        buttons[name] = b
        if b >= 0:
            marks[mark] = b
    used: dict[int, str] = {}
    for name, b in buttons.items():
        if b < 0:
            continue
        if b in used:
            errors.append(f"teleop.{name}: button {b} is already the {used[b]}")
        used[b] = name
    if errors:
        raise ConfigError("invalid teleop configuration:\n" + "\n".join(errors))
    return TeleopMapping(input=t.input, mode=mode, action_mode=action_mode, action_dim=n,
                         axes=axes, scale=scale, shift_button=shift_button,
                         shift_axes=tuple(shift_axes) if shift_axes is not None else None,
                         deadband=float(t.deadband), deadman_button=deadman, mark_buttons=marks,
                         input_timeout=float(t.input_timeout))


def deadband(x: np.ndarray, db: float) -> np.ndarray:
    """0 below ``db``; above, rescaled so that |x| = 1 still gives 1 (continuous at ``db``)."""
    x = np.asarray(x, dtype=np.float64)
    if db <= 0:
        return x
    mag = np.maximum(np.abs(x) - db, 0.0) / (1.0 - db)
    return np.sign(x) * mag


def map_axes(values: Sequence[float], axes: Sequence[int], scale: Sequence[float],
             db: float) -> np.ndarray:
    """Output elements from a device vector: pick, deadband, scale, clip to [-1, 1].

    An axis of -1, or beyond the device vector's length, gives 0.
    """
    v = np.asarray(values, dtype=np.float64)
    raw = np.array([v[a] if 0 <= a < v.size else 0.0 for a in axes], dtype=np.float64)
    return np.clip(deadband(raw, db) * np.asarray(scale, dtype=np.float64), -1.0, 1.0)


@dataclass(frozen=True)
class TeleopOutput:
    """One command: ``action`` (float32, the policy's action space), ``deadman``, ``mark`` and,
    when the deadman is false, why (``reason``)."""

    action: np.ndarray
    deadman: bool
    mark: int
    reason: str = ""


class TeleopMapper:
    """The teleop node's state: device input in, one :class:`TeleopOutput` per control period.

    Feed it ``on_axes`` (spacenav: the Twist as 6 values; joy: ``msg.axes``), ``on_buttons``
    (``msg.buttons`` of the Joy topic) and, for ``cartesian``, ``on_joint_state``; call
    :meth:`command` at the control rate. ``now`` is any monotonic clock in seconds.

    Args:
        mapping: from :func:`resolve_mapping`.
        action_mapper: the task's :class:`robot_rl.actions.ActionMapper` (``cartesian`` only:
            its kinematics, ``ee_speed``, damping and joint velocity scale).
    """

    def __init__(self, mapping: TeleopMapping, action_mapper=None, kinematics=None):
        self.m = mapping
        self.action_mapper = action_mapper
        self.kinematics = kinematics
        if mapping.mode == "cartesian":
            if action_mapper is None:
                raise ValueError("cartesian teleop mapping needs the task's ActionMapper")
            self.kinematics = kinematics or action_mapper.kinematics
            if self.kinematics is None:
                raise ValueError("cartesian teleop mapping needs the robot's kinematics")
        self._axes = np.zeros(0)
        self._t_axes: float | None = None
        self._t_buttons: float | None = None
        self._q: np.ndarray | None = None
        self._t_q: float | None = None
        # Button states: True / False, or None (unknown: joy before its first message).
        start = False if mapping.input == "spacenav" else None
        self._watched = sorted({mapping.deadman_button, *mapping.mark_buttons.values(),
                                *([mapping.shift_button] if mapping.shift_button >= 0 else [])})
        self._down: dict[int, bool | None] = {b: start for b in self._watched}
        self._mark_of = {b: m for m, b in mapping.mark_buttons.items()}
        self._armed = False
        self._lost = True  # no input yet
        self.pending: deque[int] = deque(maxlen=16)
        # counters (diagnostics)
        self.bad_messages = 0
        self.marks_fired = {m: 0 for m in mapping.mark_buttons}
        self.losses = 0
        self.missing_axes = False
        self.last_reason = "waiting for input"

    @classmethod
    def from_config(cls, cfg: Config) -> TeleopMapper:
        """The mapper for ``cfg`` (its ``teleop`` section, task and robot)."""
        mapping = resolve_mapping(cfg)
        if mapping.mode != "cartesian":
            return cls(mapping)
        from robot_rl.actions import ActionMapper
        from robot_rl.kinematics import Kinematics

        kin = Kinematics.from_profile(cfg.robot)
        return cls(mapping, ActionMapper(cfg.task, cfg.robot, kinematics=kin), kin)

    # -- inputs -------------------------------------------------------------------------------

    def on_axes(self, values: Sequence[float], now: float) -> bool:
        """Device motion (spacenav twist as 6 values, or joy axes). False: refused (non-finite)."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1 or not np.all(np.isfinite(v)):
            self.bad_messages += 1
            return False
        self._axes = v
        self._t_axes = now
        used = [a for a in (*self.m.axes, *(self.m.shift_axes or ())) if a >= 0]
        self.missing_axes = bool(used) and max(used) >= v.size
        return True

    def on_buttons(self, buttons: Sequence[int], now: float) -> None:
        """Button states (Joy ``buttons``); indices beyond the array keep their state."""
        self._t_buttons = now
        if self._down[self.m.deadman_button] is False:
            self._armed = True  # seen released: a press from here on engages
        for b in self._watched:
            if b >= len(buttons):
                continue
            down = bool(buttons[b])
            before = self._down[b]
            self._down[b] = down
            if b in self._mark_of and down and before is False:
                mark = self._mark_of[b]
                self.pending.append(mark)
                self.marks_fired[mark] += 1
        if self._down[self.m.deadman_button] is False:
            self._armed = True

    def on_joy(self, axes: Sequence[float], buttons: Sequence[int], now: float) -> bool:
        """A joy (gamepad) message: axes and buttons together."""
        ok = self.on_axes(axes, now)
        if ok:
            self.on_buttons(buttons, now)
        return ok

    def on_joint_state(self, q: Sequence[float], now: float) -> None:
        """Joint positions in the profile's order (``cartesian`` mapping)."""
        self._q = np.asarray(q, dtype=np.float64)
        self._t_q = now

    # -- output -------------------------------------------------------------------------------

    def _stale(self, now: float) -> str:
        """Why the input counts as lost ('' if it does not)."""
        to = self.m.input_timeout
        what = "twist" if self.m.input == "spacenav" else "joy"
        if self._t_axes is None:
            return f"no {what} input yet"
        if now - self._t_axes > to:
            return f"no {what} input for {now - self._t_axes:.2f} s"
        if self.m.input == "spacenav":
            if self._t_buttons is None:
                return "no spacenav buttons (Joy) yet"
            if now - self._t_buttons > to:
                return f"no spacenav buttons (Joy) for {now - self._t_buttons:.2f} s"
        return ""

    def button(self, b: int) -> bool:
        return bool(self._down.get(b))

    def outputs(self) -> np.ndarray:
        """The mapped output elements (before the cartesian step), from the current device state."""
        m = self.m
        axes = m.axes
        if m.shift_axes is not None and self.button(m.shift_button):
            axes = m.shift_axes
        return map_axes(self._axes, axes, m.scale, m.deadband)

    def _to_action(self, out: np.ndarray) -> np.ndarray:
        if self.m.mode == "direct":
            return out
        from robot_rl.actions import dls_joint_velocities

        am = self.action_mapper
        v = out * am.ee_speed
        dq = dls_joint_velocities(self.kinematics.position_jacobian(self._q), v, am.damping)
        a = dq / am.dq_scale
        peak = float(np.max(np.abs(a))) if a.size else 0.0
        return a / peak if peak > 1.0 else a

    def command(self, now: float) -> TeleopOutput:
        """The command for this control period (pops at most one pending mark)."""
        mark = self.pending.popleft() if self.pending else MARK_NONE
        zero = np.zeros(self.m.action_dim, dtype=np.float32)
        why = self._stale(now)
        if why:
            if not self._lost and self._t_axes is not None:
                self.losses += 1
            self._lost = True
            self._armed = False
            self._axes = np.zeros(0)
            self.last_reason = f"input lost: {why}" if self._t_axes is not None else why
            return TeleopOutput(zero, False, mark, self.last_reason)
        self._lost = False
        dm = self._down[self.m.deadman_button]
        if dm is False:
            self._armed = True
        if not dm:
            self.last_reason = "deadman released" if dm is False else "deadman state unknown"
            return TeleopOutput(zero, False, mark, self.last_reason)
        if not self._armed:
            self.last_reason = "deadman held since before the input came: release and press again"
            return TeleopOutput(zero, False, mark, self.last_reason)
        if self.m.mode == "cartesian":
            if self._t_q is None or now - self._t_q > self.m.input_timeout:
                self.last_reason = "no fresh joint state (cartesian mapping)"
                return TeleopOutput(zero, False, mark, self.last_reason)
        action = np.clip(self._to_action(self.outputs()), -1.0, 1.0).astype(np.float32)
        self.last_reason = ""
        return TeleopOutput(action, True, mark, "")
