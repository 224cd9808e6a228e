"""The tracker node under broken and extreme images, over DDS: a bad image is dropped with a report that names
the offending value, every other image gets its TrackedPersonArray, and the node never stops.

Two tracker processes serve the module: one on raw images (detector at 480 px, fast on small test images, and
max_image_pixels 1000000 so an oversized frame is cheap to send) and one on compressed images at 1280 px with
max_persons 50, for a crowd of 58 people, and the default max_image_pixels.
"""

from __future__ import annotations

import os
from collections import defaultdict
from itertools import count
from pathlib import Path

import cv2
import numpy as np
import pytest
from exlow_pose_msgs.msg import TrackedPersonArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from exlow_pose_ros.core.crop import SquareRegion, cut_crop
from exlow_pose_ros.nodes.image_conversion import image_to_numpy, numpy_to_image
from exlow_pose_ros.nodes.parameters import load_schema

from conftest import REPO, RosTestNode
from image_samples import bayer_mosaic, jpeg_claiming, png_bomb
from robustness_support import NodeProcess, WatchedNode, header, raw_image, stamp_ns, wait_for_line

ASSETS = Path(os.environ.get("EXLOW_POSE_ASSETS", REPO / "assets"))
VTEST, DETECTOR = ASSETS / "videos" / "vtest.avi", ASSETS / "models" / "yolo11n-pose.pt"
pytestmark = pytest.mark.skipif(not (VTEST.is_file() and DETECTOR.is_file()), reason="assets missing: run setup.sh")
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
MAX_PERSONS = 50
RAW_MAX_PIXELS = 1_000_000
# Pedestrians of vtest.avi (frame, x_min, y_min, x_max, y_max), pasted into a crowd for the burst test.
SPRITES = [(50, 669, 256, 714, 371), (50, 505, 216, 540, 306), (50, 551, 213, 588, 302), (50, 373, 179, 401, 258),
           (150, 587, 228, 624, 316), (150, 387, 195, 416, 279), (250, 598, 254, 642, 354),
           (250, 370, 229, 420, 326), (250, 545, 188, 577, 265), (250, 192, 151, 222, 225),
           (350, 470, 187, 510, 276), (350, 385, 226, 415, 318), (350, 672, 222, 703, 319),
           (350, 695, 225, 728, 315)]


class Tracker(WatchedNode):
    """One tracker process and what it published, by stamp."""

    def __init__(self, ros: RosTestNode, node: NodeProcess, namespace: str, name: str) -> None:
        super().__init__(ros, node, name, namespace)
        self.arrays: dict[int, list[TrackedPersonArray]] = defaultdict(list)
        ros.node.create_subscription(TrackedPersonArray, f"{namespace}/tracked_persons",
                                     lambda m: self.arrays[stamp_ns(m.header)].append(m), RELIABLE)
        self.raw = ros.node.create_publisher(Image, f"{namespace}/image", RELIABLE)
        self.compressed = ros.node.create_publisher(CompressedImage, f"{namespace}/image/compressed", RELIABLE)

    def answer(self, stamp: int, timeout: float = 15) -> TrackedPersonArray:
        assert self.ros.spin_until(lambda: stamp in self.arrays, timeout, self.node.check), \
            f"{self.name}: no tracked persons for stamp {stamp} within {timeout} s; log:\n{self.node.since()[-3000:]}"
        return self.arrays[stamp][0]


class Harness:
    def __init__(self, ros: RosTestNode, raw: Tracker, compressed: Tracker) -> None:
        self.ros, self.raw, self.compressed = ros, raw, compressed
        self._stamps = count(2_000_000_000_000, 100_000_000)

    def stamp(self) -> int:
        return next(self._stamps)


def send_raw(tracker: Tracker, image: Image) -> int:
    tracker.raw.publish(image)
    return stamp_ns(image.header)


def send_compressed(tracker: Tracker, data: bytes, stamp: int, image_format: str = "png") -> int:
    tracker.compressed.publish(CompressedImage(header=header(stamp), format=image_format, data=data))
    return stamp


