"""Evaluation from a bag: our skeletons against a reference topic, with known offsets, ids and gaps."""

from __future__ import annotations

import json
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from exlow_pose_msgs.msg import Keypoint2D, PixelBox, Skeleton2D, Skeleton2DArray
from rclpy.serialization import serialize_message
from std_msgs.msg import Header

from exlow_pose_ros.core.crop import square_region
from exlow_pose_ros.tools.bag_io import BagWriter

from tiny_datasets import STANDING

TYPE = "exlow_pose_msgs/msg/Skeleton2DArray"
OURS, REFERENCE = "/exlow_pose/skeletons", "/teacher/skeletons"
SHIFT = 0.1  # crop units: our keypoints are the reference's moved right by this much


def array(stamp: int, skeletons: list[Skeleton2D]) -> Skeleton2DArray:
    header = Header(frame_id="camera_optical_frame", stamp=Time(sec=stamp, nanosec=0))
    return Skeleton2DArray(header=header, image_width=640, image_height=480, skeletons=skeletons)


def skeleton(track: int, box: tuple, points: np.ndarray, scores: np.ndarray) -> Skeleton2D:
    return Skeleton2D(track_id=track, box=PixelBox(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
                      layout="coco17", keypoints=[Keypoint2D(x=float(x), y=float(y), score=float(s))
                                                  for (x, y), s in zip(points, scores, strict=True)], score=1.0)


@pytest.fixture
def bag(tmp_path) -> Path:
    path = tmp_path / "bag"
    writer = BagWriter(path)
    writer.add_topic(OURS, TYPE)
    writer.add_topic(REFERENCE, TYPE)
    scores = np.ones(17)
    scores[:5] = 0.2  # the reference's face is unreliable: masked
    for frame in range(12):
        box = (100.0 + 2 * frame, 50.0, 140.0 + 2 * frame, 150.0)  # 40 x 100 px, walking right
        region = square_region(box)
        pixels = (STANDING + 1) * region.side / 2 + [region.x0, region.y0]
        reference = [skeleton(900, box, pixels, scores)]  # the teacher's own track id
        shifted = pixels + [SHIFT * region.side / 2, 0.0]
        ours = [] if frame == 6 else [skeleton(3, (box[0] + 1, box[1], box[2] + 1, box[3]), shifted, np.ones(17))]
        stamp = 1000 + frame
        writer.write(REFERENCE, stamp * 10**9, serialize_message(array(stamp, reference)))
        writer.write(OURS, stamp * 10**9 + 1, serialize_message(array(stamp, ours)))
    writer.close()
    return path


def test_bag_evaluation_recovers_a_known_offset_across_a_gap(bag, tmp_path):
    script = Path(sysconfig.get_path("scripts")) / "exlow_pose_evaluate_bag"
    result = subprocess.run([str(script), str(bag), "--reference", REFERENCE, "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "r.json").read_text())
    assert scores["frames"] == 12 and scores["matched_persons"] == 11
    # Frames 0-5 give 2 windows, 7-11 give 1: none across the gap at frame 6.
    assert scores["windows"] == 3
    assert scores["ife"] == pytest.approx(SHIFT, abs=1e-3)
    assert scores["fdae"] == pytest.approx(0.0, abs=1e-3)
    assert "IFE 0.1000" in result.stdout


def test_missing_reference_topic_is_a_clear_error(bag):
    script = Path(sysconfig.get_path("scripts")) / "exlow_pose_evaluate_bag"
    result = subprocess.run([str(script), str(bag), "--reference", "/nobody"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "no messages on the reference topic /nobody" in result.stderr
