"""The COCO-17 keypoint layout: names, left/right pairs, limbs for drawing, COCO OKS sigmas."""

from __future__ import annotations

import numpy as np

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(COCO17_NAMES)

# Index of each keypoint's mirror image: applying it after a horizontal flip keeps "left" left.
COCO17_FLIP_PERMUTATION: tuple[int, ...] = tuple(
    COCO17_NAMES.index(name.replace("left_", "right_") if name.startswith("left_")
                       else name.replace("right_", "left_"))
    for name in COCO17_NAMES
)

# Limbs as keypoint index pairs (the COCO skeleton, 0-based), for drawing and RViz markers.
COCO17_LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

# Per-keypoint OKS sigmas from the COCO keypoint evaluation (pycocotools' cocoeval.py).
COCO17_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89],
    dtype=np.float64,
) / 10.0
