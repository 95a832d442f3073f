"""teleop_node and scripted_operator_node as real processes over real DDS.

* sim_robot_node (real time) + scripted_operator_node (Twist + Joy exactly as spacenav publishes
  them) + teleop_node: TeleopCommands arrive on /rl/teleop at about the control rate, with the
  deadman held while the operator drives, actions in bounds pointing from the hand to the goal,
  episode marks once per press. The test closes the loop as a minimal actor would (a deadman
  command's action -> joint velocities -> the sim's controller; a mark -> reset_episode), so the
  operator really reaches goals and marks successes. Stopping the operator (a person walking
  away) -> deadman false within input_timeout.
* a gamepad (joy) published by the test: axis mapping, deadman, edge-triggered marks, timeout.
* a bad mapping stops the node with exit status 2 and names the field.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from robot_rl.actions import ActionMapper
from robot_rl.config import load_config
from robot_rl.kinematics import Kinematics
from robot_rl.ros_nodes.common import COMMAND_QOS, STATE_QOS
from robot_rl.ros_nodes.teleop_node import DEVICE_QOS, TELEOP_QOS
from robot_rl.teleop import MARK_DISCARD, MARK_FAILURE, MARK_NONE, MARK_SUCCESS
from robot_rl_interfaces.msg import TaskState, TeleopCommand

BIN = Path(sys.executable).parent
TIMEOUT = 0.3  # teleop.input_timeout


def _config(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _node(ros_process, module: str, cfg: Path, *params: str, name: str):
    args = ["-m", f"robot_rl.ros_nodes.{module}", "--ros-args", "-p", f"config_file:={cfg}"]
    for p in params:
        args += ["-p", p]
    return ros_process.python(args, name=name)


def test_mark_constants_match_the_message():
    assert (TeleopCommand.MARK_NONE, TeleopCommand.MARK_SUCCESS, TeleopCommand.MARK_FAILURE,
            TeleopCommand.MARK_DISCARD) == (MARK_NONE, MARK_SUCCESS, MARK_FAILURE, MARK_DISCARD)


class LoopProbe:
    """Records TeleopCommands and, like a minimal actor, applies them to the sim."""

    def __init__(self, cfg_path: Path):
        self.cfg = load_config(cfg_path)
        self.node = rclpy.create_node("teleop_probe")
        self.kin = Kinematics.from_profile(self.cfg.robot)
        self.mapper = ActionMapper(self.cfg.task, self.cfg.robot, kinematics=self.kin)
        self.cmds: list[tuple[float, TeleopCommand, np.ndarray | None, np.ndarray | None]] = []
        self.q: np.ndarray | None = None
        self.goal: np.ndarray | None = None
        self.close_loop = True
        self.resets = 0
        self.reset_pending = False
        self.n_js = 0
        self.node.create_subscription(TeleopCommand, "/rl/teleop", self.on_cmd, TELEOP_QOS)
        self.node.create_subscription(JointState, "/joint_states", self.on_js, STATE_QOS)
        self.node.create_subscription(TaskState, "/task_state", self.on_ts, STATE_QOS)
        self.cmd_pub = self.node.create_publisher(
            Float64MultiArray, "/joint_velocity_controller/commands", COMMAND_QOS)
        self.reset = self.node.create_client(Trigger, "/reset_episode")

    def on_js(self, msg):
        self.n_js += 1
        self.q = np.asarray(msg.position, dtype=float)  # the sim publishes profile order

    def on_ts(self, msg):
        self.goal = np.asarray(msg.goal, dtype=float)

    def on_cmd(self, msg: TeleopCommand):
        ee = self.kin.ee_position(self.q) if self.q is not None else None
        self.cmds.append((time.monotonic(), msg, ee, self.goal))
        if not self.close_loop:
            return
        if msg.episode_mark != MARK_NONE:
            self.reset_pending = True
        if self.q is not None:
            a = np.asarray(msg.action, dtype=float)
            dq = self.mapper.to_joint_velocities(a, self.q) if msg.deadman else np.zeros(7)
            self.cmd_pub.publish(Float64MultiArray(data=dq.tolist()))
        if self.reset_pending and self.reset.service_is_ready():
            self.reset.call_async(Trigger.Request())
            self.reset_pending = False
            self.resets += 1

    def spin_until(self, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)
            if cond():
                return True
        return False

    def marks(self, which=None):
        return [m.episode_mark for _, m, _, _ in self.cmds
                if m.episode_mark != MARK_NONE and (which is None or m.episode_mark == which)]


@pytest.fixture
def ros_context():
    rclpy.init()
    yield
    rclpy.shutdown()


def test_scripted_operator_drives_the_sim_through_the_teleop_node(ros_process, ros_context,
                                                                  tmp_path):
    cfg = _config(tmp_path, "task: {action_mode: ee_velocity, max_steps: 60}",
                  "sim: {clock: realtime}", f"teleop: {{input_timeout: {TIMEOUT}}}")
    probe = LoopProbe(cfg)  # first, so that discovery is done when the operator starts
    sim = ros_process([str(BIN / "sim_robot_node"), "--ros-args", "-p", f"config_file:={cfg}"],
                      name="sim")
    teleop = _node(ros_process, "teleop_node", cfg, name="teleop")
    operator = _node(ros_process, "scripted_operator_node", cfg, "seed:=3", "discard_prob:=0.0",
                     name="operator")
    sim.wait_for_line(r"sim robot", timeout=60)
    teleop.wait_for_line(r"teleop /teleop_node from /spacenav/twist \+ /spacenav/joy -> "
                         r"/rl/teleop at 20 Hz: input=spacenav", timeout=60)
    operator.wait_for_line(r"scripted operator /scripted_operator_node input=spacenav", timeout=60)
    assert probe.spin_until(lambda: len(probe.marks(MARK_SUCCESS)) >= 2, 60), (
        f"marks {probe.marks()} joint states {probe.n_js} resets {probe.resets} pending "
        f"{probe.reset_pending}\n{operator.tail()}\n{teleop.tail()}\n{sim.tail()}")

    # The rate: about the control rate (20 Hz) over the whole run, by the commands' stamps and
    # as received.
    stamps = np.array([c[1].stamp_ns for c in probe.cmds]) * 1e-9
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 18.0 <= rate <= 20.5, rate
    assert np.median(np.diff([c[0] for c in probe.cmds])) == pytest.approx(0.05, abs=0.01)

    driving = [(m, ee, g) for _, m, ee, g in probe.cmds if m.deadman]
    assert len(driving) >= 20
    for _, m, _, _ in probe.cmds:
        a = np.asarray(m.action)
        assert a.shape == (3,) and np.all(np.abs(a) <= 1.0) and np.all(np.isfinite(a))
        if not m.deadman:
            assert not a.any()
    # Pointing from the hand to the goal (the operator reacts late and is noisy: most, not all;
    # commands near the goal, where the hand is slowing down, are left out).
    toward = []
    for m, ee, g in driving:
        a = np.asarray(m.action)
        if ee is None or g is None or np.linalg.norm(a) < 0.3 or np.linalg.norm(g - ee) < 0.1:
            continue
        toward.append(a @ (g - ee) / (np.linalg.norm(a) * np.linalg.norm(g - ee)))
    assert len(toward) >= 10
    assert np.mean(np.asarray(toward) > 0.5) >= 0.8, np.round(toward, 2)
    print(f"teleop: {rate:.2f} Hz, {len(driving)} driving commands, "
          f"{np.mean(np.asarray(toward) > 0.5):.0%} towards the goal, marks {probe.marks()}")
    # Marks: once per press (the operator logs each press; the teleop node each mark sent).
    def sent_marks() -> int:
        return len([ln for ln in teleop.lines if "episode mark:" in ln])

    def pressed() -> int:
        return len([ln for ln in operator.lines if "pressing" in ln])

    # A node's log line can reach us after the message it logged: give the logs a moment.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and (sent_marks() < len(probe.marks())
                                           or pressed() < sent_marks()):
        time.sleep(0.05)
    presses = pressed()
    sent = sent_marks()
    assert sent == len(probe.marks()) and presses - sent in (0, 1)  # one may be in flight
    assert set(probe.marks()) <= {MARK_SUCCESS, MARK_FAILURE}
    teleop.wait_for_line(r"deadman pressed: teleop drives", timeout=1)

    # A person walking away mid-episode: the device goes silent (the operator is killed) ->
    # deadman false within input_timeout (+ one control period for the next command, +
    # transport), and not before (the operator's spacenav-like stream never paused long enough).
    probe.close_loop = False
    assert probe.spin_until(lambda: probe.cmds[-1][1].deadman
                            and np.linalg.norm(probe.cmds[-1][1].action) > 0.2, 30), operator.tail()
    os.killpg(operator.popen.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    n = len(probe.cmds)
    assert probe.spin_until(lambda: any(not c[1].deadman for c in probe.cmds[n:]), 3)
    first_false = next(c[0] for c in probe.cmds[n:] if not c[1].deadman)
    assert TIMEOUT - 0.1 <= first_false - t_kill <= TIMEOUT + 0.05 + 0.1, first_false - t_kill
    print(f"operator killed -> deadman false after {first_false - t_kill:.3f} s")
    probe.spin_until(lambda: False, 0.5)
    assert all(not c[1].deadman and not any(c[1].action) for c in probe.cmds
               if c[0] > first_false)
    teleop.wait_for_line(r"deadman false: input lost: no twist input for", timeout=2)
    assert teleop.running and sim.running
    probe.node.destroy_node()


def test_gamepad_axes_deadman_marks_and_timeout(ros_process, ros_context, tmp_path):
    cfg = _config(tmp_path, "task: {action_mode: ee_velocity}",
                  f"teleop: {{input: joy, input_timeout: {TIMEOUT}}}")
    teleop = _node(ros_process, "teleop_node", cfg, name="teleop")
    teleop.wait_for_line(r"teleop /teleop_node from /joy -> /rl/teleop at 20 Hz: input=joy",
                         timeout=60)
    node = rclpy.create_node("gamepad")
    got: list[tuple[float, TeleopCommand]] = []
    node.create_subscription(TeleopCommand, "/rl/teleop",
                             lambda m: got.append((time.monotonic(), m)), TELEOP_QOS)
    joy = node.create_publisher(Joy, "/joy", DEVICE_QOS)

    def spin(seconds, axes, buttons):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            joy.publish(Joy(axes=[float(a) for a in axes], buttons=list(buttons)))
            rclpy.spin_once(node, timeout_sec=0.02)  # a gamepad's ~50 Hz

    sticks = [0.0, 0.8, 0.0, -0.5, 0.0, 0.0]  # LEFTY up -> +v_x, RIGHTY down -> -v_z
    idle = [0] * 11
    spin(1.0, [0.0] * 6, idle)
    assert got and not any(m.deadman for _, m in got)
    lb = list(idle)
    lb[9] = 1
    spin(0.5, sticks, lb)
    m = got[-1][1]
    assert m.deadman
    np.testing.assert_allclose(m.action, [0.75 / 0.95, 0.0, -0.45 / 0.95], rtol=1e-5)
    n = len(got)
    lb_a = list(lb)
    lb_a[0] = 1  # A held for 0.4 s: one success
    spin(0.4, sticks, lb_a)
    spin(0.3, sticks, lb)
    assert [m.episode_mark for _, m in got[n:] if m.episode_mark] == [MARK_SUCCESS]
    spin(0.3, [0.0] * 6, idle)  # LB released: deadman false, zero action
    assert not got[-1][1].deadman and not any(got[-1][1].action)
    spin(0.3, sticks, lb)
    assert got[-1][1].deadman
    t_last = time.monotonic()  # the gamepad goes silent
    end = t_last + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)
    first_false = next(t for t, m in got if t > t_last and not m.deadman)
    assert first_false - t_last <= TIMEOUT + 0.05 + 0.1
    teleop.wait_for_line(r"deadman false: input lost: no joy input for", timeout=2)
    node.destroy_node()


def test_bad_mapping_exits_2_naming_the_field(ros_process, tmp_path):
    cfg = _config(tmp_path, "task: {action_mode: ee_velocity}",
                  "teleop: {axes: [0, 1], success_button: 0}")
    teleop = _node(ros_process, "teleop_node", cfg, name="teleop")
    assert teleop.wait(timeout=60) == 2
    assert "teleop.axes: expected 3 values" in teleop.output
    assert "teleop.success_button: button 0 is already the deadman_button" in teleop.output


@pytest.mark.parametrize("example, line", [
    ("spacenav_teleop", r"from /spacenav/twist \+ /spacenav/joy -> /robot_0/rl/teleop at 20 Hz: "
                        r"input=spacenav action_mode=ee_velocity mapping=direct axes=\[0, 1, 2\]"),
    ("joy_teleop", r"from /joy -> /robot_0/rl/teleop at 20 Hz: input=joy action_mode=joint "
                   r"mapping=direct axes=\[0, 1, 2, 3, -1, -1, -1\] .* shift_button=10"),
])
def test_example_parameter_files_load(ros_process, example, line):
    params = Path(__file__).resolve().parents[2] / "launch" / "config" / f"{example}.yaml"
    teleop = ros_process.python(["-m", "robot_rl.ros_nodes.teleop_node", "--ros-args", "-r",
                                 "__ns:=/robot_0", "--params-file", str(params)], name=example)
    teleop.wait_for_line(line, timeout=60)
