"""The pose node under foreign and broken input, over DDS: it drops only what is bad, says what and why (rate
limited, naming the value), and keeps publishing for everything else.

One pose node process serves the whole module (latest output mode, so each frame is answered at once); each
test uses fresh stamps (later than every earlier test's) and fresh track ids.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from itertools import count

import numpy as np
import pytest
from exlow_pose_msgs.msg import Keypoint2D, Skeleton2DArray, TrackedPersonArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from exlow_pose_ros.nodes.image_conversion import numpy_to_image

from conftest import RosTestNode
from robustness_support import (
    NodeProcess,
    WatchedNode,
    header,
    person,
    person_array,
    pose_model,
    raw_image,
    stamp_ns,
    wait_for_line,
)

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
EMPTY_FRAMES = 15
MAX_TRACKS = 512  # the pose node's default
NODE_NAME = f"robust_pose_{os.getpid()}"  # its own /diagnostics hardware_id, whatever else runs in the domain
NAN, INF = math.nan, math.inf


class PoseHarness(WatchedNode):
    def __init__(self, ros: RosTestNode, node: NodeProcess, namespace: str) -> None:
        super().__init__(ros, node, NODE_NAME, namespace)
        self.persons = ros.node.create_publisher(TrackedPersonArray, f"{namespace}/tracked_persons", RELIABLE)
        self.images = ros.node.create_publisher(Image, f"{namespace}/image", RELIABLE)
        self.skeletons: dict[int, list[Skeleton2DArray]] = defaultdict(list)
        self.annotated: dict[int, Image] = {}
        self.acks: list[int] = []
        ros.node.create_subscription(Skeleton2DArray, f"{namespace}/skeletons",
                                     lambda m: self.skeletons[stamp_ns(m.header)].append(m), RELIABLE)
        ros.node.create_subscription(Image, f"{namespace}/annotated_image",
                                     lambda m: self.annotated.__setitem__(stamp_ns(m.header), m), 10)
        ros.node.create_subscription(Header, f"{namespace}/processed", lambda h: self.acks.append(stamp_ns(h)),
                                     RELIABLE)
        self._stamps = count(1_000_000_000_000, 100_000_000)  # 1000 s, then 10 frames per second
        self.track_ids = count(1)

    def stamp(self) -> int:
        return next(self._stamps)

    def send(self, array: TrackedPersonArray, image: Image | None = None) -> int:
        if image is not None:
            self.images.publish(image)
            # A megabyte image takes longer over DDS than the persons: it must be there when they are handled.
            self.ros.spin_until(lambda: False, 0.1 + len(image.data) / 5e6)
        self.persons.publish(array)
        return stamp_ns(array.header)

    def answer(self, stamp: int, timeout: float = 10) -> Skeleton2DArray:
        """The skeleton array published for the frame stamped `stamp`."""
        assert self.ros.spin_until(lambda: stamp in self.skeletons, timeout, self.node.check), \
            f"no skeletons for stamp {stamp} within {timeout} s; log:\n{self.node.since()[-3000:]}"
        return self.skeletons[stamp][0]


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    model = pose_model(tmp_path_factory)
    namespace = f"/robust_pose_{os.getpid()}"
    node = NodeProcess("pose_node", {
        "model_path": str(model), "backend": "onnxruntime", "threads": 1, "output_mode": "latest",
        "reliable_image": True, "diagnostics_period": 0.2,
        "ack_topic": "processed"}, tmp_path_factory.mktemp("pose_cwd"), namespace, node_name=NODE_NAME)
    ros = RosTestNode("robustness_pose_test")
    harness = PoseHarness(ros, node, namespace)
    def resend() -> None:
        # Messages sent before the node's subscription matches are lost: repeat a first frame until answered.
        node.check()
        if harness.persons.get_subscription_count():
            harness.send(person_array(harness.stamp(), []))
        ros.spin_until(lambda: bool(harness.skeletons), 0.5)

    try:
        assert ros.spin_until(lambda: bool(harness.skeletons), 60, resend), \
            f"the pose node never answered:\n{node.since()}"
        yield harness
    finally:
        ros.close()
        code, output = node.stop()
        (tmp_path_factory.getbasetemp() / "pose_node.log").write_text(output)  # for a look after a failure
    assert code == 0, output
    assert "Traceback" not in output, output


def ids(array: Skeleton2DArray) -> list[int]:
    return sorted(s.track_id for s in array.skeletons)


def test_non_finite_values_drop_only_the_persons_that_have_them(pose):
    mark = pose.node.mark()
    before = pose.faults("non-finite")
    good = next(pose.track_ids)
    bad = []
    for field in ("x_min", "y_min", "x_max", "y_max"):
        for part, value in (("box", NAN), ("crop_region", INF)):
            p = person(next(pose.track_ids))
            setattr(getattr(p, part), field, value)
            bad.append(p)
    bad.append(person(next(pose.track_ids), score=NAN))
    bad.append(person(next(pose.track_ids), score=-INF))
    stamp = pose.send(person_array(pose.stamp(), [bad[0], person(good), *bad[1:]]))
    array = pose.answer(stamp)
    assert ids(array) == [good]
    assert all(math.isfinite(k.x) and math.isfinite(k.y) for k in array.skeletons[0].keypoints)
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*non-finite", mark)
    assert "nan" in line or "inf" in line, line
    pose.wait_faults("non-finite", before + len(bad))


def test_boxes_partly_outside_the_frame_are_kept_and_fully_outside_dropped(pose):
    mark = pose.node.mark()
    partly = [person(next(pose.track_ids), box) for box in (
        (-6.0, 100.0, 6.0, 130.0), (300.0, -10.0, 330.0, 20.0), (-50.0, -50.0, 400.0, 300.0))]
    outside = [person(next(pose.track_ids), box) for box in (
        (-30.0, 100.0, -2.0, 130.0), (321.0, 10.0, 340.0, 40.0), (10.0, 250.0, 20.0, 270.0), (1e30, 0.0, 2e30, 1e30))]
    stamp = pose.send(person_array(pose.stamp(), [*outside[:2], *partly, *outside[2:]], width=320, height=240))
    assert ids(pose.answer(stamp)) == sorted(p.track_id for p in partly)
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*outside", mark)
    assert "320x240" in line, line
    pose.wait_faults("outside frame", len(outside))


def test_degenerate_boxes_and_crop_regions_are_dropped(pose):
    mark = pose.node.mark()
    good = person(next(pose.track_ids))
    degenerate = [person(next(pose.track_ids), box) for box in (
        (50.0, 50.0, 50.0, 80.0), (50.0, 50.0, 70.0, 50.0), (70.0, 50.0, 50.0, 80.0), (5.0, 5.0, 5.0, 5.0))]
    bad_regions = [person(next(pose.track_ids), crop_region=region) for region in (
        (100.0, 60.0, 100.0, 60.0),     # zero side
        (90.0, 58.0, 122.0, 76.0),      # not square
        (200.0, 200.0, 230.0, 230.0),   # does not contain the box
        (-2000.0, -1600.0, 2230.0, 2630.0),  # contains the box but is 120x the convention's square
        (106.0 - 1e30, 76.0 - 1e30, 106.0 + 1e30, 76.0 + 1e30))]  # 1e29x
    stamp = pose.send(person_array(pose.stamp(), [*degenerate, good, *bad_regions]))
    assert ids(pose.answer(stamp)) == [good.track_id]
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*box", mark)
    assert "50.0" in line or "5.0" in line, line
    wait_for_line(pose.ros, pose.node, r"\[ERROR\].*crop_region", mark)
    pose.wait_faults("degenerate box", len(degenerate))
    pose.wait_faults("crop region", len(bad_regions))


def test_crops_of_the_wrong_size_or_encoding_or_that_lie_about_their_data(pose):
    mark = pose.node.mark()
    rng = np.random.default_rng(5)
    good = person(next(pose.track_ids))
    padded = person(next(pose.track_ids), crop=raw_image(16, 16, "rgb8", 64, bytes(rng.integers(0, 255, 64 * 16,
                                                                                               np.uint8)), 0))
    bgr = person(next(pose.track_ids), crop=numpy_to_image(np.zeros((16, 16, 3), np.uint8), "bgr8"))
    wrong = [person(next(pose.track_ids), crop=crop) for crop in (
        numpy_to_image(np.zeros((32, 32, 3), np.uint8), "rgb8"),             # a foreign tracker's size
        numpy_to_image(np.zeros((16, 16), np.uint8), "mono8"),
        raw_image(16, 16, "rgb8", 48, bytes(48 * 15), 0),                     # data one row short
        raw_image(16, 16, "rgb8", 40, bytes(48 * 16), 0),                     # step shorter than a row
        raw_image(16, 16, "yuv422", 32, bytes(32 * 16), 0),                   # a camera encoding, not rgb8
        raw_image(0, 0, "rgb8", 0, b"", 0))]
    stamp = pose.send(person_array(pose.stamp(), [wrong[0], good, padded, bgr, *wrong[1:]]))
    assert ids(pose.answer(stamp)) == sorted([good.track_id, padded.track_id, bgr.track_id])
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*crop", mark)
    assert "32x32" in line, line
    pose.wait_faults("crop", len(wrong))


def test_malformed_detector_keypoints_drop_only_their_person(pose):
    mark = pose.node.mark()

    def with_keypoints(points: list[tuple[float, float, float]]):
        message = person(next(pose.track_ids))
        message.detector_keypoints = [Keypoint2D(x=x, y=y, score=c) for x, y, c in points]
        return message

    good = with_keypoints([(50.0 + i, 60.0 + i, 0.8) for i in range(17)])
    plain = person(next(pose.track_ids))  # no detector keypoints at all: fine
    bad = [with_keypoints([(50.0, 60.0, 0.8)] * 16),                        # one joint short
           with_keypoints([(NAN, 60.0, 0.8)] + [(50.0, 60.0, 0.8)] * 16),   # not finite
           with_keypoints([(50.0, 60.0, 1.5)] * 17)]                         # confidence above 1
    stamp = pose.send(person_array(pose.stamp(), [bad[0], good, plain, *bad[1:]]))
    assert ids(pose.answer(stamp)) == sorted([good.track_id, plain.track_id])
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*detector_keypoints", mark)
    assert f"track {bad[0].track_id}" in line, line
    pose.wait_faults("detector keypoints", len(bad))


def test_a_track_id_twice_in_one_frame_keeps_the_first(pose):
    mark = pose.node.mark()
    track = next(pose.track_ids)
    first, second = person(track, (40.0, 40.0, 52.0, 70.0)), person(track, (200.0, 40.0, 212.0, 70.0))
    stamp = pose.send(person_array(pose.stamp(), [first, second, person(next(pose.track_ids))]))
    array = pose.answer(stamp)
    assert [s.box.x_min for s in array.skeletons if s.track_id == track] == [40.0]
    assert len(array.skeletons) == 2
    line = wait_for_line(pose.ros, pose.node, rf"\[ERROR\].*track {track}.*twice", mark)
    assert str(stamp // 1_000_000_000) in line, line


def test_out_of_order_and_repeated_stamps_are_dropped_and_later_frames_go_on(pose):
    mark = pose.node.mark()
    track = next(pose.track_ids)
    older, current = pose.stamp(), pose.stamp()
    pose.send(person_array(current, [person(track)]))
    pose.answer(current)
    pose.send(person_array(older, [person(track)]))          # older than the last frame
    pose.send(person_array(current, [person(track)]))        # the same stamp again
    later = pose.send(person_array(pose.stamp(), [person(track)]))
    assert ids(pose.answer(later)) == [track]
    assert len(pose.skeletons[current]) == 1 and older not in pose.skeletons
    assert pose.ros.spin_until(lambda: later in pose.acks, 5, pose.node.check)
    assert older not in pose.acks and pose.acks.count(current) == 1
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*stamp", mark)
    assert f"{older // 1_000_000_000}" in line, line
    pose.wait_faults("stamp order", 2)


def test_a_stamp_far_in_the_past_starts_a_new_stream_instead_of_silencing_the_node(pose):
    """A bag played in a loop or a restarted camera: stamps jump back by more than two seconds."""
    mark = pose.node.mark()
    track = next(pose.track_ids)
    for _ in range(3):
        pose.answer(pose.send(person_array(pose.stamp(), [person(track)])))
    restart = [5_000_000_000 + k * 100_000_000 for k in range(3)]
    for stamp in restart:
        assert ids(pose.answer(pose.send(person_array(stamp, [person(track)])))) == [track]
    line = wait_for_line(pose.ros, pose.node, r"\[WARN\].*jumped back", mark)
    assert "(5, 0)" in line, line
    assert pose.ros.spin_until(lambda: pose.acks[-3:] == restart, 5, pose.node.check), pose.acks[-5:]


def test_a_burst_of_many_persons_gets_a_skeleton_each(pose):
    rng = np.random.default_rng(7)
    for size in (60, 250):
        persons = []
        for _ in range(size):
            x, y = rng.uniform(0, 300), rng.uniform(0, 200)
            persons.append(person(next(pose.track_ids), (x, y, x + rng.uniform(4, 20), y + rng.uniform(10, 40))))
        array = pose.answer(pose.send(person_array(pose.stamp(), persons)), timeout=20)
        assert ids(array) == sorted(p.track_id for p in persons)


def test_over_max_tracks_only_the_lowest_scores_go_without_a_skeleton(pose):
    """max_tracks + 1 persons in every frame: the rule (README, pose_node.yaml) keeps the highest scores. It
    used to evict histories within the frame that brought them, and then nobody got a skeleton."""
    mark = pose.node.mark()
    rng = np.random.default_rng(11)
    crowd = [next(pose.track_ids) for _ in range(MAX_TRACKS + 1)]
    scores = 0.05 + 0.9 * rng.permutation(len(crowd)) / len(crowd)
    boxes = [(x, y, x + 10.0, y + 24.0) for x, y in rng.uniform(0, 200, (len(crowd), 2))]  # inside 320x240
    lowest = crowd[int(np.argmin(scores))]
    for _ in range(3):  # the same crowd in consecutive frames: established tracks, each with a full history
        persons = [person(track, box, score=float(score)) for track, box, score in zip(crowd, boxes, scores,
                                                                                       strict=True)]
        array = pose.answer(pose.send(person_array(pose.stamp(), persons)), timeout=30)
        assert ids(array) == sorted(set(crowd) - {lowest})
    line = wait_for_line(pose.ros, pose.node, rf"\[WARN\].*max_tracks={MAX_TRACKS}", mark)
    assert f"{MAX_TRACKS + 1} persons" in line and "lowest-scored" in line, line


def test_a_stretch_with_nobody_drops_every_track_and_answers_every_frame(pose):
    for _ in range(3):
        pose.answer(pose.send(person_array(pose.stamp(), [person(next(pose.track_ids)) for _ in range(4)])))
    assert pose.ros.spin_until(lambda: int(pose.diagnostics.get("active tracks", 0)) >= 4, 5, pose.node.check)
    empty = [pose.send(person_array(pose.stamp(), [])) for _ in range(EMPTY_FRAMES)]
    for stamp in empty:
        assert pose.answer(stamp).skeletons == []
    assert pose.ros.spin_until(lambda: pose.diagnostics.get("active tracks") == "0", 5, pose.node.check), \
        pose.diagnostics


def test_frame_size_changes_mid_stream_and_annotated_images_follow(pose):
    mark = pose.node.mark()
    rng = np.random.default_rng(9)
    track = next(pose.track_ids)
    for width, height in ((320, 240), (1280, 720), (33, 17), (320, 240)):
        stamp = pose.stamp()
        box = (width * 0.4, height * 0.3, width * 0.5, height * 0.7)
        image = numpy_to_image(rng.integers(0, 255, (height, width, 3), np.uint8), "bgr8", header(stamp))
        pose.send(person_array(stamp, [person(track, box)], width, height), image)
        array = pose.answer(stamp)
        assert (array.image_width, array.image_height) == (width, height) and ids(array) == [track]
        assert pose.ros.spin_until(lambda stamp=stamp: stamp in pose.annotated, 5, pose.node.check)
        assert (pose.annotated[stamp].width, pose.annotated[stamp].height) == (width, height)
    wait_for_line(pose.ros, pose.node, r"\[WARN\].*size changed.*320x240.*1280x720", mark)


def test_bad_source_images_skip_only_the_annotated_image(pose):
    mark = pose.node.mark()
    track = next(pose.track_ids)
    rng = np.random.default_rng(11)
    odd = rng.integers(0, 255, (7, 5, 3), np.uint8)
    cases = {
        "unsupported": (lambda s: raw_image(8, 6, "nv12", 16, bytes(16 * 6), s), False),
        "lying": (lambda s: raw_image(320, 240, "bgr8", 960, bytes(960 * 100), s), False),
        "zero": (lambda s: raw_image(0, 0, "bgr8", 0, b"", s), False),
        "odd padded": (lambda s: raw_image(5, 7, "rgb8", 17, b"".join(row.tobytes() + b"\0\0" for row in odd), s),
                       True),
        "mono": (lambda s: numpy_to_image(np.full((240, 320), 77, np.uint8), "mono8", header(s)), True),
        "float with nan": (lambda s: numpy_to_image(np.full((24, 32), np.nan, np.float32), "32FC1", header(s)),
                           False)}
    for name, (make, drawable) in cases.items():
        stamp = pose.stamp()
        pose.send(person_array(stamp, [person(track, (1.0, 1.0, 4.0, 6.0))]), make(stamp))
        assert ids(pose.answer(stamp)) == [track], name
        if drawable:
            assert pose.ros.spin_until(lambda stamp=stamp: stamp in pose.annotated, 5, pose.node.check), name
    later = pose.stamp()
    pose.send(person_array(later, [person(track)]))
    pose.answer(later)
    for name, (_, drawable) in cases.items():
        if not drawable:
            assert not any(name in line for line in pose.node.lines[:mark])
    log = pose.node.since(mark)
    for value in ("nv12", "needs", "0x0", "32FC1"):
        assert value in log, f"no report naming {value!r}:\n{log}"
    annotated = pose.annotated[max(pose.annotated)]
    assert annotated.encoding == "bgr8"


def test_an_unknown_frame_size_keeps_far_away_boxes_and_drawing_copes(pose):
    """A foreign tracker that leaves image_width/height at 0: no frame to check boxes against, so a person a
    quarter of a billion pixels away is kept, and drawing it must not overflow OpenCV's integers."""
    track = next(pose.track_ids)
    far_away = float(2**28)  # px; exact in float32 (the wire type) and past OpenCV's int32 fixed-point range
    far = person(track, (far_away, far_away, far_away + 64, far_away + 128))
    near = person(next(pose.track_ids))
    stamp = pose.stamp()
    image = numpy_to_image(np.zeros((240, 320, 3), np.uint8), "bgr8", header(stamp))
    array = pose.answer(pose.send(person_array(stamp, [far, near], width=0, height=0), image))
    assert ids(array) == sorted([track, near.track_id]) and (array.image_width, array.image_height) == (0, 0)
    assert pose.ros.spin_until(lambda: stamp in pose.annotated, 5, pose.node.check)


