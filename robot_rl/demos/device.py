"""A recorded teleop device -> the commands the live teleop node would have sent.

A lab that recorded its SpaceMouse (the ``spacenav`` driver: ``geometry_msgs/Twist`` on
``/spacenav/twist``, ``sensor_msgs/Joy`` buttons on ``/spacenav/joy``) or a gamepad (``joy``:
``sensor_msgs/Joy`` axes and buttons on ``/joy``) before robot_rl was installed has no
``rl/teleop`` topic. :func:`replay_device` feeds the recorded messages, in bag time, to the same
:class:`robot_rl.teleop.TeleopMapper` the teleop node runs (the config's ``teleop`` section:
axes, scales, deadband, deadman, mark buttons, input timeout) and calls
:meth:`~robot_rl.teleop.TeleopMapper.command` once per control period, as the node's timer does.
The result is the teleop command stream (action, deadman, episode mark) that the importer then
cuts and resamples exactly as a recorded ``rl/teleop`` topic.

Replay rules (bag time = the recorder's receive timestamps, the clock every topic shares):

* ticks ``T_k = T_0 + k dt`` (``dt`` = ``1 / sim.control_hz``) from ``T_0``, the first device
  message, to the end of the bag; the mapper's clock is bag time in seconds;
* before the command of tick ``T_k``, every device message stamped ``<= T_k`` is fed in bag
  order (twist before joy at equal stamps): a twist with ``on_axes``, a spacenav Joy with
  ``on_buttons``, a gamepad Joy with ``on_joy``; for the ``cartesian`` mapping also the latest
  joint state stamped ``<= T_k`` (``on_joint_state``, profile order, its own stamp: the input
  timeout applies to it as live);
* so the deadman, the input timeout (no device message for ``teleop.input_timeout``: deadman
  false, and it must be released and pressed again), the deadband, clipping and the one-mark-per-
  command queue behave exactly as live.
"""
from __future__ import annotations

import numpy as np

from robot_rl.demos.bag import ActionStream, DeviceStream, JointStream
from robot_rl.teleop import MARK_NAMES, TeleopMapper

__all__ = ["replay_device"]


def replay_device(device: DeviceStream, joints: JointStream, mapper: TeleopMapper,
                  dt_ns: float, end_ns: int) -> tuple[ActionStream, list[str]]:
    """The teleop command of every control tick, and notes on what the replay saw.

    Args:
        device: the recorded device (:attr:`robot_rl.demos.bag.BagData.device`).
        joints: the joint states (profile order), for the ``cartesian`` mapping.
        mapper: a fresh :class:`TeleopMapper` for ``device.source``.
        dt_ns: the control period (ns).
        end_ns: the last bag time to tick at.
    """
    if mapper.m.input != device.source:
        raise ValueError(f"the teleop mapping is for {mapper.m.input}, the device recording is "
                         f"{device.source}")
    # (t, kind, index): kind 0 twist, 1 joy -- a stable sort keeps bag order within a topic
    ev_t = np.concatenate([device.twist_t, device.joy_t])
    ev_kind = np.concatenate([np.zeros(len(device.twist_t), np.int8),
                              np.ones(len(device.joy_t), np.int8)])
    ev_idx = np.concatenate([np.arange(len(device.twist_t)), np.arange(len(device.joy_t))])
    order = np.lexsort((ev_kind, ev_t))
    ev_t, ev_kind, ev_idx = ev_t[order], ev_kind[order], ev_idx[order]
    t0 = int(ev_t[0])
    n_ticks = int(np.floor((end_ns - t0) / dt_ns + 1e-9)) + 1
    ticks = t0 + np.round(np.arange(n_ticks) * dt_ns).astype(np.int64)
    ticks = ticks[ticks <= end_ns]

    def sec(t: int) -> float:
        return (int(t) - t0) / 1e9

    cartesian = mapper.m.mode == "cartesian"
    joy_drives = device.source == "joy"
    actions = np.zeros((len(ticks), mapper.m.action_dim))
    deadman = np.zeros(len(ticks), bool)
    marks = np.zeros(len(ticks), np.uint8)
    e = 0
    js_i = -1
    missing_axes = False
    for k, T in enumerate(ticks):
        while e < len(ev_t) and ev_t[e] <= T:
            i = int(ev_idx[e])
            if ev_kind[e] == 0:
                mapper.on_axes(device.twist[i], sec(ev_t[e]))
            elif joy_drives:
                mapper.on_joy(device.joy_axes[i], device.joy_buttons[i], sec(ev_t[e]))
            else:
                mapper.on_buttons(device.joy_buttons[i], sec(ev_t[e]))
            missing_axes |= mapper.missing_axes
            e += 1
        if cartesian:
            j = int(np.searchsorted(joints.t, T, side="right")) - 1
            if j >= 0 and j != js_i:
                mapper.on_joint_state(joints.q[j], sec(joints.t[j]))
                js_i = j
        out = mapper.command(sec(T))
        actions[k] = out.action
        deadman[k] = out.deadman
        marks[k] = out.mark
    notes = [f"{device.source} device replayed through the teleop mapping at "
             f"{1e9 / dt_ns:g} Hz: {mapper.m.describe()}"]
    if mapper.losses:
        notes.append(f"the device input was lost {mapper.losses} time(s) (no message for "
                     f"{mapper.m.input_timeout:g} s): deadman false until released and pressed "
                     "again, as live")
    if missing_axes:
        notes.append(f"the mapping reads device axes {list(mapper.m.axes)} but the device "
                     "reports fewer: those read as 0 (teleop.axes?)")
    fired = {MARK_NAMES[m]: n for m, n in mapper.marks_fired.items() if n}
    if fired:
        notes.append("episode mark buttons pressed: "
                     + ", ".join(f"{name} {n}x" for name, n in fired.items()))
    return ActionStream("device", ticks, actions, deadman, marks), notes