def send_between_good_frames(harness: Harness, images: list[Image]) -> list[int]:
    """Send each image followed by a valid one and wait for the valid one's answer: the tracker keeps only
    its last five inputs (a camera's old frames are worthless), so a burst would lose the first ones."""
    blank = np.zeros((48, 64, 3), np.uint8)
    for image in images:
        send_raw(harness.raw, image)
        good = send_raw(harness.raw, bgr_image(blank, harness.stamp()))
        assert harness.raw.answer(good).persons == []
    return [stamp_ns(image.header) for image in images]


def bgr_image(pixels: np.ndarray, stamp: int, encoding: str = "bgr8") -> Image:
    if encoding == "rgb8":
        pixels = np.ascontiguousarray(pixels[..., ::-1])
    return numpy_to_image(pixels, encoding, header(stamp))


@pytest.fixture(scope="module")
def vtest_frames() -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(VTEST))
    frames = {}
    for index in range(351):
        ok, frame = capture.read()
        assert ok, f"cannot read frame {index} of {VTEST}"
        if index % 25 == 0 or index in {s[0] for s in SPRITES} or 198 <= index < 210:
            frames[index] = frame
    return frames


@pytest.fixture(scope="module")
def trackers(tmp_path_factory):
    pid = os.getpid()
    cwd = tmp_path_factory.mktemp("tracker_cwd")
    raw_ns, compressed_ns = f"/robust_tracker_raw_{pid}", f"/robust_tracker_jpeg_{pid}"
    raw_node = NodeProcess("tracker_node", {"detector_model": str(DETECTOR), "image_size": 480, "reliable_input": True,
                                            "max_image_pixels": RAW_MAX_PIXELS},
                           cwd, raw_ns, node_name=f"robust_tracker_raw_{pid}")
    compressed_node = NodeProcess("tracker_node", {
        "detector_model": str(DETECTOR), "image_size": 1280, "reliable_input": True, "compressed_input": True,
        "max_persons": MAX_PERSONS}, cwd, compressed_ns, node_name=f"robust_tracker_jpeg_{pid}")
    ros = RosTestNode("robustness_tracker_test")
    harness = Harness(ros, Tracker(ros, raw_node, raw_ns, f"robust_tracker_raw_{pid}"),
                      Tracker(ros, compressed_node, compressed_ns, f"robust_tracker_jpeg_{pid}"))
    blank = np.full((48, 64, 3), 127, np.uint8)
    png = cv2.imencode(".png", blank)[1].tobytes()
    try:
        for tracker, send in ((harness.raw, lambda t, s: send_raw(t, bgr_image(blank, s))),
                              (harness.compressed, lambda t, s: send_compressed(t, png, s))):
            # Images sent before the subscription matches are lost: repeat a first one until it is answered.
            def resend(tracker: Tracker = tracker, send=send) -> None:
                tracker.node.check()
                if tracker.raw.get_subscription_count() + tracker.compressed.get_subscription_count():
                    send(tracker, harness.stamp())
                ros.spin_until(lambda: bool(tracker.arrays), 1.0)

            answered = ros.spin_until(lambda tracker=tracker: bool(tracker.arrays), 90, resend)
            assert answered, f"{tracker.name} never answered:\n{tracker.node.since()}"
        yield harness
    finally:
        ros.close()
        for tracker in (harness.raw, harness.compressed):
            code, output = tracker.node.stop()
            (tmp_path_factory.getbasetemp() / f"{tracker.name.rsplit('_', 1)[0]}.log").write_text(output)
            assert code == 0, output
            assert "Traceback" not in output, output


