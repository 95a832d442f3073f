"""Every robot_rl_interfaces message crosses between two real processes over real DDS, unchanged.

Two child processes run this very file: ``publish`` and ``subscribe``. Both build the same
expected messages from a fixed seed (every field set to a distinctive, non-default value), so
the subscriber can compare what arrived field by field; float32 fields compare as float32.

* ``PolicyWeights`` (300 KB of safetensors bytes) goes on a latched topic — reliable +
  transient_local + keep-last depth 1 on both ends, as in DESIGN §2 — and is published *before*
  the subscriber process even starts: the late joiner must still get it.
* The other types use reliable + volatile, depth 1 (the command QoS). The publisher waits until
  every one of those topics has a matched subscription before it publishes; a reliable writer
  then keeps each sample until the matched reader has it, so no sleep is needed.

Run by hand: ``python tests/ros/test_messages.py publish`` in one shell (same ROS_DOMAIN_ID),
``python tests/ros/test_messages.py subscribe`` in another.
"""
from __future__ import annotations

import sys
import time
from array import array
from pathlib import Path

import numpy as np

TOPIC_PREFIX = "/robot_rl_test/"
WEIGHTS_BYTES = 300_000
LATCHED_TYPES = ("PolicyWeights",)
MSG_DIR = Path(__file__).resolve().parents[2] / "interfaces" / "robot_rl_interfaces" / "msg"

# rosidl's name for a float32 scalar / sequence element (float64 is "double").
_FLOAT32 = "float"


def expected_messages() -> dict:
    """One message of every type, each field distinctive and non-default (seeded, so both
    processes build identical ones)."""
    from robot_rl_interfaces import msg

    rng = np.random.default_rng(20_240_611)

    def f32(n: int) -> array:
        return array("f", rng.standard_normal(n).astype(np.float32).tobytes())

    def f64(n: int) -> array:
        return array("d", (rng.standard_normal(n) * 2.0).tobytes())

    return {
        "Transition": msg.Transition(
            observation=f32(17),
            action=f32(7),
            next_observation=f32(17),
            reward=0.1,  # not representable in float32: arrives as float32(0.1)
            terminated=True,
            truncated=True,
            source=msg.Transition.SOURCE_INTERVENTION,
            robot_id=65_534,
            actor_session=2**64 - 2,
            seq=2**63 + 12_345,
            episode_id=0xDEAD_BEEF_CAFE_BABE,
            step_index=2**32 - 7,
            stamp_ns=-(2**62) + 11,
            policy_version=2**40 + 3,
            safety_rules=0b1111_1111_1111,
        ),
        "PolicyWeights": msg.PolicyWeights(
            version=2**64 - 1,
            config_hash="sha256:" + rng.bytes(32).hex(),
            safetensors=array("B", rng.bytes(WEIGHTS_BYTES)),
            stamp_ns=1_718_000_000_123_456_789,
        ),
        "ActionProposal": msg.ActionProposal(
            seq=2**64 - 3, stamp_ns=-5, velocities=f64(7)
        ),
        "AppliedCommand": msg.AppliedCommand(
            proposal_seq=2**64 - 4,
            stamp_ns=2**63 - 1,
            state_stamp_ns=-(2**63),
            velocities=f64(7),
            rules_fired=(
                msg.AppliedCommand.RULE_WATCHDOG
                | msg.AppliedCommand.RULE_JERK
                | msg.AppliedCommand.RULE_JOINT_ORDER
            ),
        ),
        "ReplayAck": msg.ReplayAck(
            robot_id=4_321, actor_session=2**64 - 5, committed_seq=2**50 + 1, stamp_ns=-(2**63)
        ),
        "TeleopCommand": msg.TeleopCommand(
            stamp_ns=123_456_789_012,
            action=f32(6),
            deadman=True,
            episode_mark=msg.TeleopCommand.MARK_DISCARD,
        ),
        "TaskState": msg.TaskState(
            stamp_ns=987_654_321,
            task_name="reach-ü ✓",  # non-ASCII: strings cross as UTF-8
            goal=f64(3),
            object_pose=f64(7),
            episode_id=2**64 - 6,
        ),
    }


