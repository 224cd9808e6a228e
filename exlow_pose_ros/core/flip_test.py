"""Flip test for a pose detector: run it on the frame and on its mirror image, and average each person's two
estimates.

Why: at 12-16 px a person's joints are a few pixels of blur, and the detector's errors persist along a track
(smoothing over frames does not remove them, README "Results"). The mirror image is a second, differently
wrong look at the same pixels; averaging the two is the classic test-time augmentation of top-down pose
estimators, which Ultralytics does not offer for pose models. It refines the keypoints of persons the
detector found on the frame itself; a person found only in the mirror image is not added, so the persons
(and recall) stay the detector's."""

from __future__ import annotations

import numpy as np

from .boxes import box_iou, greedy_match
from .keypoints import COCO17_FLIP_PERMUTATION

FLIP_MATCH_IOU = 0.5  # a detection on the mirror image this similar to one on the frame is the same person


def unflip_detections(boxes: np.ndarray, keypoints: np.ndarray | None, width: int
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """Detections made on a frame mirrored left-right, in the frame's own coordinates: x -> width - x (pixel
    edges, as Ultralytics reports them), box corners swapped, and each keypoint moved to its mirror joint so
    that "left" is the person's left again. boxes (N, 6: x_min, y_min, x_max, y_max, score, class); keypoints
    (N, 17, 3) or None."""
    boxes = np.array(boxes, np.float64, copy=True).reshape(-1, 6)
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    if keypoints is None:
        return boxes, None
    keypoints = np.array(keypoints, np.float32, copy=True)[:, list(COCO17_FLIP_PERMUTATION)]
    keypoints[..., 0] = width - keypoints[..., 0]
    return boxes, keypoints


def average_flipped(boxes: np.ndarray, keypoints: np.ndarray, flipped_boxes: np.ndarray,
                    flipped_keypoints: np.ndarray, iou: float = FLIP_MATCH_IOU) -> tuple[np.ndarray, np.ndarray]:
    """The frame's detections with each one that the mirror image also found (already unflipped, IoU >= `iou`,
    matched greedily) replaced by the mean of the two: box corners averaged, each joint at the confidence-
    weighted mean of its two positions with the mean confidence. Box scores and the order are the frame's;
    unmatched detections of the frame are kept as they are, those of the mirror image are dropped."""
    boxes = np.array(boxes, np.float64, copy=True).reshape(-1, 6)
    keypoints = np.array(keypoints, np.float32, copy=True)
    for row, column in greedy_match(box_iou(boxes[:, :4], flipped_boxes[:, :4]), iou).items():
        boxes[row, :4] = (boxes[row, :4] + flipped_boxes[column, :4]) / 2
        pair = np.stack([keypoints[row], flipped_keypoints[column]])  # (2, 17, 3)
        weight = np.clip(pair[..., 2:], 1e-6, None)
        keypoints[row, :, :2] = (pair[..., :2] * weight).sum(0) / weight.sum(0)
        keypoints[row, :, 2] = pair[..., 2].mean(0)
    return boxes, keypoints
