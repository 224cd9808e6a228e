"""Every exlow_pose_msgs type crosses DDS from one process to another with all fields intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from conftest import TEST_DIR
from ros_samples import interface_types, samples, topic_for

COUNT = 6
SEED = 20261122


def first_difference(sent, received, path="") -> str | None:
    """Where two messages differ, as a field path, or None."""
    if hasattr(sent, "get_fields_and_field_types"):
        for field in sent.get_fields_and_field_types():
            found = first_difference(getattr(sent, field), getattr(received, field), f"{path}.{field}")
            if found:
                return found
        return None
    if isinstance(sent, list | tuple):
        if len(sent) != len(received):
            return f"{path}: length {len(sent)} != {len(received)}"
        for index, (a, b) in enumerate(zip(sent, received, strict=True)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if sent == received else f"{path}: {sent!r} != {received!r}"


def test_every_message_type_arrives_intact_from_another_process(ros):
    types = interface_types("exlow_pose_msgs")
    assert {t.__name__ for t in types} >= {
        "PixelBox", "TrackedPerson", "TrackedPersonArray", "Keypoint2D", "Skeleton2D", "Skeleton2DArray"}
    prefix = f"/exlow_test_{os.getpid()}"
    received: dict[type, list] = {t: [] for t in types}
    qos = QoSProfile(depth=COUNT, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    for message_type in types:
        ros.node.create_subscription(message_type, topic_for(message_type, prefix),
                                     received[message_type].append, qos)

    publisher = subprocess.Popen(
        [sys.executable, str(TEST_DIR / "publish_samples.py"), "--seed", str(SEED), "--count", str(COUNT),
         "--prefix", prefix],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def publisher_alive() -> None:
            assert publisher.poll() is None, f"publisher died:\n{publisher.stdout.read()}"

        ros.spin_until(lambda: all(len(r) >= COUNT for r in received.values()), 60, publisher_alive)
        counts = {t.__name__: len(r) for t, r in received.items()}
        assert all(n == COUNT for n in counts.values()), f"received {counts}, expected {COUNT} of each"
    finally:
        publisher.send_signal(signal.SIGINT)
        output, _ = publisher.communicate(timeout=20)
    assert publisher.returncode == 0, f"publisher did not shut down cleanly on SIGINT:\n{output}"

    for message_type in types:
        expected = samples(message_type, SEED, COUNT)
        for index, (sent, got) in enumerate(zip(expected, received[message_type], strict=True)):
            difference = first_difference(sent, got)
            assert difference is None, f"{message_type.__name__} #{index} differs at {difference}"
            assert sent == got
    # The samples really exercise the nested fields: a crop image with data, keypoints present.
    person_arrays = samples(types[[t.__name__ for t in types].index("TrackedPersonArray")], SEED, COUNT)
    assert any(len(p.crop.data) > 0 for a in person_arrays for p in a.persons)
