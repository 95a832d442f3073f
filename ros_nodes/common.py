"""Small pieces every node shares: executor choice, topic-name resolution, QoS profiles."""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)

#: Robot state streams: reliable publishers (compatible with SensorDataQoS best-effort readers).
STATE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       history=HistoryPolicy.KEEP_LAST)
#: Commands: reliable, depth 1 (only the newest command matters).
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST)
#: Latched topics (policy weights, e-stop state): a late subscriber gets the newest at once.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Transitions (actors -> replay): reliable with a deep queue. Loss is still possible (a replay
#: restart, a full queue): the actors' outboxes re-send whatever is not acknowledged.
#: Depth 10000: at 10k transitions/s a 1000-deep queue overflowed within 0.1 s of a busy
#: reader on this 2-core machine (15 % lost at 15k/s), 10000 lost nothing.
TRANSITION_QOS = QoSProfile(depth=10000, reliability=ReliabilityPolicy.RELIABLE,
                            history=HistoryPolicy.KEEP_LAST)
#: Acknowledgements (replay -> actors); the replay re-publishes them, so depth is not critical.
ACK_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     history=HistoryPolicy.KEEP_LAST)


def qualify(namespace: str, name: str) -> str:
    """Fully qualified name of a per-robot topic: relative ``name`` under ``namespace``.

    Absolute names (``/rl/transitions``) are shared and returned unchanged.
    """
    if name.startswith("/"):
        return name
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


def make_executor():
    """The EventsExecutor where available (several times faster for high-rate topics)."""
    try:
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    except ImportError:  # pragma: no cover - older rclpy without the experimental executor
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor()


def spin(executor, node=None) -> None:
    """Spin until shutdown (Ctrl-C / SIGTERM / rclpy.shutdown()).

    Loops ``spin_once``: with the Kilted wheels' ``EventsExecutor``, ``spin()`` never fires
    timers (measured: 0 ticks of a 20 Hz timer in 1 s), while ``spin_once`` fires both timers and
    subscriptions.
    """
    if node is not None:
        executor.add_node(node)
    import rclpy

    while rclpy.ok():
        executor.spin_once(timeout_sec=0.1)


def run_node(make_node, name: str, args=None) -> int:
    """The ``main()`` of every node: init, build, spin until Ctrl-C or shutdown, clean up.

    A bad configuration (``ConfigError``, which names the parameter) exits with status 2.
    Every node it builds refuses run-time parameter changes it would not apply
    (:func:`robot_rl.ros_nodes.params.refuse_runtime_changes`).
    """
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException

    from robot_rl.config import ConfigError
    from robot_rl.ros_nodes.params import refuse_runtime_changes

    import signal

    # rclpy's SIGTERM handler shuts the context down and then calls the handler that was
    # installed before it -- by default SIG_DFL, which kills the process before destroy_node
    # (final commit, checkpoint, braking) runs. A Python handler that does nothing leaves the
    # shutdown to rclpy: spin ends and the node cleans up, as on Ctrl-C.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        # Usually already installed by declare_config; this covers a node that declares its
        # parameters without it. Idempotent.
        refuse_runtime_changes(node)
        spin(make_executor(), node)
    except ConfigError as e:
        print(f"{name}: {e}", file=sys.stderr)
        del e
        import gc

        gc.collect()  # the half-built node goes now, not in rclpy.shutdown()'s node cleanup
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def status_message(node, level: str, message: str, values: dict):
    """A ``diagnostic_msgs/DiagnosticArray`` with one status named after ``node``.

    Every robot_rl node publishes one on ``/diagnostics`` once a second; the runner
    (``robot-rl up``) prints its progress line from them. ``level``: ok / warn / error.
    ``values``: key -> value (stringified).
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    st = DiagnosticStatus()
    st.name = node.get_fully_qualified_name()
    st.hardware_id = node.get_namespace()
    st.level = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN,
                "error": DiagnosticStatus.ERROR}[level]
    st.message = message
    st.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    arr = DiagnosticArray(status=[st])
    arr.header.stamp = node.get_clock().now().to_msg()
    return arr
