"""The lab install path, for real: a colcon workspace with this repository in ``src/``.

A module fixture copies the working tree (tracked + untracked-but-not-ignored files, as
``git ls-files`` lists them) to ``ws/src/robot_rl`` and runs, in ``ws/``::

    colcon build --base-paths src/robot_rl src/robot_rl/interfaces

Two base paths because colcon stops descending once it finds a package: ``src/robot_rl`` is the
ament_python package, so ``interfaces/robot_rl_interfaces`` below it is only found from its own
base path (``colcon list --base-paths src`` lists ``robot_rl`` alone).

The venv plays the ROS underlay (what ``source /opt/ros/<distro>/setup.bash`` is in a lab):
its ``bin`` first on PATH, ``AMENT_PREFIX_PATH`` and ``CMAKE_PREFIX_PATH`` set to its prefix —
without ``AMENT_PREFIX_PATH`` rosidl's CMake finds no type support ("No 'rosidl_typesupport_c'
found"; the Makefile's plain cmake gets away with it because it installs into the venv prefix,
which ament always searches). Everything afterwards runs through the generated
``install/setup.bash`` and is checked to come from the install space, not from the venv's
editable install of the repository.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)  # the build takes 30-90 s on 2 busy cores

REPO = Path(__file__).resolve().parents[2]
VENV_PREFIX = Path(sys.prefix)  # pytest runs on the venv's Python
VENV_BIN = Path(sys.executable).parent
BUILD_TIMEOUT_S = 600
# Not part of the source a lab would clone (also covered by .gitignore when git is there).
COPY_IGNORE = (".git", ".venv", "build", "install", "log", "runs", "__pycache__",
               "*.egg-info", ".pytest_cache", ".hypothesis")


def _copy_source_tree(dest: Path) -> None:
    """Copy the working tree as a clone would see it (plus uncommitted edits)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, check=True, capture_output=True, timeout=60,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: copy, minus outputs
        shutil.copytree(REPO, dest, symlinks=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))
        return
    for rel in filter(None, listed):
        src, dst = REPO / rel, dest / rel
        if src.is_symlink():  # git stores links as links: keep them (relative ones stay valid)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(os.readlink(src))
        elif src.is_file():  # skips files deleted in the working tree but still tracked
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def _underlay_env(ws: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AMENT_PREFIX_PATH"] = str(VENV_PREFIX)
    env["CMAKE_PREFIX_PATH"] = str(VENV_PREFIX)
    env["COLCON_HOME"] = str(ws / ".colcon_home")  # no user defaults/mixins
    for name in ("PYTHONPATH", "COLCON_PREFIX_PATH", "COLCON_DEFAULTS_FILE"):
        env.pop(name, None)
    return env


def _tail(path: Path, n: int = 60) -> str:
    if not path.is_file():
        return f"(no {path})"
    lines = path.read_text(errors="replace").splitlines()[-n:]
    return f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines)


