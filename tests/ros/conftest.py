"""Shared set-up of the ROS tests: a private DDS domain per test process, child processes.

On import (before any test module here is imported, so before any ``rclpy.init``) this process
takes a ``ROS_DOMAIN_ID`` that no other test process on the machine holds and restricts
discovery to localhost (see :mod:`rosproc`); every child process inherits both. Every test under
``tests/ros`` is marked ``ros``.

Fixtures:

* ``ros_domain_id`` — the domain this process holds.
* ``ros_process`` — a factory: ``ros_process(args, name=..., env=..., cwd=..., stdin=...)``
  starts a :class:`rosproc.RosProcess`; ``ros_process.python([...])`` runs the venv's Python.
  Every process it started is stopped at teardown (SIGINT, then SIGKILL), newest first.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import rosproc` from here and the tests
import rosproc  # noqa: E402

ROS_TESTS_DIR = Path(__file__).resolve().parent

ROS_DOMAIN_ID = rosproc.isolate_ros_environment()


def pytest_report_header(config: pytest.Config) -> str:
    return f"ros tests: ROS_DOMAIN_ID={ROS_DOMAIN_ID}, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest hook sees every collected item of the session: mark only the ones in here.
    for item in items:
        if Path(item.path).resolve().is_relative_to(ROS_TESTS_DIR):
            item.add_marker(pytest.mark.ros)


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    return ROS_DOMAIN_ID


class _ProcessFactory:
    """Starts :class:`rosproc.RosProcess` children and remembers them for teardown."""

    def __init__(self) -> None:
        self.started: list[rosproc.RosProcess] = []

    def __call__(self, args, **kwargs) -> rosproc.RosProcess:
        proc = rosproc.RosProcess(args, **kwargs)
        self.started.append(proc)
        return proc

    def python(self, args, **kwargs) -> rosproc.RosProcess:
        return self([sys.executable, *args], **kwargs)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def ros_process() -> Iterator[_ProcessFactory]:
    factory = _ProcessFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def diag():
    """A :class:`probes.DiagProbe` (latest ``/diagnostics`` per node) in this process's rclpy."""
    import rclpy
    from probes import DiagProbe

    rclpy.init()
    d = DiagProbe()
    yield d
    d.node.destroy_node()
    rclpy.shutdown()