def test_negative_track_ids_are_refused_and_counted(pose):
    mark = pose.node.mark()
    good = person(next(pose.track_ids))
    negative = [person(track) for track in (-1, -(2**63))]
    assert ids(pose.answer(pose.send(person_array(pose.stamp(), [*negative, good])))) == [good.track_id]
    line = wait_for_line(pose.ros, pose.node, r"\[ERROR\].*track id -", mark)
    assert ">= 0" in line, line
    pose.wait_faults("track id", len(negative))


def test_a_frame_whose_source_image_never_came_is_counted_and_still_answered(pose):
    before = pose.faults("missing source image")
    stamp = pose.send(person_array(pose.stamp(), [person(next(pose.track_ids))]))  # no image sent
    assert len(pose.answer(stamp).skeletons) == 1
    pose.wait_faults("missing source image", before + 1)
    # Reported once per rate-limit period (earlier frames of this module came without images too).
    wait_for_line(pose.ros, pose.node, r"\[WARN\].*no source image stamped .*no annotated image", 0)
    assert stamp not in pose.annotated


def test_the_node_is_still_healthy_after_all_of_it(pose):
    stamp = pose.send(person_array(pose.stamp(), [person(next(pose.track_ids))]))
    assert len(pose.answer(stamp).skeletons) == 1
    assert pose.node.process.poll() is None
    assert "Traceback" not in pose.node.since()