class Workspace:
    """A built colcon workspace; :meth:`run` runs commands after `source install/setup.bash`."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.install = root / "install"
        self.env = env

    def sourced(self, command: str, overlays: tuple[str, ...] = ()) -> list[str]:
        """``bash -c`` argv: source the install space (then each overlay's ``local_setup.bash``)
        and ``exec`` the command, so a signal to the process reaches the command itself."""
        setup = " && ".join(["source install/setup.bash",
                             *(f"source {o}/local_setup.bash" for o in overlays)])
        return ["bash", "-c", f"{setup} && exec {command}"]

    def run(self, command: str, overlays: tuple[str, ...] = (),
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.sourced(command, overlays), cwd=self.root, env=self.env,
                              text=True, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    ws = tmp_path_factory.mktemp("colcon_ws")
    _copy_source_tree(ws / "src" / "robot_rl")
    env = _underlay_env(ws)
    (ws / ".colcon_home").mkdir()
    log = ws / "colcon_build.log"
    command = [
        str(VENV_BIN / "colcon"), "build",
        "--base-paths", "src/robot_rl", "src/robot_rl/interfaces",
        "--parallel-workers", "2",
        "--event-handlers", "console_direct-", "desktop_notification-", "status-",
        "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}",
    ]
    started = time.monotonic()
    with log.open("w") as out:
        try:
            result = subprocess.run(command, cwd=ws, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"colcon build ran past {BUILD_TIMEOUT_S} s\n{_tail(log)}")
    print(f"colcon build: {time.monotonic() - started:.1f} s")
    if result.returncode != 0:
        package_logs = "\n".join(
            _tail(p, 40) for p in sorted((ws / "log" / "latest_build").glob("*/stdout_stderr.log")))
        pytest.fail(f"colcon build failed (exit {result.returncode}): "
                    f"{shlex.join(command)}\n{_tail(log)}\n{package_logs}")
    return Workspace(ws, env)


def test_colcon_lists_both_packages_from_the_two_base_paths(workspace):
    def listed(*base_paths: str) -> set[str]:
        out = subprocess.run([str(VENV_BIN / "colcon"), "list", "--names-only",
                              "--base-paths", *base_paths], cwd=workspace.root,
                             env=workspace.env, text=True, capture_output=True, check=True)
        return set(out.stdout.split())

    assert listed("src/robot_rl", "src/robot_rl/interfaces") == {"robot_rl", "robot_rl_interfaces"}


def test_install_space_layout(workspace):
    pkg = workspace.install / "robot_rl"
    for rel in ("share/robot_rl/package.xml", "lib/robot_rl/robot-rl",
                "share/ament_index/resource_index/packages/robot_rl"):
        assert (pkg / rel).is_file(), f"{rel} missing from the install space"
    assert os.access(pkg / "lib/robot_rl/robot-rl", os.X_OK)
    # DESIGN §6: sim/ and ros_nodes/ install under robot_rl, no generic top-level names.
    site = next((pkg / "lib").glob("python3*/site-packages"))
    top_level = {p.name for p in site.iterdir() if not p.name.endswith((".egg-info", ".dist-info"))}
    assert top_level == {"robot_rl"}, f"top-level names installed: {sorted(top_level)}"
    assert (site / "robot_rl" / "sim").is_dir() and (site / "robot_rl" / "ros_nodes").is_dir()


PROBE = r"""
import importlib, json, os, pkgutil
import robot_rl, robot_rl.sim, robot_rl.ros_nodes, robot_rl_interfaces
# Every subpackage of the source tree must have been installed (setup.py's package list).
subpackages = {m.name: importlib.import_module(m.name).__file__
               for m in pkgutil.walk_packages(robot_rl.__path__, "robot_rl.") if m.ispkg}
from robot_rl_interfaces.msg import Transition
from rclpy.serialization import serialize_message, deserialize_message
from ament_index_python.packages import get_package_share_directory
t = Transition(observation=[1.0, 2.0], seq=7)
assert deserialize_message(serialize_message(t), Transition) == t
libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
               if "librobot_rl_interfaces" in line or "robot_rl_interfaces_s__" in line})
print(json.dumps({
    "robot_rl": robot_rl.__file__, "robot_rl.sim": robot_rl.sim.__file__,
    "robot_rl.ros_nodes": robot_rl.ros_nodes.__file__,
    "robot_rl_interfaces": robot_rl_interfaces.__file__,
    "share/robot_rl": get_package_share_directory("robot_rl"),
    "share/robot_rl_interfaces": get_package_share_directory("robot_rl_interfaces"),
    "native libraries": libs,
    **subpackages,
}))
"""


def test_python_packages_and_messages_come_from_the_install_space(workspace):
    result = workspace.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(PROBE)}")
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    source_packages = {f"robot_rl.{p.parent.name}" for p in (REPO / "robot_rl").glob("*/__init__.py")}
    assert source_packages <= found.keys(), f"not installed: {sorted(source_packages - found.keys())}"
    install = str(workspace.install) + os.sep
    assert found["native libraries"], "no robot_rl_interfaces library loaded"
    outside = {key: value for key, value in found.items() if key != "native libraries"
               and not value.startswith(install)}
    outside.update({lib: "native library" for lib in found["native libraries"]
                    if not lib.startswith(install)})
    assert not outside, f"resolved outside {workspace.install}: {outside}"


def test_cli_runs_from_the_install_space(workspace):
    result = workspace.run("install/robot_rl/lib/robot_rl/robot-rl --help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage: robot-rl" in result.stdout


JOINT_STATE_LISTENER = r"""
import sys, time
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
rclpy.init()
node = rclpy.create_node("joint_state_listener")
got = []
node.create_subscription(JointState, "/joint_states", got.append, qos_profile_sensor_data)
deadline = time.monotonic() + float(sys.argv[1])
while not got and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.2)
if not got:
    sys.exit("no JointState on /joint_states")
