"""Test-side ROS helpers shared by the ROS tests: spinning until a condition, /diagnostics."""
from __future__ import annotations

import time
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray


def spin_until(node, cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Spin ``node`` until ``cond()`` holds (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=step)
        if cond():
            return True
    return False


class DiagProbe:
    """The latest ``/diagnostics`` values of every node (status name up to a ``:``)."""

    def __init__(self, name: str = "diag_probe"):
        self.node = rclpy.create_node(name)
        self.status: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._cb, 50)

    def _cb(self, msg) -> None:
        for st in msg.status:
            self.status[st.name.split(":")[0]] = {kv.key: kv.value for kv in st.values}

    def get(self, name: str, key: str, default=None):
        return self.status.get(name, {}).get(key, default)

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        return spin_until(self.node, cond, timeout, step=0.05)
