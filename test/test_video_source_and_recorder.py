"""The video source and bag recorder nodes, run as separate processes over DDS, and reading bags back.

Nodes run from a temporary working directory, so they import the installed package (scripts/setup.sh).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPersonArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from exlow_pose_ros.nodes.image_conversion import image_to_numpy, numpy_to_image
from exlow_pose_ros.nodes.parameters import load_schema
from exlow_pose_ros.tools.bag_io import BagError, bag_summary, cdr_header, read_bag
from exlow_pose_ros.tools.video_source import VideoSourceError, publish_rate

from conftest import REPO
from robustness_support import node_command, node_module
from ros_samples import samples

VIDEO = Path(os.environ.get("EXLOW_POSE_ASSETS", REPO / "assets")) / "videos" / "vtest.avi"
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
SEED = 20261123

needs_video = pytest.mark.skipif(not VIDEO.is_file(), reason=f"{VIDEO} missing: run scripts/setup.sh")


def start_node(module: str, params: dict, cwd: Path, namespace: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(node_command(module, params, namespace), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def alive(process: subprocess.Popen):
    def check() -> None:
        if process.poll() is not None and process.returncode != 0:
            raise AssertionError(f"node exited with {process.returncode}:\n{process.stdout.read()}")
    return check


def finish(process: subprocess.Popen, timeout: float = 60) -> str:
    """Wait for the process to end on its own; kill it (and fail) if it does not. Generous: beside a training
    job a recorder took over 20 s to close its bag and leave after SIGINT (discovery alone took 6 s there)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"node did not exit within {timeout} s:\n{output}") from None
    return output


def opencv_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok, f"OpenCV could not read {count} frames of {path}"
        frames.append(frame)
    capture.release()
    return frames


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def namespace(request) -> str:
    return f"/t{os.getpid()}_" + "".join(c for c in request.node.name if c.isalnum())[:30]


# --- video source


@needs_video
def test_video_source_publishes_exactly_the_frames_of_the_video(ros, tmp_path, request):
    """Reliable, as fast as acknowledged: the ten images are OpenCV's decode of frames 0-9, in order, with
    stamps start_time + k / fps, and the source exits 0 at max_frames."""
    ns = namespace(request)
    received: list[Image] = []
    acks: list[Header] = []
    ack_publisher = ros.node.create_publisher(Header, f"{ns}/frame_ack", RELIABLE)

    def on_image(message: Image) -> None:
        received.append(message)
        acks.append(message.header)

    ros.node.create_subscription(Image, f"{ns}/image_raw", on_image, RELIABLE)
    source = start_node("video_source_node", {
        "video_path": str(VIDEO), "encoding": "rgb8", "frame_id": "test_camera_optical", "reliable": True,
        "rate": "max", "max_frames": 10, "start_time": 1000.5, "exit_at_end": True, "wait_for_subscribers": 1,
        "pipeline_ack_topic": "frame_ack", "ack_timeout": 10.0}, tmp_path, ns)
    check = alive(source)

    def done() -> bool:
        if acks and ack_publisher.get_subscription_count() > 0:  # an ack sent before matching would be lost
            ack_publisher.publish(acks.pop(0))
        return source.poll() is not None

    assert ros.spin_until(done, 40, check), "source did not finish"
    output = finish(source)
    assert source.returncode == 0, output
    expected = opencv_frames(VIDEO, 10)
    fps = cv2.VideoCapture(str(VIDEO)).get(cv2.CAP_PROP_FPS)
    assert len(received) == 10, f"received {len(received)} images\n{output}"
    for k, (message, bgr) in enumerate(zip(received, expected, strict=True)):
        assert message.encoding == "rgb8" and message.header.frame_id == "test_camera_optical"
        assert (message.width, message.height, message.step) == (768, 576, 768 * 3)
        assert stamp_ns(message.header) == 1_000_500_000_000 + round(k * 1e9 / fps), f"frame {k} stamp"
        assert np.array_equal(image_to_numpy(message), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), f"frame {k} pixels"
    assert "published 10 images (frames 0-9)" in output
    assert "10 acknowledged, 0 timed out" in output, output


