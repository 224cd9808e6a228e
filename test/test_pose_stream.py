"""The pose node's output stream over DDS in centre mode (two frames of delay): exactly one Skeleton2DArray per
input frame, in input order, every tracked person-frame described in its own frame's array (tracks with gaps,
short tracks, the last frames of a stream that stops, a stream restart), and the visual outputs that go with
each array (markers on the camera's rays, one ImageMarker, the compressed annotated image)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPersonArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import ImageMarker, MarkerArray

from exlow_pose_ros.core.keypoints import COCO17_LIMBS
from exlow_pose_ros.nodes.image_conversion import numpy_to_image

from conftest import RosTestNode
from robustness_support import NodeProcess, WatchedNode, header, person, person_array, pose_model, stamp_ns

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
FLUSH_TIMEOUT = 0.5
FX, FY, CX, CY = 200.0, 220.0, 150.0, 110.0
PERIOD = 100_000_000  # ns between frames


class StreamHarness(WatchedNode):
    def __init__(self, ros: RosTestNode, node: NodeProcess, namespace: str) -> None:
        super().__init__(ros, node, namespace.strip("/"), namespace)
        self.namespace = namespace
        create = ros.node.create_publisher
        self.persons = create(TrackedPersonArray, f"{namespace}/tracked_persons", RELIABLE)
        self.images = create(Image, f"{namespace}/image", RELIABLE)
        self.camera_info = create(CameraInfo, f"{namespace}/camera_info", 10)
        self.arrays: list[Skeleton2DArray] = []
        self.markers: dict[int, MarkerArray] = {}
        self.image_markers: dict[int, ImageMarker] = {}
        self.jpegs: dict[int, CompressedImage] = {}
        subscribe = ros.node.create_subscription
        # Every output the tests read; the fixture waits until the node's publishers match them all.
        self.outputs = [
            subscribe(Skeleton2DArray, f"{namespace}/skeletons", self.arrays.append, RELIABLE),
            subscribe(MarkerArray, f"{namespace}/skeleton_markers",
                      lambda m: self.markers.__setitem__(stamp_ns(m.markers[0].header), m), 100),
            subscribe(ImageMarker, f"{namespace}/skeleton_image_markers",
                      lambda m: self.image_markers.__setitem__(stamp_ns(m.header), m), 100),
            subscribe(CompressedImage, f"{namespace}/annotated_image/compressed",
                      lambda m: self.jpegs.__setitem__(stamp_ns(m.header), m), 100)]

    def send(self, stamp: int, tracks: list[int]) -> None:
        """One frame: its camera_info and source image, then its tracked persons (each track at its own place)."""
        self.camera_info.publish(CameraInfo(header=header(stamp), width=320, height=240,
                                            k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]))
        image = numpy_to_image(np.full((240, 320, 3), 40, np.uint8), "bgr8", header(stamp))
        self.images.publish(image)
        # A 230 KB image travels slower than the persons (UDP fragments): under load it came after its frame
        # was published, and that frame had no annotated image. Give it the head start a camera gives it.
        self.ros.spin_until(lambda: False, 0.1 + len(image.data) / 5e6)
        persons = [person(track, (20.0 + 40 * (track % 6), 40.0, 32.0 + 40 * (track % 6), 72.0)) for track in tracks]
        self.persons.publish(person_array(stamp, persons))

    def wait_for_arrays(self, count: int, timeout: float = 15) -> list[Skeleton2DArray]:
        assert self.ros.spin_until(lambda: len(self.arrays) >= count, timeout, self.node.check), \
            f"{len(self.arrays)} arrays of {count}; log:\n{self.node.since()[-3000:]}"
        return self.arrays[:count]


@contextmanager
def pose_node_harness(tmp_path_factory, name: str, params: dict, compressed: bool = False):
    """A pose node process in its own namespace (ONNX Runtime, reliable images, fast diagnostics, plus
    `params`) with its StreamHarness, once every input and output topic has matched; the node must exit
    cleanly afterwards. `compressed`: the harness also publishes on image/compressed (harness.compressed)."""
    namespace = f"/{name}_{os.getpid()}"
    node = NodeProcess("pose_node", {
        "model_path": str(pose_model(tmp_path_factory)), "backend": "onnxruntime", "threads": 1,
        "reliable_image": True, "diagnostics_period": 0.2, **params},
        tmp_path_factory.mktemp(f"{name}_cwd"), namespace, node_name=namespace.strip("/"))
    ros = RosTestNode(f"{name}_test")
    harness = StreamHarness(ros, node, namespace)
    harness.compressed = ros.node.create_publisher(CompressedImage, f"{namespace}/image/compressed", RELIABLE) \
        if compressed else None
    images = harness.compressed or harness.images
    try:
        # Both directions matched (each topic is discovered on its own; under load some take seconds).
        assert ros.spin_until(lambda: harness.persons.get_subscription_count() > 0
                              and images.get_subscription_count() > 0
                              and all(o.get_publisher_count() > 0 for o in harness.outputs), 60, node.check), \
            node.since()
        yield harness
    finally:
        ros.close()
        code, output = node.stop()
    assert code == 0 and "Traceback" not in output, output


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    with pose_node_harness(tmp_path_factory, "pose_stream",
                           {"output_mode": "centre", "flush_timeout": FLUSH_TIMEOUT}) as harness:
        yield harness


def test_one_array_per_frame_in_order_and_no_person_frame_lost(stream):
    first = [
        [1], [1], [1, 2], [1, 2], [2],        # track 1 misses frame 4 (a gap), track 2 lives for three frames
        [1], [1, 3], [1, 3], [3], [1, 3]]     # track 3 from frame 6; frames 8 and 9 are owed when input stops
    restart = [[4], [4, 5], [5]]              # a new stream: stamps 50 s back
    frames = [(1_000_000_000_000 + k * PERIOD, tracks) for k, tracks in enumerate(first)] + \
             [(950_000_000_000 + k * PERIOD, tracks) for k, tracks in enumerate(restart)]
    for stamp, tracks in frames:
        stream.send(stamp, tracks)
    arrays = stream.wait_for_arrays(len(frames))
    # The restart publishes the old stream's owed frames first; the idle flush the new stream's last ones.
    assert [stamp_ns(a.header) for a in arrays] == [stamp for stamp, _ in frames]
    for array, (stamp, tracks) in zip(arrays, frames, strict=True):
        assert sorted(s.track_id for s in array.skeletons) == tracks, stamp
        assert all(s.stamp.sec * 1_000_000_000 + s.stamp.nanosec == stamp for s in array.skeletons)
    # The node's own count, once nothing waits: every array it published is one of these (no repeated frame).
    stream.wait_diagnostics({"frames waiting": "0", "frames published": str(len(frames))})
    assert len(stream.arrays) == len(frames)


def test_each_array_has_its_markers_image_marker_and_compressed_annotated_image(stream):
    arrays = stream.arrays
    assert arrays, "run after the stream test"
    def missing() -> list[int]:
        return [stamp_ns(a.header) for a in arrays if stamp_ns(a.header) not in stream.image_markers
                or stamp_ns(a.header) not in stream.jpegs]

    assert stream.ros.spin_until(lambda: not missing(), 10), \
        f"frames without an image marker or jpeg: {missing()}; diagnostics {stream.diagnostics}"
    for array in arrays:
        stamp = stamp_ns(array.header)
        limbs = [(k, s.keypoints[a], s.keypoints[b]) for k, s in enumerate(array.skeletons) for a, b in COCO17_LIMBS]
        image_marker = stream.image_markers[stamp]
        assert len(image_marker.points) == 2 * len(limbs) == len(image_marker.outline_colors)
        for (_, start, stop), drawn in zip(limbs, zip(image_marker.points[::2], image_marker.points[1::2],
                                                       strict=True), strict=True):
            assert (drawn[0].x, drawn[0].y, drawn[1].x, drawn[1].y) == pytest.approx((start.x, start.y, stop.x,
                                                                                      stop.y), abs=1e-3)
        jpeg = cv2.imdecode(np.frombuffer(bytes(stream.jpegs[stamp].data), np.uint8), cv2.IMREAD_COLOR)
        assert jpeg is not None and jpeg.shape == (240, 320, 3)
        if stamp not in stream.markers:
            continue  # markers are best effort (depth 10); the image marker and jpeg checks above are reliable
        markers = stream.markers[stamp].markers
        assert markers[0].action == markers[0].DELETEALL
        assert len({(m.ns, m.id) for m in markers[1:]}) == len(markers) - 1 == len(array.skeletons)
        for marker, skeleton in zip(markers[1:], array.skeletons, strict=True):
            a, b = COCO17_LIMBS[0]
            for point, keypoint in zip(marker.points[:2], (skeleton.keypoints[a], skeleton.keypoints[b]), strict=True):
                # On the keypoint's ray through the camera_info's pinhole, whose K puts pixel centres at whole
                # numbers where our continuous coordinates put them at +0.5.
                assert FX * point.x / point.z + CX + 0.5 == pytest.approx(keypoint.x, abs=1e-3)
                assert FY * point.y / point.z + CY + 0.5 == pytest.approx(keypoint.y, abs=1e-3)


def test_visual_outputs_are_built_only_while_someone_subscribes(stream):
    """Drawing and JPEG-encoding cost more than the skeletons: with no subscriber to any visual topic the node
    publishes the arrays and draws nothing; a new subscriber gets images again."""
    assert stream.arrays, "run after the stream test"
    stream.wait_diagnostics({"frames waiting": "0", "visual subscribers": "3"})  # markers, image markers, jpeg
    drawn = int(stream.diagnostics["annotated images drawn"])
    assert drawn >= len(stream.jpegs) > 0
    for subscription in stream.outputs[1:]:
        stream.ros.node.destroy_subscription(subscription)
    stream.wait_diagnostics({"visual subscribers": "0"})
    published = int(stream.diagnostics["frames published"])
    start = 2_000_000_000_000
    for k in range(4):
        stream.send(start + k * PERIOD, [7])
    stream.wait_diagnostics({"frames waiting": "0", "frames published": str(published + 4)})
    assert stream.diagnostics["annotated images drawn"] == str(drawn)
    # A viewer subscribes again: the next frames are drawn and arrive.
    again: list[CompressedImage] = []
    stream.outputs.append(stream.ros.node.create_subscription(
        CompressedImage, f"{stream.namespace}/annotated_image/compressed", again.append, 100))
    stream.wait_diagnostics({"visual subscribers": "1"})
    for k in range(4, 8):
        stream.send(start + k * PERIOD, [7])
    assert stream.ros.spin_until(lambda: len(again) >= 3, 15, stream.node.check), stream.diagnostics
    assert int(stream.diagnostics["annotated images drawn"]) > drawn
