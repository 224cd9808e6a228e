"""One set of person detections from two pose detectors that ran on the same frame.

Why: YOLO11n-pose fine-tuned on tiny people (exlow-pose-finetune-detector) finds more people 10-16 px tall
than the stock weights but can place the joints of larger people worse. Running both and keeping, for each
person, the detection whose keypoints are more confident keeps the better of the two where their confidences
are honest: on a later stretch of a training scene it did, on unseen scenes it did not (README "Results",
"A detector fine-tuned for tiny people")."""

from __future__ import annotations

import numpy as np

from .boxes import box_iou, greedy_match

MERGE_IOU = 0.5  # boxes of the two detectors this similar are one person


def merge_detections(boxes_a: np.ndarray, keypoints_a: np.ndarray, boxes_b: np.ndarray, keypoints_b: np.ndarray,
                     iou: float = MERGE_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 6: x_min, y_min, x_max, y_max, score, class) and keypoints (N, 17, 3) of both detectors as one
    set: pairs with IoU >= `iou` (matched greedily, most similar first) keep the detection whose mean keypoint
    confidence is higher; unmatched detections of either are kept. Sorted by falling box score."""
    keep_a, keep_b = np.ones(len(boxes_a), bool), np.ones(len(boxes_b), bool)
    for row, column in greedy_match(box_iou(boxes_a[:, :4], boxes_b[:, :4]), iou).items():
        if keypoints_b[column, :, 2].mean() > keypoints_a[row, :, 2].mean():
            keep_a[row] = False
        else:
            keep_b[column] = False
    boxes = np.concatenate([boxes_a[keep_a], boxes_b[keep_b]])
    keypoints = np.concatenate([keypoints_a[keep_a], keypoints_b[keep_b]])
    order = np.argsort(-boxes[:, 4], kind="stable")
    return boxes[order], keypoints[order]