msg = got[0]
print("JOINT_STATE", len(msg.name), len(msg.position), " ".join(msg.name), flush=True)
"""


def test_sim_robot_node_from_the_install_space_publishes_joint_states(workspace, ros_process):
    node = workspace.install / "robot_rl" / "lib" / "robot_rl" / "sim_robot_node"
    if not node.is_file():
        present = sorted(p.name for p in node.parent.iterdir())
        pytest.fail(
            f"{node.relative_to(workspace.root)} is not in the install space (present: "
            f"{present}): setup.py must register the console script `sim_robot_node` "
            "(NODES in setup.py), which setup.cfg's install_scripts puts under lib/robot_rl."
        )
    sim = ros_process(workspace.sourced(str(node)), name="sim_robot_node",
                      env=workspace.env, cwd=workspace.root)
    listener = ros_process.python(["-c", JOINT_STATE_LISTENER, "60"], name="listener")
    try:
        code = listener.wait(timeout=90)
    except TimeoutError:
        code = None
    assert code == 0, f"{listener.tail()}\n{sim.tail()}"
    line = listener.wait_for_line(r"^JOINT_STATE (\d+) (\d+)", timeout=5)
    names, positions = int(line.group(1)), int(line.group(2))
    assert names > 0 and positions == names, f"{listener.tail()}\n{sim.tail()}"
    assert sim.running, f"sim_robot_node exited\n{sim.tail()}"
    # Ctrl-C (and `ros2 launch`'s shutdown) sends SIGINT: the node must end cleanly, not wait
    # for the SIGKILL that stop() sends after its timeout.
    code = sim.stop(timeout=10)
    assert code == 0, (f"sim_robot_node did not exit cleanly on SIGINT (exit {code}; -9: still "
                       f"running 10 s after SIGINT, killed)\n{sim.tail()}")


def test_symlink_install_of_robot_rl(workspace):
    """``colcon build --symlink-install`` (what the ROS tutorials teach labs): robot_rl builds,
    imports from the source tree and its executables run. Built on the side as an overlay
    (robot_rl's base path only, own build and install bases) on the main install space, which
    provides robot_rl_interfaces."""
    log = workspace.root / "colcon_symlink_build.log"
    command = shlex.join([
        str(VENV_BIN / "colcon"), "build", "--symlink-install", "--base-paths", "src/robot_rl",
        "--build-base", "build_symlink", "--install-base", "install_symlink",
        "--event-handlers", "console_direct-", "desktop_notification-", "status-"])
    with log.open("w") as out:
        result = subprocess.run(workspace.sourced(command), cwd=workspace.root,
                                env=workspace.env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=BUILD_TIMEOUT_S)
    package_log = workspace.root / "log" / "latest_build" / "robot_rl" / "stdout_stderr.log"
    assert result.returncode == 0, (f"colcon build --symlink-install failed\n{_tail(log)}\n"
                                    f"{_tail(package_log, 20)}")
    probe = ("import robot_rl.sim, robot_rl.ros_nodes; "
             "print('FILES', robot_rl.sim.__file__, robot_rl.ros_nodes.__file__)")
    result = workspace.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(probe)}",
                           overlays=("install_symlink",))
    assert result.returncode == 0, result.stdout + result.stderr
    files = next(line for line in result.stdout.splitlines() if line.startswith("FILES "))
    source = workspace.root / "src" / "robot_rl"
    for path, folder in zip(files.split()[1:], ("sim", "ros_nodes")):
        assert Path(path).resolve().is_relative_to(source / folder), result.stdout
    result = workspace.run("install_symlink/robot_rl/lib/robot_rl/robot-rl --help",
                           overlays=("install_symlink",))
    assert result.returncode == 0 and "usage: robot-rl" in result.stdout, (
        result.stdout + result.stderr)
