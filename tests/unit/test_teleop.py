"""The teleop mapping (robot_rl.teleop): device input -> TeleopCommand content, without ROS.

Axis mapping, sign, scale, deadband, clipping; the deadman (release -> zero action, input loss ->
deadman false and a re-arm); edge-triggered episode marks; the defaults per input and action
mode and the configuration errors that name their field.
"""
from __future__ import annotations

import numpy as np
import pytest

from robot_rl.config import ConfigError, load_config
from robot_rl.teleop import (MARK_DISCARD, MARK_FAILURE, MARK_NONE, MARK_SUCCESS, TeleopMapper,
                             deadband, map_axes, resolve_mapping)

pytestmark = pytest.mark.unit


def _cfg(*overrides):
    return load_config(None, list(overrides))


def _spacenav(*overrides):
    return TeleopMapper.from_config(_cfg("task.action_mode=ee_velocity", *overrides))


def _twist(lx=0.0, ly=0.0, lz=0.0, ax=0.0, ay=0.0, az=0.0):
    return [lx, ly, lz, ax, ay, az]


# --------------------------------------------------------------------------- defaults, errors


def test_defaults_per_input_and_action_mode():
    m = resolve_mapping(_cfg("task.action_mode=ee_velocity"))
    assert (m.input, m.mode, m.action_dim, m.axes) == ("spacenav", "direct", 3, (0, 1, 2))
    assert m.scale == (1.4, 1.4, 1.4) and m.deadman_button == 0
    assert m.mark_buttons == {MARK_SUCCESS: 1, MARK_FAILURE: 2, MARK_DISCARD: 3}
    # A SpaceMouse drives the hand in the joint action mode too.
    m = resolve_mapping(_cfg())
    assert (m.mode, m.action_dim, m.out_dim, m.axes) == ("cartesian", 7, 3, (0, 1, 2))
    # Gamepad, joint mode: sticks -> joints 1-4, with RB -> joints 5-7.
    m = resolve_mapping(_cfg("teleop.input=joy"))
    assert (m.mode, m.action_dim) == ("direct", 7)
    assert m.axes == (0, 1, 2, 3, -1, -1, -1) and m.shift_axes == (-1, -1, -1, -1, 0, 1, 2)
    assert m.shift_button == 10 and m.deadman_button == 9 and m.scale == (0.5,) * 7
    m = resolve_mapping(_cfg("teleop.input=joy", "task.action_mode=ee_velocity"))
    assert m.axes == (1, 0, 3) and m.shift_axes is None and m.shift_button == -1
    # cartesian in ee_velocity mode is the direct mapping (the action is the EE velocity).
    assert resolve_mapping(_cfg("teleop.mapping=cartesian", "task.action_mode=ee_velocity")
                           ).mode == "direct"
    assert "deadman_button=0" in resolve_mapping(_cfg()).describe()


@pytest.mark.parametrize("overrides, match", [
    (["teleop.axes=[0, 1]"], r"teleop.axes: expected 3 values \(v_x, v_y, v_z\), got 2"),
    (["teleop.axis_scale=[1, 1]"], r"teleop.axis_scale: expected 3 values"),
    (["teleop.axes=[0, 1, 6]"], r"teleop.axes\[2\]: expected -1 \(unused\) or an axis 0..5"),
    (["teleop.success_button=0"], r"teleop.success_button: button 0 is already the deadman"),
    (["teleop.deadman_button=-1"], r"teleop.deadman_button: a deadman button is required"),
    (["teleop.shift_button=5"], r"teleop.shift_axes: needed with shift_button = 5"),
    (["teleop.shift_axes=[0, 1, 2]"], r"teleop.shift_axes: given without a shift_button"),
    (["teleop.input=joy", "teleop.mapping=direct", "teleop.axes=[0, 1, 2]"],
     r"teleop.axes: expected 7 values \(one per joint\), got 3"),
])
def test_bad_mappings_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve_mapping(_cfg("task.action_mode=ee_velocity", *overrides)
                        if "teleop.input=joy" not in overrides else _cfg(*overrides))


def test_bad_values_are_refused_by_the_config():
    with pytest.raises(ConfigError, match="teleop.input"):
        _cfg("teleop.input=keyboard")
    with pytest.raises(ConfigError, match="teleop.deadband"):
        _cfg("teleop.deadband=1.0")
    with pytest.raises(ConfigError, match="teleop.input_timeout"):
        _cfg("teleop.input_timeout=0")


# --------------------------------------------------------------------------- the mapping


