"""Flip test: the detector's view of a frame's mirror image, brought back to the frame, is the same person with
the same joints, and the tracker averages the two without adding or losing persons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.flip_test import average_flipped, unflip_detections
from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_ros.core.person_tracker import PersonTracker

from conftest import DETECTOR, VTEST

needs_assets = pytest.mark.skipif(not (VTEST.exists() and DETECTOR.exists()),
                                  reason="assets missing: run scripts/setup.sh")
LEFT_SHOULDER, RIGHT_SHOULDER = COCO17_NAMES.index("left_shoulder"), COCO17_NAMES.index("right_shoulder")


def vtest_frame(index: int = 200) -> np.ndarray:
    capture = cv2.VideoCapture(str(VTEST))
    for _ in range(index):
        capture.grab()
    return capture.read()[1]


def test_unflip_mirrors_boxes_and_keypoints_and_swaps_left_and_right():
    boxes = np.array([[10.0, 5.0, 30.0, 65.0, 0.8, 0.0]])
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[0, :, 0] = np.arange(17)  # x = joint index, to see where each joint went
    keypoints[0, :, 2] = 0.5
    keypoints[0, LEFT_SHOULDER, 2] = 0.9
    back, points = unflip_detections(boxes, keypoints, width=100)
    assert np.allclose(back[0, :4], [70, 5, 90, 65]) and back[0, 4] == 0.8
    # The mirror image's "left shoulder" is the person's right: it comes back as the right shoulder.
    assert points[0, RIGHT_SHOULDER, 0] == 100 - LEFT_SHOULDER and points[0, RIGHT_SHOULDER, 2] == np.float32(0.9)
    assert points[0, 0, 0] == 100  # the nose has no mirror joint
    # Twice is the identity.
    again = unflip_detections(back, points, width=100)
    assert np.allclose(again[0], boxes) and np.allclose(again[1], keypoints)


def test_averaging_keeps_the_frames_persons_and_weights_joints_by_confidence():
    boxes = np.array([[0, 0, 10, 30, 0.9, 0], [50, 0, 60, 30, 0.4, 0]], float)
    keypoints = np.zeros((2, 17, 3), np.float32)
    keypoints[..., 0], keypoints[..., 2] = 4.0, 0.6
    flipped_boxes = np.array([[2, 0, 12, 30, 0.7, 0], [200, 0, 210, 30, 0.95, 0]], float)
    flipped_keypoints = np.zeros((2, 17, 3), np.float32)
    flipped_keypoints[..., 0], flipped_keypoints[..., 2] = 8.0, 0.2
    out_boxes, out_keypoints = average_flipped(boxes, keypoints, flipped_boxes, flipped_keypoints)
    assert len(out_boxes) == 2, "the person only the mirror image found is not added"
    assert np.allclose(out_boxes[0, :5], [1, 0, 11, 30, 0.9])  # corners averaged, the frame's score
    assert np.allclose(out_keypoints[0, :, 0], (4 * 0.6 + 8 * 0.2) / 0.8)
    assert np.allclose(out_keypoints[0, :, 2], 0.4)
    assert np.allclose(out_boxes[1], boxes[1]) and np.allclose(out_keypoints[1], keypoints[1])  # unmatched


@needs_assets
def test_the_detector_on_the_mirror_image_unflips_onto_the_same_joints():
    """On a real frame the mirror pass, unflipped, must put each confident joint within a few pixels of the
    frame's own estimate; without the left-right swap the shoulders would land on each other's side."""
    bgr = vtest_frame()
    tracker = PersonTracker(DETECTOR)
    detect = tracker.detector.detect
    frame = detect(bgr)
    mirror = detect(np.ascontiguousarray(bgr[:, ::-1]))
    boxes = np.asarray(frame.boxes.data.cpu().numpy(), float)
    keypoints = np.asarray(frame.keypoints.data.cpu().numpy(), np.float32)
    back_boxes, back_keypoints = unflip_detections(np.asarray(mirror.boxes.data.cpu().numpy(), float),
                                                   np.asarray(mirror.keypoints.data.cpu().numpy(), np.float32),
                                                   bgr.shape[1])
    from exlow_pose_ros.core.boxes import box_iou, greedy_match

    pairs = greedy_match(box_iou(boxes[:, :4], back_boxes[:, :4]), 0.7)
    assert len(pairs) >= 3, "vtest frame 200 shows several pedestrians"
    same, swapped = [], []
    for row, column in pairs.items():
        confident = (keypoints[row, :, 2] > 0.8) & (back_keypoints[column, :, 2] > 0.8)
        same.append(np.abs(keypoints[row, confident, :2] - back_keypoints[column, confident, :2]).max(initial=0))
        shoulders = keypoints[row, [LEFT_SHOULDER, RIGHT_SHOULDER], 0]
        swapped.append(np.abs(shoulders - back_keypoints[column, [RIGHT_SHOULDER, LEFT_SHOULDER], 0]).max())
    assert np.median(same) < 3.0, same  # pedestrians 60-90 px tall
    assert np.median(swapped) > np.median(same) + 3.0, (same, swapped)


@needs_assets
def test_the_tracker_with_flip_test_reports_the_same_persons_with_refined_keypoints():
    bgr = vtest_frame()
    plain, flipped = PersonTracker(DETECTOR), PersonTracker(DETECTOR, flip_test=True)
    plain_people, flipped_people = plain.track(bgr), flipped.track(bgr)
    assert [p.score for p in flipped_people] == [p.score for p in plain_people]  # same persons, same order
    moved = [np.abs(a.keypoints[:, :2] - b.keypoints[:, :2]).max()
             for a, b in zip(plain_people, flipped_people, strict=True)]
    assert 0 < np.median(moved) < 10, moved  # averaged with the mirror pass: moved, but by pixels
