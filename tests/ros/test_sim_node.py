"""sim_robot_node as a real process over real DDS: namespaced robots, lockstep, commands, reset."""
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, UInt64
from std_srvs.srv import Trigger

from robot_rl_interfaces.msg import TaskState

NODE = str(Path(sys.executable).parent / "sim_robot_node")


@pytest.fixture
def probe():
    rclpy.init()
    node = rclpy.create_node("sim_node_probe")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def _spin_until(node, cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)
        if cond():
            return True
    return False


def test_lockstep_two_namespaced_robots(ros_process, probe):
    proc = ros_process([NODE, "--ros-args", "-p", "sim.num_robots:=2", "-p", "sim.clock:=lockstep",
                        "-p", "sim.lockstep_timeout:=30.0", "-p", "run.seed:=3"], name="sim")
    proc.wait_for_line(r"2 sim robot\(s\) \['robot_0', 'robot_1'\]", timeout=60)

    clocks, states, tasks = [], {0: [], 1: []}, {0: [], 1: []}
    probe.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock), 10)
    pubs = {}
    for i in (0, 1):
        probe.create_subscription(JointState, f"/robot_{i}/joint_states",
                                  lambda m, i=i: states[i].append(m), 10)
        probe.create_subscription(TaskState, f"/robot_{i}/task_state",
                                  lambda m, i=i: tasks[i].append(m), 10)
        pubs[i] = probe.create_publisher(Float64MultiArray,
                                         f"/robot_{i}/joint_velocity_controller/commands", 1)
    assert _spin_until(probe, lambda: all(p.get_subscription_count() == 1 for p in pubs.values()), 30)
    assert _spin_until(probe, lambda: True, 0.5)  # let our subscriptions match as well

    def cmd(i, v):
        pubs[i].publish(Float64MultiArray(data=[float(x) for x in v]))

    # Robot 0's command alone does not advance a lockstep world.
    cmd(0, [0.0] * 7)
    assert not _spin_until(probe, lambda: len(clocks) > 0, 1.0), "stepped without robot 1's command"
    for k in range(1, 6):
        cmd(0, [0.0] * 7)
        cmd(1, [0.4, 0, 0, 0, 0, 0, 0])
        assert _spin_until(probe, lambda: len(clocks) >= k and len(states[1]) >= k, 20), proc.tail()
    t = [c.sec * 10**9 + c.nanosec for c in clocks]
    assert t[:5] == [50_000_000 * k for k in range(1, 6)]  # one 20 Hz period per step
    # Only robot 1 moved; joint order is the profile's.
    assert states[1][-1].name == [f"panda_joint{j}" for j in range(1, 8)]
    assert states[1][-1].velocity[0] == pytest.approx(0.4, rel=0.05)
    assert abs(states[0][-1].velocity[0]) < 1e-3
    assert states[1][-1].header.stamp.nanosec == 250_000_000
    assert tasks[1][-1].task_name == "reach" and len(tasks[1][-1].goal) == 3
    assert tasks[0][-1].goal != tasks[1][-1].goal  # each robot has its own seeded stream

    # A command of the wrong length is refused and the previous one stays.
    cmd(1, [1.0, 2.0])
    proc.wait_for_line(r"command for robot 1: expected 7 joint velocities, got 2", timeout=10)

    # Reset: a new episode with a new goal, at rest.
    cli = probe.create_client(Trigger, "/robot_1/reset_episode")
    assert cli.wait_for_service(timeout_sec=10)
    fut = cli.call_async(Trigger.Request())
    assert _spin_until(probe, fut.done, 10)
    assert fut.result().success and fut.result().message.startswith("episode 1")
    assert _spin_until(probe, lambda: tasks[1][-1].episode_id == 1, 5)