def test_unsupported_and_lying_images_are_dropped_and_named(trackers):
    raw = trackers.raw
    mark = raw.node.mark()
    encoding_before, layout_before = raw.faults("image encoding"), raw.faults("image layout")
    unsupported = [raw_image(8, 6, "nv12", 8, bytes(8 * 9), trackers.stamp()),
                   raw_image(8, 6, "bayer_rggb32", 32, bytes(32 * 6), trackers.stamp()),
                   numpy_to_image(np.zeros((6, 8), np.uint16), "16UC1", header(trackers.stamp())),
                   numpy_to_image(np.full((6, 8), np.nan, np.float32), "32FC1", header(trackers.stamp()))]
    lying = [raw_image(64, 48, "bgr8", 192, bytes(192 * 47), trackers.stamp()),    # one row short
             raw_image(64, 48, "rgb8", 100, bytes(100 * 48), trackers.stamp())]    # step shorter than a row
    bad = send_between_good_frames(trackers, [*unsupported, *lying])
    assert not any(stamp in raw.arrays for stamp in bad)
    log = raw.node.since(mark)  # reports are rate-limited per kind: the first of each kind is logged
    for value in ("'nv12'", "64x48 'bgr8' image with step 192 needs 9216"):
        assert value in log, f"no report naming {value}:\n{log}"
    raw.wait_faults("image encoding", encoding_before + len(unsupported))
    raw.wait_faults("image layout", layout_before + len(lying))


def test_zero_size_images_are_dropped_and_odd_sizes_answered(trackers):
    raw = trackers.raw
    mark = raw.node.mark()
    empty = [raw_image(0, 0, "bgr8", 0, b"", trackers.stamp()), raw_image(0, 10, "rgb8", 0, b"", trackers.stamp()),
             raw_image(10, 0, "mono8", 10, b"", trackers.stamp())]
    dropped = send_between_good_frames(trackers, empty)
    rng = np.random.default_rng(3)
    odd = rng.integers(0, 255, (7, 5, 3), np.uint8)
    odd_sizes = [bgr_image(rng.integers(0, 255, (1, 1, 3), np.uint8), trackers.stamp()),
                 raw_image(5, 7, "rgb8", 17, b"".join(row.tobytes() + b"\0\0" for row in odd), trackers.stamp()),
                 numpy_to_image(rng.integers(0, 255, (479, 641), np.uint8), "mono8", header(trackers.stamp())),
                 bgr_image(rng.integers(0, 255, (3, 1001, 3), np.uint8), trackers.stamp(), "rgb8")]
    for image in odd_sizes:
        array = raw.answer(send_raw(raw, image))
        assert (array.image_width, array.image_height) == (image.width, image.height)
    assert not any(stamp in raw.arrays for stamp in dropped)
    wait_for_line(trackers.ros, raw.node, r"\[ERROR\].*0x0 pixels", mark)
    raw.wait_faults("empty image", len(empty))


def test_size_changes_mid_stream_and_people_are_tracked_at_each_size(trackers, vtest_frames):
    raw = trackers.raw
    changes_before = raw.faults("frame size")
    zoomed = [cv2.resize(vtest_frames[k][140:420, 300:768], (936, 560)) for k in range(198, 207)]
    segments = [zoomed[0:3], [cv2.resize(z, (468, 280)) for z in zoomed[3:6]], zoomed[6:9]]
    for segment in segments:
        found = 0
        for frame in segment:
            array = raw.answer(send_raw(raw, bgr_image(frame, trackers.stamp())))
            height, width = frame.shape[:2]
            assert (array.image_width, array.image_height) == (width, height)
            for p in array.persons:
                assert 0 <= p.box.x_min < p.box.x_max <= width and 0 <= p.box.y_min < p.box.y_max <= height
                assert (p.crop.width, p.crop.height, p.crop.encoding) == (16, 16, "rgb8")
                assert image_to_numpy(p.crop).shape == (16, 16, 3)
                assert p.crop_region.x_max - p.crop_region.x_min == p.crop_region.y_max - p.crop_region.y_min
            found += len(array.persons)
        assert found > 0, f"nobody tracked in {width}x{height} frames"
    raw.wait_faults("frame size", changes_before + 2)
    line = wait_for_line(trackers.ros, raw.node, r"\[WARN\].*size changed from \d+x\d+ to \d+x\d+", 0)
    assert "at stamp (" in line, line