def test_deadband_is_zero_inside_continuous_and_full_scale_at_one():
    x = np.array([0.0, 0.04, -0.05, 0.1, -0.1, 1.0, -1.0, 0.55])
    y = deadband(x, 0.1)
    np.testing.assert_allclose(y, [0, 0, 0, 0, 0, 1, -1, 0.5], atol=1e-12)
    assert deadband(np.array([0.1 + 1e-9]), 0.1)[0] == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_array_equal(deadband(x, 0.0), x)


def test_axis_mapping_sign_scale_and_clip():
    # v_x <- linear.y (negated), v_y <- linear.x (x2), v_z <- angular.z; angular x/y ignored.
    out = map_axes(_twist(lx=0.3, ly=0.5, az=0.9, ax=0.8, ay=-0.8), axes=(1, 0, 5),
                   scale=(-1.0, 2.0, 1.5), db=0.0)
    np.testing.assert_allclose(out, [-0.5, 0.6, 1.0])  # 1.35 clipped to 1
    out = map_axes(_twist(lx=0.3, ly=0.5), axes=(-1, 0, 9), scale=(1, 1, 1), db=0.0)
    np.testing.assert_allclose(out, [0.0, 0.3, 0.0])  # -1 and a missing axis read 0
    # Through the mapper: deadband 0.05, scale 1.4, clip to [-1, 1].
    m = _spacenav()
    m.on_axes(_twist(0.5, -0.03, -0.9, 0.4, 0.4, 0.4), 0.0)
    m.on_buttons([1], 0.0)
    c = m.command(0.01)
    assert c.deadman and c.action.dtype == np.float32
    np.testing.assert_allclose(c.action, [1.4 * 0.45 / 0.95, 0.0, -1.0], rtol=1e-6)


def test_custom_axes_and_signs_from_the_config():
    m = _spacenav("teleop.axes=[1, 0, 2]", "teleop.axis_scale=[-1.0, -1.0, 1.0]",
                  "teleop.deadband=0")
    m.on_axes(_twist(0.2, 0.4, 0.1), 0.0)
    m.on_buttons([1], 0.0)
    np.testing.assert_allclose(m.command(0.0).action, [-0.4, -0.2, 0.1], rtol=1e-6)


def test_deadman_release_gives_zero_action_and_deadman_false():
    m = _spacenav()
    m.on_axes(_twist(0.5, 0.5, 0.5), 0.0)
    m.on_buttons([0], 0.0)
    c = m.command(0.0)
    assert not c.deadman and not c.action.any() and c.reason == "deadman released"
    m.on_buttons([1], 0.02)
    c = m.command(0.05)
    assert c.deadman and np.all(c.action > 0.5)
    m.on_buttons([0, 0], 0.07)  # released while the puck is still deflected
    c = m.command(0.1)
    assert not c.deadman and not c.action.any() and c.action.shape == (3,)


def test_stale_input_drops_the_deadman_and_requires_a_re_press():
    m = _spacenav("teleop.input_timeout=0.2")
    assert m.command(0.0).reason == "no twist input yet"
    m.on_axes(_twist(0.5), 0.0)
    m.on_buttons([1], 0.0)
    assert m.command(0.1).deadman
    c = m.command(0.25)  # nothing for 0.25 s > 0.2 s
    assert not c.deadman and not c.action.any()
    assert c.reason.startswith("input lost: no twist input for 0.25 s")
    assert m.losses == 1
    # The device comes back with the deadman still held: not driving until released + pressed.
    m.on_axes(_twist(0.5), 0.3)
    m.on_buttons([1], 0.3)
    c = m.command(0.3)
    assert not c.deadman and "release and press again" in c.reason
    m.on_buttons([0], 0.32)
    m.on_buttons([1], 0.34)
    assert m.command(0.35).deadman
    # spacenav: its button topic going silent is input loss too.
    m.on_axes(_twist(0.5), 0.6)
    c = m.command(0.6)
    assert not c.deadman and "no spacenav buttons (Joy) for" in c.reason


def test_old_spacenav_driver_empty_buttons_keep_the_state():
    # Older spacenav drivers send motion messages with an empty buttons array and a button
    # message with only [0..bnum]: a missing index is "no news", not "released".
    m = _spacenav()
    m.on_axes(_twist(0.5), 0.0)
    m.on_buttons([1], 0.0)
    m.on_buttons([], 0.03)
    assert m.command(0.05).deadman
    m.on_buttons([1, 1], 0.06)  # success while driving
    c = m.command(0.1)
    assert c.deadman and c.mark == MARK_SUCCESS


