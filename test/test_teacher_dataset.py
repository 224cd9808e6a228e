"""The teacher pseudo-dataset generator on a few real frames of vtest.avi (YOLO11n-pose, CPU)."""

from __future__ import annotations

import argparse
import hashlib

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.crop import SquareRegion, cut_crop, denormalise_keypoints
from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_training import teacher_dataset
from exlow_pose_training.dataset_format import WINDOW_LENGTH, ExLowDataset

from conftest import DETECTOR, VTEST

START, FRAMES = 200, 8
pytestmark = pytest.mark.skipif(not (VTEST.exists() and DETECTOR.exists()),
                                reason="assets missing: run scripts/setup.sh")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "ds"
    parser = argparse.ArgumentParser()
    teacher_dataset.add_arguments(parser)
    args = parser.parse_args([str(VTEST), "--out", str(out), "--assign", "vtest.avi=test",
                              "--start-frame", str(START), "--max-frames", str(FRAMES)])
    assert teacher_dataset.run(args) == 0
    return ExLowDataset(out)


def read_frame(index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(VTEST))
    for _ in range(index):
        capture.grab()
    ok, bgr = capture.read()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_manifest_records_teacher_split_and_sources(dataset):
    manifest = dataset.manifest
    assert manifest["kind"] == "teacher" and manifest["crop"]["size"] == 16
    assert manifest["provenance"]["teacher"]["sha256"] == hashlib.sha256(DETECTOR.read_bytes()).hexdigest()
    assert [s["name"] for s in manifest["sources"]] == ["vtest.avi"]
    assert manifest["sources"][0]["split"] == "test" and manifest["sources"][0]["first_frame"] == START
    assert manifest["splits"]["train"]["frames"] == 0
    # In frames 200-207 of vtest.avi, 6-7 pedestrians 60-90 px tall walk in the open.
    assert manifest["splits"]["test"]["tracks"] >= 4


def test_windows_are_consecutive_frames_of_one_track(dataset):
    split = dataset.split("test")
    assert len(split) >= 4
    for index in range(len(split)):
        window = split.window(index)
        assert len(set(window["track"].tolist())) == 1
        assert np.all(np.diff(window["frame"]) == 1)
    assert len(split) <= split.arrays["frame"].size - (WINDOW_LENGTH - 1)


def test_stored_crops_are_the_crop_convention_applied_to_the_source_frame(dataset):
    split = dataset.split("test")
    frame = int(split.arrays["frame"][0])
    rgb = read_frame(frame)
    for i in np.flatnonzero(split.arrays["frame"] == frame):
        region = SquareRegion(*map(int, split.arrays["region"][i]))
        np.testing.assert_array_equal(split.arrays["crops"][i], cut_crop(rgb, region))


def test_teacher_keypoints_lie_in_the_box_in_anatomical_order(dataset):
    split = dataset.split("test")
    names = {n: i for i, n in enumerate(COCO17_NAMES)}
    upright = 0
    for i in range(split.arrays["frame"].size):
        region = SquareRegion(*map(int, split.arrays["region"][i]))
        points = denormalise_keypoints(split.arrays["keypoints"][i], region)
        mask = split.arrays["mask"][i]
        x_min, y_min, x_max, y_max = split.arrays["box"][i]
        slack = 0.1 * (y_max - y_min)
        inside = ((points[:, 0] >= x_min - slack) & (points[:, 0] <= x_max + slack)
                  & (points[:, 1] >= y_min - slack) & (points[:, 1] <= y_max + slack))
        assert np.all(inside[mask]), f"frame row {i}: confident keypoints outside the box"

        def mean_y(part: str, points: np.ndarray = points, mask: np.ndarray = mask) -> float:
            rows = [names[f"{side}_{part}"] for side in ("left", "right") if mask[names[f"{side}_{part}"]]]
            return float(np.mean(points[rows, 1])) if rows else np.nan

        heights = [mean_y("shoulder"), mean_y("hip"), mean_y("knee"), mean_y("ankle")]
        if not np.any(np.isnan(heights)):  # image y grows downwards: shoulders < hips < knees < ankles
            assert heights == sorted(heights), f"frame row {i}: body parts out of order {heights}"
            upright += 1
    assert upright >= 10