def test_late_repeated_and_restarted_stamps(trackers):
    raw = trackers.raw
    mark = raw.node.mark()
    frame = np.full((48, 64, 3), 60, np.uint8)
    first, second = trackers.stamp(), trackers.stamp()
    for stamp in (first, second):
        raw.answer(send_raw(raw, bgr_image(frame, stamp)))
    send_raw(raw, bgr_image(frame, first))     # late
    send_raw(raw, bgr_image(frame, second))    # repeated
    third = raw.answer(send_raw(raw, bgr_image(frame, trackers.stamp())))  # reliable and in order: after both
    assert len(raw.arrays[first]) == 1 and len(raw.arrays[second]) == 1 and third.persons == []
    line = wait_for_line(trackers.ros, raw.node, r"\[ERROR\].*not after", mark)
    assert f"({first // 1_000_000_000}, " in line, line
    raw.wait_faults("stamp order", 2)
    # Ten seconds back: a new stream (a looped bag), which must be tracked, not dropped for ever.
    restarted = [stamp_ns(third.header) - 10_000_000_000 + k * 100_000_000 for k in range(3)]
    for stamp in restarted:
        raw.answer(send_raw(raw, bgr_image(frame, stamp)))
    wait_for_line(trackers.ros, raw.node, r"\[WARN\].*jumped back", mark)


def test_a_long_stretch_with_nobody_answers_every_frame_with_nobody(trackers, vtest_frames):
    raw = trackers.raw
    road = np.median(np.stack([vtest_frames[k] for k in range(0, 351, 25)]), axis=0).astype(np.uint8)
    for _ in range(20):  # paced like a camera the tracker keeps up with
        assert raw.answer(send_raw(raw, bgr_image(road[140:420, 300:768], trackers.stamp()))).persons == []


def test_undecodable_compressed_images_are_dropped_and_named(trackers):
    compressed = trackers.compressed
    mark = compressed.node.mark()
    jpeg = cv2.imencode(".jpg", np.full((40, 60, 3), 200, np.uint8))[1].tobytes()
    bad = []
    for data in (b"", b"not an image at all", jpeg[:60]):
        bad.append(send_compressed(compressed, data, trackers.stamp(), "jpeg"))
        good = compressed.answer(send_compressed(compressed, jpeg, trackers.stamp(), "jpeg"))
        assert (good.image_width, good.image_height) == (60, 40)
    assert not any(stamp in compressed.arrays for stamp in bad)
    line = wait_for_line(trackers.ros, compressed.node, r"\[ERROR\].*does not decode", mark)
    assert "0 bytes" in line, line
    compressed.wait_faults("undecodable", len(bad))


def crowd(frames: dict[int, np.ndarray], count: int = 60, height: float = 80, seed: int = 0) -> np.ndarray:
    """vtest.avi's empty road with `count` of its pedestrians pasted at random, apart from each other."""
    road = np.median(np.stack([frames[k] for k in range(0, 351, 25)]), axis=0).astype(np.uint8)
    sprites = [frames[k][y0:y1, x0:x1] for k, x0, y0, x1, y1 in SPRITES]
    rng = np.random.default_rng(seed)
    placed: list[tuple[int, int, int, int]] = []
    rows, columns = road.shape[:2]
    while len(placed) < count:
        sprite = sprites[rng.integers(len(sprites))]
        scale = height * rng.uniform(0.9, 1.1) / sprite.shape[0]
        w, h = max(1, round(sprite.shape[1] * scale)), max(1, round(sprite.shape[0] * scale))
        x, y = int(rng.integers(0, columns - w)), int(rng.integers(0, rows - h))
        if any(x < px + pw + 2 and px < x + w + 2 and y < py + ph + 2 and py < y + h + 2 for px, py, pw, ph in placed):
            continue
        road[y:y + h, x:x + w] = cv2.resize(sprite, (w, h), interpolation=cv2.INTER_AREA)
        placed.append((x, y, w, h))
    return road


