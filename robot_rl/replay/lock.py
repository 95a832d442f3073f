"""The single-writer lock of a replay store.

A writer holds ``fcntl.flock(LOCK_EX)`` on the store's lock file (``<store>.lock``, beside the
store directory: see :func:`robot_rl.replay.store.lock_path`) for as long as it is open, and
writes its pid, host, start time and command line into that file, so a second writer fails with a
message naming the holder.

Why ``flock`` and not a pid file: the kernel releases a ``flock`` when the holder's last file
descriptor closes, which includes every kind of death (SIGKILL, OOM kill, segfault), so a lock
left by a dead writer is never really held -- the next writer's ``flock`` simply succeeds. A pid
file would need a liveness check, and pids are reused (a dead writer's pid can belong to an
unrelated live process, most of all in containers where pids restart at 1), which makes
"is the holder alive?" unanswerable from a pid alone. The holder description left in the file
is only for messages; a clean release empties it. When the lock is acquired and the file still
names another process, that process died holding it (or on another host, see below) and the lock is reported as *recovered*
(:attr:`WriterLock.recovered_from`).

Limits: ``flock`` locks are local to one machine's kernel. The design (DESIGN §4) puts the writer
on a local POSIX filesystem; on NFS, Linux emulates ``flock`` with ``fcntl`` byte-range locks,
which work across clients only with a working lock manager. A lock file naming another host is
therefore reported in :attr:`WriterLock.recovered_from` with a warning in its text.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

class StoreLockedError(RuntimeError):
    """Another writer holds the store; ``str()`` names it (pid, host, since when)."""


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process (the lock file holds no description)"
    started = holder.get("started_unix")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, (int, float)) else "?")
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"writer since {when} ({holder.get('cmd', '?')})")


def read_holder(lock_file: Path) -> dict[str, Any] | None:
    """The holder description in a lock file, or ``None`` if missing/empty/unreadable."""
    try:
        text = Path(lock_file).read_text()
        d = json.loads(text) if text.strip() else None
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def is_locked(lock_file: Path) -> bool:
    """True if some process holds the lock ``lock_file`` right now."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may just have taken
    return False


def describe_holder(lock_file: Path) -> str:
    """Who the lock file says holds (or last held) it, in words."""
    return _describe(read_holder(lock_file))


class WriterLock:
    """Exclusive lock through the file ``lock_file`` (see the module docstring).

    Args:
        lock_file: the lock file (created if missing).
        what: what is locked, for the error message (e.g. ``"replay store runs/x/replay.zarr"``).

    Raises:
        StoreLockedError: another live process holds the lock.
    """

    def __init__(self, lock_file: Path | str, what: str | None = None) -> None:
        self.path = Path(lock_file)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"{what or self.path} is already open for writing by "
                f"{_describe(read_holder(self.path))}; a store has exactly one writer (the "
                "replay node). Open it read-only, or stop that writer first."
            ) from None
        self._fd: int | None = fd
        previous = read_holder(self.path)
        self.holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_unix": time.time(),
            "cmd": " ".join(sys.argv)[:200],
        }
        #: Description of a dead writer whose lock file was found (and taken over), else None.
        self.recovered_from: str | None = None
        if previous and (previous.get("pid"), previous.get("host")) != (
            self.holder["pid"], self.holder["host"]
        ):
            note = ""
            if previous.get("host") != self.holder["host"]:
                note = (" -- WARNING: it names another host; flock does not protect a store "
                        "shared between machines")
            self.recovered_from = f"{_describe(previous)}, no longer running{note}"
        data = json.dumps(self.holder).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent) and clear the holder text.

        A clean release empties the file, so only a writer that died while holding the lock
        leaves its description behind (and is then reported as recovered).
        """
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __del__(self) -> None:  # a forgotten close still releases (the kernel would too)
        try:
            self.release()
        except Exception:
            pass