def write_avi(path: Path, count: int, fps: float = 10) -> list[np.ndarray]:
    """A small MJPG avi of random frames; returns OpenCV's decode of it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    rng = np.random.default_rng(3)
    for _ in range(count):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return opencv_frames(path, count)


def test_video_source_paces_at_the_file_rate_with_sensor_data_qos(ros, tmp_path, request):
    """Default best-effort QoS, rate file (10 fps), from frame 3: each image is the frame its stamp names and
    they do not come faster than the video's frame rate. (Small frames: on this machine best-effort images of
    a megabyte lose fragments under load, a property of UDP, not of the node.)"""
    ns = namespace(request)
    video = tmp_path / "small.avi"
    frames = write_avi(video, 9)
    received: list[tuple[float, Image]] = []
    ros.node.create_subscription(Image, f"{ns}/image_raw", lambda m: received.append((time.monotonic(), m)),
                                 qos_profile_sensor_data)
    source = start_node("video_source_node", {
        "video_path": str(video), "start_frame": 3, "max_frames": 6, "start_time": 0.0, "exit_at_end": True,
        "wait_for_subscribers": 1}, tmp_path, ns)
    assert ros.spin_until(lambda: source.poll() is not None, 40, alive(source)), "source did not finish"
    ros.spin_until(lambda: len(received) >= 6, 5)  # the last frames may still be in flight
    output = finish(source)
    assert source.returncode == 0, output
    assert "published 6 images (frames 3-8)" in output, output
    # Best effort: a frame sent before this side has matched the publisher is lost; later ones arrive.
    assert len(received) >= 3, f"only {len(received)} of 6 best-effort images arrived\n{output}"
    indices = []
    for _, message in received:
        assert message.encoding == "bgr8" and message.header.frame_id == "camera_optical_frame"
        index = 3 + round(stamp_ns(message.header) * 10 / 1e9)
        assert stamp_ns(message.header) == (index - 3) * 100_000_000
        assert np.array_equal(image_to_numpy(message), frames[index]), f"frame {index} pixels"
        indices.append(index)
    assert indices == sorted(set(indices)) and set(indices) <= set(range(3, 9))
    span = received[-1][0] - received[0][0]
    assert span >= 0.7 * (indices[-1] - indices[0]) / 10, f"{len(indices)} frames in {span:.3f} s: faster than 10 fps"


def write_avi_with_a_broken_frame(path: Path, broken: int) -> list[np.ndarray]:
    """A 10-frame MJPG avi whose frame `broken` has all its JPEG bytes zeroed; returns OpenCV's decode of the
    intact file (the other frames' bytes are the same in both)."""
    intact = path.with_name("intact.avi")
    expected = write_avi(intact, 10)
    data = bytearray(intact.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) == 10, "expected one JPEG start marker per frame"
    end = data.index(b"\xff\xd9", starts[broken]) + 2  # the frame's JPEG end marker
    data[starts[broken]:end] = bytes(end - starts[broken])  # no JPEG data at all: FFmpeg cannot conceal it
    path.write_bytes(bytes(data))
    return expected


def test_a_frame_that_fails_to_decode_is_skipped_and_the_rest_keep_their_stamps(ros, tmp_path, request):
    ns = namespace(request)
    video = tmp_path / "broken.avi"
    expected = write_avi_with_a_broken_frame(video, broken=4)
    received: list[Image] = []
    ros.node.create_subscription(Image, f"{ns}/image_raw", received.append, RELIABLE)
    source = start_node("video_source_node", {
        "video_path": str(video), "reliable": True, "qos_depth": 20, "rate": "100", "start_time": 5.0,
        "exit_at_end": True, "wait_for_subscribers": 1}, tmp_path, ns)
    assert ros.spin_until(lambda: source.poll() is not None, 40, alive(source)), "source did not finish"
    ros.spin_until(lambda: len(received) >= 9, 2)
    output = finish(source)
    assert source.returncode == 0, output
    assert "frame 4 of" in output and "failed to decode" in output, output
    indices = [round((stamp_ns(m.header) - 5_000_000_000) * 10 / 1e9) for m in received]
    assert indices == [0, 1, 2, 3, 5, 6, 7, 8, 9], output
    for index, message in zip(indices, received, strict=True):
        assert stamp_ns(message.header) == 5_000_000_000 + index * 100_000_000
        assert np.array_equal(image_to_numpy(message), expected[index]), f"frame {index} pixels"


@pytest.mark.parametrize("module,schema", [("video_source_node", "video_source_node"),
                                           ("bag_recorder_node", "bag_recorder_node")])
def test_help_prints_every_parameter(tmp_path, module, schema):
    result = subprocess.run([sys.executable, "-m", node_module(module), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name, spec in load_schema(schema).items():
        assert f"  {name} ({spec.type}, default" in result.stdout, f"--help misses {name}"


@pytest.mark.parametrize("module,params,expected", [
    ("video_source_node", {"video_path": "/nonexistent/video.mp4"}, "/nonexistent/video.mp4"),
    ("video_source_node", {"video_path": str(REPO / "README.md")}, "cannot open"),
    ("video_source_node", {"video_path": str(VIDEO), "rate": "fast"}, "rate 'fast'"),
    ("bag_recorder_node", {"topics": ["nobody_publishes_this"], "discovery_timeout": 0.3},
     "/nobody_publishes_this"),
])
def test_bad_configuration_exits_nonzero_with_one_clear_line(tmp_path, module, params, expected):
    process = start_node(module, params, tmp_path)
    output = finish(process, 30)
    assert process.returncode == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "cannot start" in lines[0] and expected in lines[0], output
    assert not any(tmp_path.iterdir()), "a failed start left files behind"


def test_pure_helpers_refuse_bad_values():
    assert publish_rate("file", 25.0) == 25.0 and publish_rate("max", 25.0) is None and publish_rate("12.5", 1) == 12.5
    for bad in ("0", "-3", "nan", "fast", ""):
        with pytest.raises(VideoSourceError, match="rate"):
            publish_rate(bad, 25.0)
    array = TrackedPersonArray()
    array.header.stamp.sec, array.header.stamp.nanosec, array.header.frame_id = 17, 123456789, "cam_é"
    data = serialize_message(array)
    assert cdr_header(data) == (17, 123456789, "cam_é")
    with pytest.raises(BagError):
        cdr_header(data[:14])


# --- recorder


def wait_for_match(ros, publishers, process, count: int = 1) -> None:
    assert ros.spin_until(lambda: all(p.get_subscription_count() >= count for p in publishers), 30, alive(process)), \
        "the recorder's subscriptions did not match"


@pytest.mark.parametrize("stop_signal,timestamp", [(signal.SIGINT, "receive"), (signal.SIGTERM, "header")],
                         ids=["SIGINT", "SIGTERM"])
def test_recorder_writes_custom_types_and_images_to_mcap_that_read_back_intact(ros, tmp_path, request,
                                                                               stop_signal, timestamp):
    ns = namespace(request)
    count = 5
    persons_out = ros.node.create_publisher(TrackedPersonArray, f"{ns}/tracked_persons", RELIABLE)
    skeletons_out = ros.node.create_publisher(Skeleton2DArray, f"{ns}/skeletons", RELIABLE)
    images_out = ros.node.create_publisher(Image, f"{ns}/image_raw", qos_profile_sensor_data)
    acks: list[Header] = []
    ros.node.create_subscription(Header, f"{ns}/recorded", acks.append, RELIABLE)
    bag = tmp_path / "bag"
    before = time.time_ns()
    recorder = start_node("bag_recorder_node", {
        "topics": ["tracked_persons", "skeletons", "image_raw", "never:exlow_pose_msgs/msg/PixelBox"],
        "output": str(bag), "timestamp": timestamp, "ack_topic": "recorded", "ack_source_topic": "skeletons"},
        tmp_path, ns)
    wait_for_match(ros, [persons_out, skeletons_out, images_out], recorder)

    persons = samples(TrackedPersonArray, SEED, count)
    skeletons = samples(Skeleton2DArray, SEED, count)
    rng = np.random.default_rng(SEED)
    images = []
    for k in range(count):
        header = Header(frame_id="camera_optical_frame")
        header.stamp.sec, header.stamp.nanosec = 1000 + k, 250_000_000
        images.append(numpy_to_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "rgb8", header))
    for k in range(count):
        images_out.publish(images[k])
        persons_out.publish(persons[k])
        ros.spin_until(lambda: False, 0.03)  # best-effort images: do not burst
        skeletons_out.publish(skeletons[k])
    # The recorder acknowledges each skeleton array once it is in the bag, with that array's header.
    assert ros.spin_until(lambda: len(acks) >= count, 20, alive(recorder)), f"{len(acks)} acks"
    assert [(a.stamp, a.frame_id) for a in acks] == [(s.header.stamp, s.header.frame_id) for s in skeletons]
    ros.spin_until(lambda: False, 0.5)  # the other topics' last messages
    recorder.send_signal(stop_signal)
    output = finish(recorder)
    after = time.time_ns()
    assert recorder.returncode == 0, output
    assert f"{ns}/skeletons {count}" in output and f"{ns}/never 0" in output, output

    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap")), list(bag.iterdir())
    summary = bag_summary(bag)
    assert summary["storage"] == "mcap"
    assert summary["topics"] == {
        f"{ns}/tracked_persons": {"type": "exlow_pose_msgs/msg/TrackedPersonArray", "count": count},
        f"{ns}/skeletons": {"type": "exlow_pose_msgs/msg/Skeleton2DArray", "count": count},
        f"{ns}/image_raw": {"type": "sensor_msgs/msg/Image", "count": count},
        f"{ns}/never": {"type": "exlow_pose_msgs/msg/PixelBox", "count": 0}}

    by_topic: dict[str, list] = {}
    stamps: dict[str, list[int]] = {}
    for topic, stamp, message in read_bag(bag):
        by_topic.setdefault(topic, []).append(message)
        stamps.setdefault(topic, []).append(stamp)
    for name, sent in (("tracked_persons", persons), ("skeletons", skeletons), ("image_raw", images)):
        got, got_stamps = by_topic[f"{ns}/{name}"], stamps[f"{ns}/{name}"]
        assert [type(m) for m in got] == [type(m) for m in sent]
        if timestamp == "receive":  # bag order is arrival order
            for k, (a, b) in enumerate(zip(sent, got, strict=True)):
                assert a == b, f"{name} #{k} differs after the bag"
            assert all(before <= s <= after for s in got_stamps)
        else:  # bag order is header-stamp order; stamps before 1970 fall back to the receive time
            unmatched = list(sent)
            for k, message in enumerate(got):
                assert message in unmatched, f"{name}: bag message #{k} was not sent"
                unmatched.remove(message)
            for s, message in zip(got_stamps, got, strict=True):
                header_ns = stamp_ns(message.header)
                assert s == header_ns if header_ns >= 0 else before <= s <= after, f"{name}: bag time {s}"
    # The bag carries the custom definitions: read without our classes, from the bag's own definitions.
    plain = [m for _, _, m in read_bag(bag, [f"{ns}/skeletons"], rclpy_classes=False)]
    def fields(m) -> tuple:
        return (m.header.frame_id, int(m.image_width), tuple((int(s.track_id), s.layout, float(s.box.x_max),
                                                              tuple(float(k.y) for k in s.keypoints))
                                                             for s in m.skeletons))
    assert sorted(map(fields, plain)) == sorted(map(fields, skeletons))
    assert list(read_bag(bag, ["/no/such/topic"])) == []


@needs_video
def test_recorder_acknowledges_the_video_source_and_matches_its_late_reliable_publisher(ros, tmp_path, request):
    """The demo's wiring without the middle: the recorder starts first (type given, no publisher yet), then
    subscribes with the QoS of the source's reliable publisher when it appears; the source paces itself on
    the recorder's acks, so every 1.3 MB frame is in the bag."""
    ns = namespace(request)
    bag = tmp_path / "bag"
    recorder = start_node("bag_recorder_node", {
        "topics": ["image_raw:sensor_msgs/msg/Image"], "output": str(bag), "ack_topic": "recorded",
        "ack_source_topic": "image_raw"}, tmp_path, ns)
    # The recorder first (it subscribes when a publisher appears), then the source.
    assert ros.spin_until(lambda: ("bag_recorder_node", ns) in ros.node.get_node_names_and_namespaces(), 30,
                          alive(recorder))
    source = start_node("video_source_node", {
        "video_path": str(VIDEO), "reliable": True, "rate": "max", "max_frames": 8, "start_time": 2.0,
        "exit_at_end": True, "wait_for_subscribers": 1, "pipeline_ack_topic": "recorded", "ack_timeout": 20.0},
        tmp_path, ns)
    assert ros.spin_until(lambda: source.poll() is not None, 60, alive(recorder)), "source did not finish"
    source_output = finish(source)
    assert source.returncode == 0, source_output
    assert "8 acknowledged, 0 timed out" in source_output, source_output
    recorder.send_signal(signal.SIGINT)
    output = finish(recorder)
    assert recorder.returncode == 0, output
    assert f"{ns}/image_raw: reliable, 1 publisher(s)" in output, output
    recorded = list(read_bag(bag))
    assert [topic for topic, _, _ in recorded] == [f"{ns}/image_raw"] * 8
    fps = cv2.VideoCapture(str(VIDEO)).get(cv2.CAP_PROP_FPS)
    for k, ((_, _, image), bgr) in enumerate(zip(recorded, opencv_frames(VIDEO, 8), strict=True)):
        assert stamp_ns(image.header) == 2_000_000_000 + round(k * 1e9 / fps)
        assert np.array_equal(image_to_numpy(image), bgr), f"frame {k} pixels"


def test_recorder_refuses_to_overwrite_unless_asked(tmp_path):
    bag = tmp_path / "old_bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("old")
    (bag / "old_bag_0.mcap").write_bytes(b"old")
    params = {"topics": ["points:exlow_pose_msgs/msg/PixelBox"], "output": str(bag), "max_duration": 0.5}
    refused = start_node("bag_recorder_node", params, tmp_path)
    output = finish(refused)
    assert refused.returncode == 2 and "exists already" in output and "overwrite" in output, output
    assert (bag / "old_bag_0.mcap").read_bytes() == b"old"

    not_a_bag = tmp_path / "notes"
    not_a_bag.mkdir()
    (not_a_bag / "thesis.tex").write_text("keep me")
    kept = start_node("bag_recorder_node", {**params, "output": str(not_a_bag), "overwrite": True}, tmp_path)
    output = finish(kept)
    assert kept.returncode == 2 and "not a bag directory" in output, output
    assert (not_a_bag / "thesis.tex").read_text() == "keep me"

    replaced = start_node("bag_recorder_node", {**params, "overwrite": True}, tmp_path)
    output = finish(replaced)  # max_duration ends it
    assert replaced.returncode == 0, output
    assert not (bag / "old_bag_0.mcap").exists()
    assert bag_summary(bag)["topics"] == {"/points": {"type": "exlow_pose_msgs/msg/PixelBox", "count": 0}}


def test_a_sqlite3_bag_written_as_rosbag2_does_reads_back_the_same(tmp_path):
    """What `ros2 bag record -s sqlite3` writes (format 9, definitions and type hashes from the ROS types):
    made here with rosbags' own typestore, messages serialized by rclpy as on the wire."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    share = Path(get_package_share_directory("exlow_pose_msgs")) / "msg"
    custom = {}
    for path in share.glob("*.msg"):
        custom.update(get_types_from_msg(path.read_text(), f"exlow_pose_msgs/msg/{path.stem}"))
    typestore.register(custom)

    persons = samples(TrackedPersonArray, SEED + 1, 4)
    skeletons = samples(Skeleton2DArray, SEED + 1, 4)
    image = numpy_to_image(np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3), "bgr8")
    bag = tmp_path / "rosbag2_sqlite"
    written = []
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connections = {topic: writer.add_connection(topic, msgtype, typestore=typestore) for topic, msgtype in (
            ("/persons", "exlow_pose_msgs/msg/TrackedPersonArray"),
            ("/skeletons", "exlow_pose_msgs/msg/Skeleton2DArray"), ("/image", "sensor_msgs/msg/Image"))}
        for k in range(4):
            for topic, message in (("/persons", persons[k]), ("/skeletons", skeletons[k]), ("/image", image)):
                timestamp = 1_000_000_000 * (k + 1) + len(written)
                writer.write(connections[topic], timestamp, serialize_message(message))
                written.append((topic, timestamp, message))
    assert list(bag.glob("*.db3"))

    assert [(t, s, m) for t, s, m in read_bag(bag)] == written
    summary = bag_summary(bag)
    assert summary["storage"] == "sqlite3" and summary["message_count"] == 12
    assert summary["topics"]["/skeletons"] == {"type": "exlow_pose_msgs/msg/Skeleton2DArray", "count": 4}
    assert summary["start_ns"] == written[0][1] and summary["end_ns"] == written[-1][1]
    plain_image = next(m for t, _, m in read_bag(bag, ["/image"], rclpy_classes=False))
    assert bytes(plain_image.data) == bytes(image.data) and plain_image.encoding == "bgr8"
    with pytest.raises(FileNotFoundError):
        bag_summary(tmp_path / "missing")