def test_a_burst_of_more_persons_than_max_persons_keeps_the_best_and_says_so(trackers, vtest_frames):
    compressed = trackers.compressed
    mark = compressed.node.mark()
    png = cv2.imencode(".png", crowd(vtest_frames))[1].tobytes()
    arrays = [compressed.answer(send_compressed(compressed, png, trackers.stamp())) for _ in range(2)]
    persons = arrays[-1].persons
    assert len(persons) == MAX_PERSONS, [len(a.persons) for a in arrays]
    assert len({p.track_id for p in persons}) == MAX_PERSONS
    assert all((p.crop.width, p.crop.height) == (16, 16) for p in persons)
    scores = sorted(p.score for p in persons)
    line = wait_for_line(trackers.ros, compressed.node, r"\[WARN\].*max_persons=50", mark)
    tracked = int(line.split("]: ")[1].split()[0])
    assert tracked > MAX_PERSONS and scores[0] > 0, line


def padded_image(pixels: np.ndarray, encoding: str, stamp: int, pad: int = 5, bigendian: bool = False) -> Image:
    """An Image of `pixels` with `pad` bytes after every row (0xEE), 16-bit samples in the given byte order."""
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.reshape(pixels.shape[0], -1).view(np.uint8)
    data = np.concatenate([rows, np.full((rows.shape[0], pad), 0xEE, np.uint8)], axis=1).tobytes()
    image = raw_image(pixels.shape[1], pixels.shape[0], encoding, rows.shape[1] + pad, data, stamp)
    image.is_bigendian = bigendian
    return image


def test_camera_encodings_are_tracked_and_crops_are_the_frames_pixels_in_rgb(trackers, vtest_frames):
    raw = trackers.raw
    frame = cv2.resize(vtest_frames[200][140:420, 300:768], (936, 560))
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    images = {
        "bgr8": padded_image(frame, "bgr8", trackers.stamp()),
        "rgb8": padded_image(rgb, "rgb8", trackers.stamp(), pad=3),
        "bgra8": padded_image(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), "bgra8", trackers.stamp()),
        "rgba8": padded_image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGBA), "rgba8", trackers.stamp(), pad=2),
        "yuv422_yuy2": padded_image(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_YUY2), "yuv422_yuy2", trackers.stamp()),
        "yuv422": padded_image(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_UYVY), "yuv422", trackers.stamp(), pad=1),
        "bayer_rggb8": padded_image(bayer_mosaic(frame, "rggb"), "bayer_rggb8", trackers.stamp(), pad=7),
        "bayer_gbrg16": padded_image(bayer_mosaic(frame.astype(np.uint16) * 257, "gbrg"), "bayer_gbrg16",
                                     trackers.stamp(), pad=3, bigendian=True),
        "mono16": padded_image(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, "mono16",
                               trackers.stamp(), pad=1, bigendian=True),
    }
    found = {}
    for encoding, image in images.items():
        array = raw.answer(send_raw(raw, image))
        assert (array.image_width, array.image_height) == (936, 560), encoding
        found[encoding] = len(array.persons)
        if encoding in ("bgr8", "rgb8", "bgra8", "rgba8"):  # lossless: the crops are the frame's own pixels
            for p in array.persons:
                side = round(p.crop_region.x_max - p.crop_region.x_min)
                region = SquareRegion(round(p.crop_region.x_min), round(p.crop_region.y_min), side)
                assert np.array_equal(image_to_numpy(p.crop), cut_crop(rgb, region)), (encoding, p.track_id)
    # Every conversion gives the detector a real picture: the people in it are found.
    assert all(count > 0 for count in found.values()), found


def test_raw_images_over_max_image_pixels_are_refused_from_their_header(trackers):
    raw = trackers.raw
    mark = raw.node.mark()
    too_large, layout = raw.faults("image too large"), raw.faults("image layout")
    over = numpy_to_image(np.zeros((1000, 1001), np.uint8), "mono8", header(trackers.stamp()))
    claim = raw_image(6000, 6000, "bgr8", 18000, bytes(18000), trackers.stamp())  # one row of 6000 sent
    bad = send_between_good_frames(trackers, [over, claim])
    assert not any(stamp in raw.arrays for stamp in bad)
    wait_for_line(trackers.ros, raw.node,
                  rf"\[ERROR\].*'mono8' image of 1001x1000 = 1001000 pixels exceeds max_image_pixels={RAW_MAX_PIXELS}",
                  mark)
    raw.wait_faults("image too large", too_large + 2)
    assert raw.faults("image layout") == layout  # the claim was refused for its size, before its layout
    at_limit = raw.answer(send_raw(raw, numpy_to_image(np.full((1000, 1000), 90, np.uint8), "mono8",
                                                       header(trackers.stamp()))))
    assert (at_limit.image_width, at_limit.image_height) == (1000, 1000)


