"""The video source's one input, the pipeline's acknowledgements, arriving repeated, out of order and for
frames it never sent: it reports the stray ones with their stamp and publishes every frame regardless."""

from __future__ import annotations

import os

import cv2
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from robustness_support import NodeProcess, header, stamp_ns

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
FRAMES = 8


def test_repeated_reordered_and_stray_acks_lose_no_frame(ros, tmp_path):
    video = tmp_path / "small.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for k in range(FRAMES):
        writer.write(np.full((48, 64, 3), 20 * k, np.uint8))
    writer.release()
    ns = f"/robust_source_{os.getpid()}"
    received: list[Image] = []
    acks = ros.node.create_publisher(Header, f"{ns}/frame_ack", RELIABLE)
    ros.node.create_subscription(Image, f"{ns}/image_raw", received.append, RELIABLE)
    source = NodeProcess("video_source_node", {
        "video_path": str(video), "reliable": True, "rate": "max", "start_time": 100.0, "exit_at_end": True,
        "wait_for_subscribers": 1, "pipeline_ack_topic": "frame_ack", "ack_timeout": 30.0}, tmp_path, ns)
    assert ros.spin_until(lambda: acks.get_subscription_count() > 0, 30, source.check)
    acks.publish(header(999_000_000_000))  # a frame it never sent (another source on the topic?)
    answered = 0

    def acknowledge() -> bool:
        nonlocal answered
        while answered < len(received):
            stamp = stamp_ns(received[answered].header)
            acks.publish(header(stamp))
            acks.publish(header(stamp))                           # repeated
            if answered:
                acks.publish(header(stamp_ns(received[answered - 1].header)))  # an older one, late
            answered += 1
        return source.process.poll() is not None

    assert ros.spin_until(acknowledge, 40), f"the source did not finish:\n{source.since()}"
    code, output = source.wait()
    assert code == 0 and "Traceback" not in output, output
    assert [stamp_ns(m.header) for m in received] == [100_000_000_000 + k * 100_000_000 for k in range(FRAMES)]
    assert f"{FRAMES} acknowledged, 0 timed out" in output, output
    stray = [line for line in output.splitlines() if "[ERROR]" in line and "999.000000000" in line]
    assert stray and "no published frame" in stray[0], output
