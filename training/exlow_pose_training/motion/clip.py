"""A 3D motion clip: the contract between the mocap loader and its users (motion corpus, renderer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exlow_pose_ros.core.keypoints import COCO17_NAMES

# Points beyond COCO-17 that a clip also carries: they bound the body (person boxes) and give
# limbs their ends and directions when rendering.
EXTRA_POINT_NAMES: tuple[str, ...] = ("head_top", "neck", "pelvis", "left_toe", "right_toe",
                                      "left_hand", "right_hand")
CLIP_POINT_NAMES: tuple[str, ...] = COCO17_NAMES + EXTRA_POINT_NAMES


@dataclass
class MotionClip3D:
    """One subject's motion: `points[t, i]` is point CLIP_POINT_NAMES[i] at frame t.

    World frame: metres, z up, the ground near z = 0. The face points (nose, eyes, ears) are
    placed from the head's orientation, so they turn with the head.
    """

    name: str        # e.g. "cmu_01_01"
    subject: str     # e.g. "cmu_01"; splits are made by subject
    fps: float
    points: np.ndarray  # (T, len(CLIP_POINT_NAMES), 3) float32

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[1:] != (len(CLIP_POINT_NAMES), 3):
            raise ValueError(f"points must be (T, {len(CLIP_POINT_NAMES)}, 3), got {self.points.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])