def test_learner_gate_is_a_margin_on_the_sims_own_steps(ros_process, probe):
    """The learner's allowance is a margin beyond the rows it has seen; the sim adds it to the
    steps it has made itself. A learner whose store already holds thousands of rows (a resumed
    run) therefore gates a freshly started sim exactly as a fresh one does."""
    proc = ros_process([NODE, "--ros-args", "-p", "sim.num_robots:=2", "-p", "sim.clock:=lockstep",
                        "-p", "sim.lockstep_timeout:=30.0", "-p", "learner_gate:=true",
                        "-p", "gate_timeout:=60.0"], name="sim-gate")
    proc.wait_for_line(r"2 sim robot\(s\)", timeout=60)
    clocks = []
    probe.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock), 10)
    allow = probe.create_publisher(UInt64, "/rl/env_step_allowance", 10)
    pubs = [probe.create_publisher(Float64MultiArray,
                                   f"/robot_{i}/joint_velocity_controller/commands", 1)
            for i in (0, 1)]
    assert _spin_until(probe, lambda: all(p.get_subscription_count() == 1 for p in pubs)
                       and allow.get_subscription_count() == 1, 30)
    assert _spin_until(probe, lambda: True, 0.5)

    def step_once(timeout):
        n = len(clocks)
        for p in pubs:
            p.publish(Float64MultiArray(data=[0.0] * 7))
        return _spin_until(probe, lambda: len(clocks) > n, timeout)

    # margin 6 env steps = 3 steps of the 2-robot world
    allow.publish(UInt64(data=6))
    assert _spin_until(probe, lambda: True, 0.3)
    for _ in range(3):
        assert step_once(10), proc.tail()
    assert not step_once(1.5), "stepped past the learner's margin"
    # the learner has seen those 6 rows and trained: margin 4 more -> limit 6 + 4, 2 more steps
    allow.publish(UInt64(data=4))
    assert _spin_until(probe, lambda: len(clocks) == 4, 10)  # the waiting step goes at once
    assert step_once(10)
    assert not step_once(1.5), "stepped past the learner's margin"
    assert len(clocks) == 5


@pytest.mark.parametrize("task", ["reach", "push"])
def test_task_state_goes_out_on_change_for_object_free_tasks(ros_process, probe, task):
    """reach: the task state goes out when it changes (a reset), not with every joint state;
    push (an object that moves): with every joint state, stamped like it."""
    proc = ros_process([NODE, "--ros-args", "-p", "sim.clock:=lockstep", "-p", f"task.name:={task}",
                        "-p", "sim.lockstep_timeout:=30.0", "-p", "task_state_period:=30.0"],
                       name=f"sim-ts-{task}")
    proc.wait_for_line(r"1 sim robot\(s\)", timeout=60)
    states, tasks = [], []
    probe.create_subscription(JointState, "/joint_states", states.append, 10)
    probe.create_subscription(TaskState, "/task_state", tasks.append, 10)
    pub = probe.create_publisher(Float64MultiArray, "/joint_velocity_controller/commands", 1)
    cli = probe.create_client(Trigger, "/reset_episode")
    assert _spin_until(probe, lambda: pub.get_subscription_count() == 1, 30)
    assert cli.wait_for_service(timeout_sec=10)
    assert _spin_until(probe, lambda: True, 0.5)

    def steps(k):
        for _ in range(k):
            n = len(states)
            pub.publish(Float64MultiArray(data=[0.1] * 7))
            assert _spin_until(probe, lambda: len(states) > n, 10), proc.tail()
        assert _spin_until(probe, lambda: True, 0.3)  # late task states would arrive now

    stamp = lambda m: m.header.stamp.sec * 10**9 + m.header.stamp.nanosec  # noqa: E731
    steps(4)
    fut = cli.call_async(Trigger.Request())
    assert _spin_until(probe, fut.done, 10) and fut.result().success
    assert _spin_until(probe, lambda: len(tasks) > 0 and tasks[-1].episode_id == 1, 5)
    steps(3)
    # every state has its own stamp: the reset's comes after the step it follows (same sim
    # time), so an actor never mistakes the joint state before a reset for the reset's
    st = [stamp(s) for s in states]
    assert all(a < b for a, b in zip(st, st[1:])), st
    assert st[4] == st[3] + 1 and st[5] == st[3] + 50_000_000
    if task == "reach":
        # nothing changed during the first steps; the reset's state is the only one since
        assert len(tasks) == 1 and tasks[0].episode_id == 1
        assert tasks[0].stamp_ns == stamp(states[4])  # the reset's joint state
        assert len(states) == 8
    else:
        assert len(tasks) == len(states) == 8
        assert [t.stamp_ns for t in tasks] == [stamp(s) for s in states]
        assert all(len(t.object_pose) == 7 for t in tasks)
