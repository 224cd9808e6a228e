"""SIGINT and SIGTERM, while the nodes work and while they start: every node exits with status 0 and no
traceback, and the recorder closes a bag that reads back complete, with no message missing in between."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPersonArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from exlow_pose_ros.nodes.image_conversion import numpy_to_image
from exlow_pose_ros.tools.bag_io import bag_summary, read_bag

from conftest import REPO
from robustness_support import NodeProcess, header, person, person_array, pose_model, stamp_ns

ASSETS = Path(os.environ.get("EXLOW_POSE_ASSETS", REPO / "assets"))
VTEST, DETECTOR = ASSETS / "videos" / "vtest.avi", ASSETS / "models" / "yolo11n-pose.pt"
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
SIGNALS = pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


def namespace(request) -> str:
    return f"/shutdown_{os.getpid()}_" + "".join(c for c in request.node.name if c.isalnum())[:30]


def assert_clean_exit(node: NodeProcess, stop_signal: int) -> str:
    # Generous: a node signalled in mid start-up exits when its detector or model has loaded, which takes
    # tens of seconds on a loaded 2-core machine (a training job beside the suite).
    code, output = node.stop(stop_signal, timeout=120)
    assert code == 0, f"exit status {code} after {signal.Signals(stop_signal).name}:\n{output}"
    assert "Traceback" not in output and "cannot start" not in output, output
    return output


@SIGNALS
def test_the_recorder_flushes_everything_it_received_when_stopped_mid_stream(ros, tmp_path, request, stop_signal):
    """Messages keep coming while the signal arrives: the bag is complete (metadata, summary), holds every
    message the recorder acknowledged, and what it holds is an unbroken run from the first message on."""
    ns = namespace(request)
    bag = tmp_path / "bag"
    recorder = NodeProcess("bag_recorder_node", {
        "topics": ["persons:exlow_pose_msgs/msg/TrackedPersonArray", "image_raw:sensor_msgs/msg/Image"],
        "output": str(bag), "reliability": "reliable", "qos_depth": 1000, "ack_topic": "recorded",
        "ack_source_topic": "persons", "timestamp": "header"}, tmp_path, ns)
    persons_out = ros.node.create_publisher(TrackedPersonArray, f"{ns}/persons", RELIABLE)
    images_out = ros.node.create_publisher(Image, f"{ns}/image_raw", RELIABLE)
    acks: list[int] = []
    ros.node.create_subscription(Header, f"{ns}/recorded", lambda h: acks.append(stamp_ns(h)), RELIABLE)
    assert ros.spin_until(lambda: persons_out.get_subscription_count() and images_out.get_subscription_count(), 30,
                          recorder.check), "the recorder's subscriptions did not match"
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)
    sent = 0
    signalled_at = None
    while recorder.process.poll() is None and sent < 3000:
        stamp = 1_000_000_000 + sent * 10_000_000
        persons_out.publish(person_array(stamp, [person(7)] if sent % 2 else []))
        if sent % 5 == 0:
            images_out.publish(numpy_to_image(image, "rgb8", header(stamp)))
        sent += 1
        ros.spin_until(lambda: False, 0.005)
        if signalled_at is None and len(acks) >= 50:
            recorder.process.send_signal(stop_signal)  # and keep publishing: messages are in flight meanwhile
            signalled_at = sent
    assert signalled_at is not None, f"only {len(acks)} acks for {sent} messages:\n{recorder.since()}"
    output = assert_clean_exit(recorder, stop_signal)
    closed = re.search(r"bag \S+ closed: (\d+) messages", output)
    assert closed, output

    recorded = list(read_bag(bag))
    persons = [stamp_ns(m.header) for topic, _, m in recorded if topic == f"{ns}/persons"]
    images = [stamp_ns(m.header) for topic, _, m in recorded if topic == f"{ns}/image_raw"]
    assert len(recorded) == int(closed.group(1)), "the bag holds other than what the recorder counted"
    assert persons == [1_000_000_000 + k * 10_000_000 for k in range(len(persons))], "a gap in the recording"
    assert images == [1_000_000_000 + k * 50_000_000 for k in range(len(images))], "a gap in the images"
    assert set(acks) <= set(persons) and len(persons) >= signalled_at - 5 > 0
    summary = bag_summary(bag)
    assert summary["topics"][f"{ns}/persons"]["count"] == len(persons)
    assert summary["message_count"] == len(recorded)


@SIGNALS
def test_the_pose_node_stops_cleanly_while_busy(ros, tmp_path_factory, tmp_path, request, stop_signal):
    ns = namespace(request)
    node = NodeProcess("pose_node", {"model_path": str(pose_model(tmp_path_factory)), "backend": "onnxruntime",
                                     "threads": 1}, tmp_path, ns)
    persons_out = ros.node.create_publisher(TrackedPersonArray, f"{ns}/tracked_persons", RELIABLE)
    answered: list[Skeleton2DArray] = []
    ros.node.create_subscription(Skeleton2DArray, f"{ns}/skeletons", answered.append, RELIABLE)
    assert ros.spin_until(lambda: persons_out.get_subscription_count() > 0, 30, node.check)
    frame = 0
    while len(answered) < 20:
        assert frame < 2000, f"no skeletons after {frame} frames:\n{node.since()}"
        persons_out.publish(person_array(2_000_000_000 + frame * 50_000_000, [person(k) for k in range(20)]))
        frame += 1
        ros.spin_until(lambda: False, 0.01, node.check)
    assert_clean_exit(node, stop_signal)


@SIGNALS
def test_the_pose_node_publishes_the_frames_it_owes_when_stopped(ros, tmp_path_factory, tmp_path, request,
                                                                 stop_signal):
    """In centre mode a track's last two frames are owed until more input comes; with no idle flush
    (flush_timeout 0) only the shutdown can publish them, and a SIGINT or SIGTERM must, before the node exits."""
    ns = namespace(request)
    node = NodeProcess("pose_node", {"model_path": str(pose_model(tmp_path_factory)), "backend": "onnxruntime",
                                     "threads": 1, "output_mode": "centre", "flush_timeout": 0.0}, tmp_path, ns)
    persons_out = ros.node.create_publisher(TrackedPersonArray, f"{ns}/tracked_persons", RELIABLE)
    answered: list[Skeleton2DArray] = []
    ros.node.create_subscription(Skeleton2DArray, f"{ns}/skeletons", answered.append, RELIABLE)
    assert ros.spin_until(lambda: persons_out.get_subscription_count() > 0, 30, node.check)
    stamps = [3_000_000_000 + k * 50_000_000 for k in range(6)]
    for stamp in stamps:
        persons_out.publish(person_array(stamp, [person(3)]))
        ros.spin_until(lambda: False, 0.02, node.check)
    assert ros.spin_until(lambda: len(answered) >= 4, 30, node.check), node.since()
    ros.spin_until(lambda: False, 0.5, node.check)
    assert len(answered) == 4, "the last two frames should still be owed"
    node.process.send_signal(stop_signal)
    ros.spin_until(lambda: len(answered) == len(stamps), 30)
    assert [stamp_ns(a.header) for a in answered] == stamps, node.since()
    assert all([s.track_id for s in a.skeletons] == [3] for a in answered)
    assert_clean_exit(node, stop_signal)


@pytest.mark.skipif(not DETECTOR.is_file(), reason="detector missing: run scripts/setup.sh")
@SIGNALS
def test_the_tracker_stops_cleanly_while_starting_and_while_busy(ros, tmp_path, request, stop_signal):
    ns = namespace(request)
    params = {"detector_model": str(DETECTOR), "image_size": 320, "reliable_input": True}
    starting = NodeProcess("tracker_node", params, tmp_path, f"{ns}_starting")
    busy = NodeProcess("tracker_node", params, tmp_path, ns)
    # The node appears in the graph before its detector loads (seconds): signal it then, in mid start-up.
    assert ros.spin_until(lambda: ("exlow_pose_tracker", f"{ns}_starting") in
                          ros.node.get_node_names_and_namespaces(), 60, starting.check)
    assert_clean_exit(starting, stop_signal)

    images_out = ros.node.create_publisher(Image, f"{ns}/image", RELIABLE)
    answered: list[TrackedPersonArray] = []
    ros.node.create_subscription(TrackedPersonArray, f"{ns}/tracked_persons", answered.append, RELIABLE)
    frame = 0
    pixels = np.random.default_rng(2).integers(0, 255, (120, 160, 3), np.uint8)
    while len(answered) < 5:
        assert frame < 3000, f"no tracked persons after {frame} images:\n{busy.since()}"
        if images_out.get_subscription_count():
            images_out.publish(numpy_to_image(pixels, "bgr8", header(3_000_000_000 + frame * 100_000_000)))
            frame += 1
        ros.spin_until(lambda: False, 0.05, busy.check)
    assert_clean_exit(busy, stop_signal)


@pytest.mark.skipif(not VTEST.is_file(), reason="video missing: run scripts/setup.sh")
@SIGNALS
def test_the_video_source_stops_cleanly_while_publishing(ros, tmp_path, request, stop_signal):
    ns = namespace(request)
    source = NodeProcess("video_source_node", {"video_path": str(VTEST), "rate": "30", "loop": True,
                                               "reliable": True}, tmp_path, ns)
    received: list[Image] = []
    ros.node.create_subscription(Image, f"{ns}/image_raw", received.append, RELIABLE)
    assert ros.spin_until(lambda: len(received) >= 5, 30, source.check), source.since()
    assert_clean_exit(source, stop_signal)
