"""Two pose detectors' persons as one set: per person the more confident keypoints, none lost."""

from __future__ import annotations

import numpy as np

from exlow_pose_ros.core.boxes import box_iou
from exlow_pose_ros.core.detection_merge import merge_detections


def detections(boxes: list[list[float]], confidences: list[float]) -> tuple[np.ndarray, np.ndarray]:
    data = np.array([[*box, 0.5 + 0.01 * i, 0.0] for i, box in enumerate(boxes)])
    keypoints = np.zeros((len(boxes), 17, 3))
    keypoints[..., 0] = np.array([b[0] for b in boxes])[:, None]
    keypoints[..., 2] = np.array(confidences)[:, None]
    return data, keypoints


def test_box_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]], float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]], float)
    assert np.allclose(box_iou(a, b), [[50 / 150, 1.0], [0.0, 0.0]])
    assert box_iou(a, b).shape == (2, 2) and box_iou(a[:0], b).shape == (0, 2)


def test_each_person_keeps_the_more_confident_keypoints_and_unmatched_persons_of_both_stay():
    a = detections([[0, 0, 10, 30], [50, 0, 60, 30], [100, 0, 110, 30]], [0.9, 0.3, 0.5])
    b = detections([[1, 0, 11, 30], [51, 1, 61, 31], [200, 0, 210, 30]], [0.4, 0.8, 0.7])
    boxes, keypoints = merge_detections(*a, *b)
    assert len(boxes) == 4  # two pairs, one person each detector alone found
    lefts = sorted(keypoints[:, 0, 0].tolist())
    assert lefts == [0.0, 51.0, 100.0, 200.0]  # pair 1 from a (0.9 > 0.4), pair 2 from b (0.8 > 0.3)
    assert (np.diff(boxes[:, 4]) <= 0).all()


def test_a_detection_pairs_once_and_boxes_that_barely_overlap_are_two_persons():
    a = detections([[0, 0, 10, 30]], [0.2])
    b = detections([[0, 0, 10, 30], [0.5, 0, 10.5, 30], [8, 0, 18, 30]], [0.9, 0.95, 0.9])
    boxes, keypoints = merge_detections(*a, *b)
    # a's person pairs with b's identical box only (IoU 1); b's near-duplicate stays as b left it, and the
    # barely overlapping box (IoU 0.11) is a person of its own.
    assert len(boxes) == 3 and sorted(keypoints[:, 0, 0].tolist()) == [0.0, 0.5, 8.0]
