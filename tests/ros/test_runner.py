"""``robot-rl up`` and ``robot-rl estop`` for real: the runner starts real node processes (the
sim node and a safety node: ``--only sim,safety``), its progress line comes from the safety
node's ``/diagnostics``, ``robot-rl estop`` latches and releases that safety node over DDS,
Ctrl-C stops every node and leaves no process behind, and a node killed with SIGKILL stops the
run with a non-zero status naming it.

Every test points ``safety.estop_file`` at its own temporary file, never ~/.robot_rl.
"""
import os
import signal
import sys
import time
from pathlib import Path

from robot_rl.ros_nodes.safety_node import read_estop, write_estop

ROBOT_RL = str(Path(sys.executable).parent / "robot-rl")
STARTED = r"started {}\s+pid (\d+)"


def _start_runner(ros_process, tmp_path: Path, *extra: str):
    estop = tmp_path / "estop.json"
    write_estop(estop, False, "test: released")
    runner = ros_process([ROBOT_RL, "up", "sim", "--only", "sim,safety", "--name", "t",
                          "--progress-every", "1", f"run.root={tmp_path}", "sim.clock=realtime",
                          f"safety.estop_file={estop}", *extra], name="runner")
    pids = {name: int(runner.wait_for_line(STARTED.format(name), timeout=30).group(1))
            for name in ("/sim_robot_node", "/safety_node")}
    return runner, pids, estop


def _gone(pid: int) -> bool:
    """No process with this pid, or (pid reused) not one of our nodes."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return b"robot_rl.ros_nodes" not in cmdline


def test_progress_estop_and_ctrl_c_stop_every_node(ros_process, tmp_path):
    t0 = time.monotonic()
    runner, pids, estop = _start_runner(ros_process, tmp_path)
    # The monitor hears the safety node's diagnostics (watchdog counts: no actor runs). The
    # line counts the whole graph (sim, safety, actor, replay, learner): --only runs part of it.
    line = runner.wait_for_line(
        r"safety [0-9,]+ clamps / [1-9][0-9,]* brakes \|.* nodes [12]/5", timeout=60)
    assert "E-STOP" not in line.string, line.string

    # Latch: no confirmation, every safety/estop service found on the domain.
    est = ros_process([ROBOT_RL, "estop"], name="estop")
    assert est.wait(60) == 0, est.output
    assert "/safety/estop: LATCHED (e-stop latched" in est.output
    assert read_estop(estop)[0] is True
    runner.wait_for_line(r"E-STOP LATCHED: /safety_node", timeout=20)

    # Release: explicit --release, by robot count.
    rel = ros_process([ROBOT_RL, "estop", "--release", "--robots", "1"], name="release")
    assert rel.wait(60) == 0, rel.output
    assert "/safety/estop: released (e-stop released" in rel.output
    assert read_estop(estop)[0] is False

    # Ctrl-C (SIGINT to the runner's process group, as a terminal sends it).
    os.killpg(runner.popen.pid, signal.SIGINT)
    assert runner.wait(40) == 128 + signal.SIGINT, runner.tail()
    out = runner.output
    assert "stopping (SIGINT received) ..." in out
    for name in pids:
        assert any(ln.split()[:1] == [name] and "stopped in" in ln for ln in runner.lines), out
    assert "needed SIGKILL" not in out
    assert all(_gone(pid) for pid in pids.values()), pids
    run_dir = tmp_path / "t"
    assert f"run:          {run_dir}" in out
    assert (run_dir / "config.yaml").exists() and (run_dir / "provenance.json").exists()
    assert "commanding" in (run_dir / "logs" / "safety_node.log").read_text()
    print(f"runner test: {time.monotonic() - t0:.1f} s")


def test_a_killed_node_stops_the_run_naming_it(ros_process, tmp_path):
    runner, pids, _ = _start_runner(ros_process, tmp_path, "--max-time", "50")
    runner.wait_for_line(r"safety [0-9,]+ clamps / [1-9]", timeout=60)  # both are up and running
    os.kill(pids["/safety_node"], signal.SIGKILL)
    assert runner.wait(40) == 1, runner.tail()
    out = runner.output
    assert "stopping (/safety_node exited on its own) ..." in out
    assert ("robot-rl up: node /safety_node (safety) killed by SIGKILL; the run was stopped "
            "(nothing is restarted)") in out
    assert f"--- last lines of {tmp_path / 't' / 'logs' / 'safety_node.log'} ---" in out
    assert any(ln.split()[:1] == ["/sim_robot_node"] and "stopped in" in ln
               for ln in runner.lines), out
    assert all(_gone(pid) for pid in pids.values()), pids


def test_estop_reports_an_unreachable_robot(ros_process):
    est = ros_process([ROBOT_RL, "estop", "--namespaces", "nobody", "--timeout", "2"],
                      name="estop")
    assert est.wait(30) == 1
    assert "/nobody/safety/estop: FAILED (unreachable: service not found within 2 s)" \
        in est.output
    assert "could not latch 1 of 1 robot(s): /nobody/safety/estop" in est.output


def test_a_domain_with_a_graph_on_it_is_refused(ros_process, tmp_path):
    """Another graph's node names on this ROS_DOMAIN_ID: nothing is started or written."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    other = rclpy.create_node("safety_node", context=ctx)  # the other graph's /safety_node
    try:
        # 30 s of discovery at most (it stops at the first clash): a loaded CI machine can take
        # several seconds to report the other node's name
        runner = ros_process([ROBOT_RL, "up", "sim", "--only", "sim,safety", "--name", "t",
                              "--domain-check", "30", f"run.root={tmp_path}"], name="runner")
        assert runner.wait(60) == 2, runner.output
        assert f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} already has /safety_node" \
            in runner.output, runner.output
        assert "Nothing was started or written" in runner.output
        assert "started" not in runner.output.replace("Nothing was started", "")
        assert not (tmp_path / "t").exists()  # no run directory, no logs, no store
    finally:
        other.destroy_node()
        ctx.try_shutdown()