def field_differences(expected, received) -> list[str]:
    """Fields where ``received`` differs from ``expected`` (empty list: equal)."""
    problems = []
    for field, rosidl_type in expected.get_fields_and_field_types().items():
        want, got = getattr(expected, field), getattr(received, field)
        if rosidl_type.startswith("sequence<"):
            if not isinstance(got, array) or got.typecode != want.typecode:
                problems.append(f"{field}: arrived as {type(got).__name__} "
                                f"{getattr(got, 'typecode', '')!r}, sent array {want.typecode!r}")
                continue
            if len(got) != len(want):
                problems.append(f"{field}: length {len(got)} != {len(want)}")
            elif got.tobytes() != want.tobytes():
                first = next(i for i, (a, b) in enumerate(zip(want, got)) if a != b)
                problems.append(f"{field}[{first}]: {got[first]!r} != {want[first]!r}")
        elif rosidl_type == _FLOAT32:
            if np.float32(got) != np.float32(want):
                problems.append(f"{field}: {got!r} != float32({want!r})")
        elif got != want or type(got) is not type(want):
            problems.append(f"{field}: {got!r} != {want!r}")
    return problems


def _qos(type_name: str):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    durability = (DurabilityPolicy.TRANSIENT_LOCAL if type_name in LATCHED_TYPES
                  else DurabilityPolicy.VOLATILE)
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=durability,
                      history=HistoryPolicy.KEEP_LAST, depth=1)


def run_publisher() -> int:
    """Publish the latched weights at once, the rest once matched; then stay up until SIGINT."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node("msg_test_publisher")
    try:
        messages = expected_messages()
        publishers = {name: node.create_publisher(type(m), TOPIC_PREFIX + name, _qos(name))
                      for name, m in messages.items()}
        for name in LATCHED_TYPES:
            publishers[name].publish(messages[name])
            print(f"PUBLISHED {name}", flush=True)
        waiting = {name: pub for name, pub in publishers.items() if name not in LATCHED_TYPES}
        while waiting:
            for name, pub in list(waiting.items()):
                if pub.get_subscription_count() > 0:
                    pub.publish(messages[name])
                    print(f"PUBLISHED {name}", flush=True)
                    del waiting[name]
            if waiting:
                rclpy.spin_once(node, timeout_sec=0.05)
        print("PUBLISHED ALL", flush=True)
        rclpy.spin(node)  # keep the latched sample (and reliable resends) alive
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run_subscriber(timeout: float = 60.0) -> int:
    """Receive one message of every type, print ``OK <type>`` / ``MISMATCH`` / ``MISSING``."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node("msg_test_subscriber")
    messages = expected_messages()
    received: dict = {}
    for name, m in messages.items():
        node.create_subscription(
            type(m), TOPIC_PREFIX + name,
            lambda msg, name=name: received.setdefault(name, msg), _qos(name))
    print("SUBSCRIBED", flush=True)
    deadline = time.monotonic() + timeout
    while len(received) < len(messages) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
    failed = False
    for name, want in messages.items():
        if name not in received:
            print(f"MISSING {name}: nothing arrived within {timeout:.0f} s", flush=True)
            failed = True
            continue
        problems = field_differences(want, received[name])
        if problems:
            print(f"MISMATCH {name}: " + "; ".join(problems), flush=True)
            failed = True
        else:
            print(f"OK {name}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 1 if failed else 0


def _field_differs(a, b, field: str) -> bool:
    """Whether one field differs between two messages of the same type."""
    x, y = getattr(a, field), getattr(b, field)
    if isinstance(x, array) or isinstance(y, array):
        return bytes(x) != bytes(y)
    return x != y


# ------------------------------------------------------------------------------------ tests
def test_expected_messages_cover_every_type_and_field():
    """The fixture data itself: every .msg type present, every field away from its default."""
    defined = sorted(p.stem for p in MSG_DIR.glob("*.msg"))
    messages = expected_messages()
    assert sorted(messages) == defined
    for name, m in messages.items():
        default = type(m)()
        same = [f for f in m.get_fields_and_field_types() if not _field_differs(default, m, f)]
        assert not same, f"{name}: fields left at their default value: {same}"
    assert len(messages["PolicyWeights"].safetensors) == WEIGHTS_BYTES


def test_every_message_type_crosses_two_processes(ros_process):
    publisher = ros_process.python([__file__, "publish"], name="publisher")
    # The weights are out before the subscriber process exists: only transient_local can
    # deliver them now.
    publisher.wait_for_line(r"^PUBLISHED PolicyWeights$", timeout=60)
    subscriber = ros_process.python([__file__, "subscribe"], name="subscriber")
    code = subscriber.wait(timeout=120)
    report = f"{subscriber.tail()}\n{publisher.tail()}"
    assert code == 0, f"subscriber failed (exit {code})\n{report}"
    ok = {line.split()[1] for line in subscriber.lines if line.startswith("OK ")}
    assert ok == set(expected_messages()), report


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "publish":
        sys.exit(run_publisher())
    if role == "subscribe":
        sys.exit(run_subscriber())
    sys.exit(f"usage: {sys.argv[0]} publish|subscribe")