def test_compressed_image_bombs_are_refused_before_decoding_and_the_node_goes_on(trackers):
    compressed = trackers.compressed
    limit = load_schema("tracker_node")["max_image_pixels"].default
    assert limit < 6000 * 6000
    mark = compressed.node.mark()
    too_large = compressed.faults("image too large")
    jpeg = cv2.imencode(".jpg", np.full((40, 60, 3), 200, np.uint8))[1].tobytes()
    bombs = [(png_bomb(), "png"), (jpeg_claiming(6000, 6000), "jpeg")]
    assert len(bombs[1][0]) < 1000
    bad = []
    for data, image_format in bombs:
        bad.append(send_compressed(compressed, data, trackers.stamp(), image_format))
        good = compressed.answer(send_compressed(compressed, jpeg, trackers.stamp(), "jpeg"))
        assert (good.image_width, good.image_height) == (60, 40)
    assert not any(stamp in compressed.arrays for stamp in bad)
    line = wait_for_line(trackers.ros, compressed.node, r"\[ERROR\].*\('png', 69 bytes\) of 50000x50000 = "
                         rf"2500000000 pixels exceeds max_image_pixels={limit}", mark)
    assert "dropped" in line, line
    compressed.wait_faults("image too large", too_large + len(bombs))
    assert "Traceback" not in compressed.node.since(mark)


def test_confidence_iou_and_max_persons_change_at_run_time(trackers, vtest_frames):
    compressed = trackers.compressed
    png = cv2.imencode(".png", crowd(vtest_frames))[1].tobytes()
    before = compressed.answer(send_compressed(compressed, png, trackers.stamp())).persons
    assert len(before) == MAX_PERSONS
    scores = sorted((p.score for p in before), reverse=True)
    confidence = round(scores[4] - 0.005, 3)  # about five persons score above it
    mark = compressed.node.mark()
    try:
        for name, value in (("confidence", confidence), ("iou", 0.6)):
            result = compressed.set_parameter(name, value)
            assert result.successful, result.reason
        assert compressed.get_parameters("confidence", "iou") == {"confidence": confidence, "iou": 0.6}
        wait_for_line(trackers.ros, compressed.node, rf"now confidence={confidence}", mark)
        strict = compressed.answer(send_compressed(compressed, png, trackers.stamp())).persons
        assert 0 < len(strict) < 20 and all(p.score >= confidence for p in strict), [p.score for p in strict]

        for name, value in (("confidence", 0.25), ("iou", 0.7), ("max_persons", 3)):
            assert compressed.set_parameter(name, value).successful
        few = compressed.answer(send_compressed(compressed, png, trackers.stamp())).persons
        assert sorted((p.score for p in few), reverse=True) == pytest.approx(scores[:3], abs=1e-4)

        # Refused: a read-only parameter, values out of range; the values in effect stay.
        for name, value in (("image_size", 640), ("confidence", 1.5), ("max_persons", 0),
                            ("max_image_pixels", 1000)):
            result = compressed.set_parameter(name, value)
            assert not result.successful, (name, value)
        assert compressed.get_parameters("image_size", "confidence", "max_persons") == {
            "image_size": 1280, "confidence": 0.25, "max_persons": 3}
        assert len(compressed.answer(send_compressed(compressed, png, trackers.stamp())).persons) == 3
    finally:
        for name, value in (("confidence", 0.25), ("iou", 0.7), ("max_persons", MAX_PERSONS)):
            compressed.set_parameter(name, value)