def test_marks_are_edge_triggered_once_per_press_and_queue_up():
    m = _spacenav()
    m.on_axes(_twist(), 0.0)
    marks = []
    for i in range(6):  # success held down over six messages (and three periods)
        m.on_buttons([0, 1], 0.01 * i)
        if i % 2:
            marks.append(m.command(0.01 * i).mark)
    assert marks == [MARK_SUCCESS, MARK_NONE, MARK_NONE]
    m.on_buttons([0, 0], 0.07)
    m.on_buttons([0, 1], 0.08)  # a second press
    m.on_buttons([0, 0, 1, 0], 0.09)  # and failure within the same period
    m.on_buttons([0, 0, 0, 1], 0.095)  # and discard
    got = [m.command(0.1 + 0.05 * i).mark for i in range(4)]
    assert got == [MARK_SUCCESS, MARK_FAILURE, MARK_DISCARD, MARK_NONE]
    assert m.marks_fired == {MARK_SUCCESS: 2, MARK_FAILURE: 1, MARK_DISCARD: 1}
    # Marks do not need the deadman, and a mark survives input loss until it is sent.
    m.on_buttons([0, 0], 0.3)
    m.on_buttons([0, 1], 0.3)
    c = m.command(5.0)
    assert not c.deadman and c.mark == MARK_SUCCESS


def test_joy_first_reading_is_only_a_baseline():
    m = TeleopMapper.from_config(_cfg("teleop.input=joy", "task.action_mode=ee_velocity"))
    buttons = [1] + [0] * 10 + [0]  # A (success) held when the node starts
    buttons[9] = 1  # and LB (deadman)
    m.on_joy([0.0] * 6, buttons, 0.0)
    c = m.command(0.0)
    assert c.mark == MARK_NONE and not c.deadman  # held since before: no press, not armed
    buttons[0] = buttons[9] = 0
    m.on_joy([0.0] * 6, buttons, 0.02)
    buttons[0] = buttons[9] = 1
    m.on_joy([0.0, 0.8, 0.0, -0.5, 0.0, 0.0], buttons, 0.04)
    c = m.command(0.05)
    assert c.mark == MARK_SUCCESS and c.deadman
    # LEFTY -> v_x, LEFTX -> v_y, RIGHTY -> v_z
    np.testing.assert_allclose(c.action, [0.75 / 0.95, 0.0, -0.45 / 0.95], rtol=1e-6)


def test_joy_joint_mode_shift_layer():
    m = TeleopMapper.from_config(_cfg("teleop.input=joy", "teleop.deadband=0"))
    buttons = [0] * 11
    m.on_joy([0.0] * 6, buttons, 0.0)
    buttons[9] = 1
    axes = [0.2, 0.4, -0.6, 0.8, -1.0, -1.0]  # LEFTX, LEFTY, RIGHTX, RIGHTY, triggers
    m.on_joy(axes, buttons, 0.01)
    np.testing.assert_allclose(m.command(0.02).action, [0.1, 0.2, -0.3, 0.4, 0, 0, 0], rtol=1e-6)
    buttons[10] = 1  # RB: the sticks drive joints 5-7
    m.on_joy(axes, buttons, 0.03)
    np.testing.assert_allclose(m.command(0.04).action, [0, 0, 0, 0, 0.1, 0.2, -0.3], rtol=1e-6)


def test_cartesian_mapping_moves_the_hand_the_way_the_puck_is_pushed():
    cfg = _cfg()  # joint action mode, spacenav -> cartesian
    m = TeleopMapper.from_config(cfg)
    q = np.asarray(cfg.robot.home)
    m.on_axes(_twist(0.6, 0.0, -0.3), 0.0)
    m.on_buttons([1], 0.0)
    c = m.command(0.0)
    assert not c.deadman and c.reason == "no fresh joint state (cartesian mapping)"
    m.on_joint_state(q, 0.0)
    c = m.command(0.01)
    assert c.deadman and c.action.shape == (7,) and np.all(np.abs(c.action) <= 1.0)
    am = m.action_mapper
    v = m.kinematics.position_jacobian(q) @ (c.action * am.dq_scale)
    want = np.array([0.6, 0.0, -0.3])
    assert v @ want / (np.linalg.norm(v) * np.linalg.norm(want)) > 0.99
    m.on_joint_state(q, 0.0)
    assert not m.command(0.5).deadman  # the joint state is stale


def test_non_finite_input_is_refused_and_counted():
    m = _spacenav()
    m.on_axes(_twist(0.5), 0.0)
    m.on_buttons([1], 0.0)
    assert not m.on_axes(_twist(float("nan")), 0.01)
    assert m.bad_messages == 1
    c = m.command(0.02)
    assert c.deadman and c.action[0] > 0.5  # the last good values stand (until they go stale)
