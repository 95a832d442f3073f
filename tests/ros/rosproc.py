"""Isolation and child processes for the ROS tests (generic: nothing here knows any node).

Two things every ROS test needs:

* **its own DDS domain.** :func:`isolate_ros_environment` takes a ``ROS_DOMAIN_ID`` that no
  other test process on this machine holds (an exclusive ``flock`` on
  ``/tmp/robot_rl_ros_domains/<id>.lock``, held until the process exits, so the kernel frees it
  even after a crash) and restricts discovery to this host. It edits ``os.environ``, so every
  child started afterwards inherits the domain; it must run before ``rclpy.init``.
* **child processes that always die.** :class:`RosProcess` starts a command in its own process
  group, collects its output (stdout and stderr merged) on a thread so that a chatty child
  never blocks on a full pipe, lets a test wait for a line, and :meth:`RosProcess.stop` ends the
  whole group: SIGINT (what Ctrl-C does, so ``rclpy`` shuts down cleanly), then SIGKILL after a
  timeout — grandchildren included, so a whole node graph started by one runner goes too.

Usage::

    domain = isolate_ros_environment()            # conftest does this at import
    proc = RosProcess.python(["-c", "print('ready', flush=True)"], name="demo")
    proc.wait_for_line(r"^ready$", timeout=30)
    proc.stop()
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Where the per-domain lock files live (shared by every test process on the machine).
DOMAIN_LOCK_DIR = Path("/tmp/robot_rl_ros_domains")
#: Domain ids handed out. 0 (the default domain, where a real robot or a developer's graph may
#: run) is never used; Fast DDS's port formula keeps ids <= 232 valid.
DOMAIN_IDS = range(1, 201)

# Environment variables that could connect a test to a graph outside its own domain/host.
_LEAKY_VARIABLES = ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS", "ROS_DISCOVERY_SERVER")

_held_lock_fd: int | None = None
_held_domain: int | None = None


def allocate_domain_id(lock_dir: Path = DOMAIN_LOCK_DIR) -> int:
    """Lock and return a free domain id; the lock is held until this process exits.

    Calling it again in the same process returns the same id.
    """
    global _held_lock_fd, _held_domain
    if _held_domain is not None:
        return _held_domain
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:  # shared by every user of the machine: let anyone create lock files in it
        os.chmod(lock_dir, 0o1777)
    except PermissionError:
        pass
    for domain in DOMAIN_IDS:
        path = lock_dir / f"{domain}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inheritable (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                continue
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held_lock_fd, _held_domain = fd, domain
        return domain
    raise RuntimeError(
        f"no free ROS_DOMAIN_ID in {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1}: every lock under "
        f"{lock_dir} is held by a running test process"
    )


def isolate_ros_environment() -> int:
    """Give this process (and every child started later) a private, host-local DDS domain."""
    domain = allocate_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    for name in _LEAKY_VARIABLES:
        os.environ.pop(name, None)
    return domain


class RosProcess:
    """A child process in its own process group, with its output captured line by line.

    ``env`` defaults to a copy of ``os.environ`` (so the isolated domain is inherited), with
    ``PYTHONUNBUFFERED=1`` so that a Python child's prints arrive when they happen.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdin: bool = False,
    ) -> None:
        self.args = [str(a) for a in args]
        self.name = name or Path(self.args[0]).name
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            self.args,
            env=child_env,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # own process group: stop() reaches grandchildren too
        )
        self._reader = threading.Thread(
            target=self._read_output, name=f"output:{self.name}", daemon=True
        )
        self._reader.start()

    @classmethod
    def python(cls, args: Sequence[str], **kwargs) -> RosProcess:
        """Start ``sys.executable`` (the venv's Python) with ``args``."""
        return cls([sys.executable, *args], **kwargs)

    # ----------------------------------------------------------------------------- output
    def _read_output(self) -> None:
        stream = self.popen.stdout  # always a pipe (see __init__)
        for line in stream if stream is not None else ():
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        """Every line the process has written so far (stdout and stderr merged)."""
        with self._cond:
            return list(self._lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, n: int = 40) -> str:
        """The last ``n`` lines, framed with the process's name (for failure messages)."""
        lines = self.lines[-n:]
        body = "\n".join(f"  | {line}" for line in lines) or "  | (no output)"
        return f"--- last {len(lines)} lines of {self.name} (pid {self.popen.pid}) ---\n{body}"

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Block until a line matches ``pattern`` (``re.search``); return the match.

        Raises ``TimeoutError`` (with the output's tail) on timeout, or ``RuntimeError`` if the
        process's output ends first (it exited).
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                if self._eof:
                    self.popen.wait()
                    raise RuntimeError(
                        f"{self.name} exited (code {self.popen.returncode}) before printing a "
                        f"line matching {pattern!r}\n{self.tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.name} printed no line matching {pattern!r} within {timeout:.0f} s"
                        f"\n{self.tail()}"
                    )
                self._cond.wait(remaining)

    def send_line(self, text: str) -> None:
        """Write one line to the child's stdin (start it with ``stdin=True``)."""
        if self.popen.stdin is None:
            raise RuntimeError(f"{self.name} was started without stdin=True")
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    # ---------------------------------------------------------------------------- lifetime
    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; return its exit code.

        Raises ``TimeoutError`` (with the output's tail) if it is still running.
        """
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"{self.name} still running after {timeout:.0f} s\n{self.tail()}"
            ) from None
        self._reader.join(timeout=5)  # the output is complete once the pipe hit EOF
        return code

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def _leader_exited(self) -> bool:
        """Has the child exited? Does not reap it, so its pid (= the group id) stays reserved."""
        if self.popen.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """End the process group: SIGINT, then SIGKILL after ``timeout`` s. Returns the exit code.

        Safe to call more than once, and on a process that already exited. Whatever is left of
        the group after the child itself exits (grandchildren) is killed as well.
        """
        if self.popen.returncode is None:
            if not self._leader_exited():
                self._signal_group(signal.SIGINT)
                deadline = time.monotonic() + timeout
                while not self._leader_exited() and time.monotonic() < deadline:
                    time.sleep(0.05)
            # The child is a zombie or gone (or ignored SIGINT): its pid still names the group
            # until it is reaped below, so this cannot hit an unrelated, newer process group.
            self._signal_group(signal.SIGKILL)
            self.popen.wait()
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        self._reader.join(timeout=5)
        return self.popen.returncode

    def __enter__(self) -> RosProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
