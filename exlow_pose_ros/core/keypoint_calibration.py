"""Calibrated per-joint confidence for the detector's own keypoints.

YOLO11n-pose's keypoint confidences are not probabilities: on people 12-32 px tall they are too sure (ECE
0.12 on unseen scenes, README "Results"), and the same confidence means less on a smaller person. A calibration
maps each joint's confidence c of a person whose box is h px tall to

    sigmoid(a_j * logit(c) + b_j + s_j * log(h / REFERENCE_HEIGHT) + p_j * logit(mean_k c_k)),

the probability that the (smoothed) keypoint is right (per-keypoint OKS >= 0.5), with a_j, b_j, s_j, p_j fitted
on the training scenes (`exlow-pose-calibrate`) and shipped as JSON beside the model. The last term is the
person's context: the mean confidence of all 17 of its keypoints (a joint of a person the detector sees clearly
is more often right than the same confidence on a person it barely sees). A file without s_j or p_j (older
calibrations) has them 0: that term is then off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .keypoints import NUM_KEYPOINTS

EPSILON = 1e-4
REFERENCE_HEIGHT = 24.0  # px: the size term is 0 for a person this tall


class CalibrationError(ValueError):
    """The calibration file is missing or malformed; the message says what to do."""


def logit(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(confidence, np.float64), EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped))


def size_feature(box_height: np.ndarray | float) -> np.ndarray:
    """log(h / REFERENCE_HEIGHT) of a person box height in px (at least 1 px)."""
    return np.log(np.maximum(np.asarray(box_height, np.float64), 1.0) / REFERENCE_HEIGHT)


def person_feature(confidence: np.ndarray) -> np.ndarray:
    """logit of the mean of a person's 17 keypoint confidences: (..., 17) -> (...)."""
    return logit(np.mean(np.nan_to_num(np.asarray(confidence, np.float64)), axis=-1))


@dataclass(frozen=True)
class KeypointCalibration:
    slope: np.ndarray       # (17,)
    intercept: np.ndarray   # (17,)
    provenance: dict
    size_slope: np.ndarray = field(default_factory=lambda: np.zeros(NUM_KEYPOINTS))  # (17,)
    person_slope: np.ndarray = field(default_factory=lambda: np.zeros(NUM_KEYPOINTS))  # (17,)

    def __call__(self, confidence: np.ndarray, box_height: np.ndarray | float | None = None) -> np.ndarray:
        """(..., 17) detector confidences of persons whose boxes are `box_height` px tall (shape (...); None:
        the size term is left out) -> calibrated probabilities; 0 stays 0 (no keypoint)."""
        score = self.slope * logit(confidence) + self.intercept
        if self.person_slope.any():  # off in the shipped file; the pose node calls this for every person
            score = score + self.person_slope * person_feature(confidence)[..., None]
        if box_height is not None:
            score = score + self.size_slope * size_feature(box_height)[..., None]
        calibrated = 1 / (1 + np.exp(-np.clip(score, -30, 30)))
        return np.where(np.asarray(confidence) > 0, calibrated, 0.0).astype(np.float32)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "exlow_pose.keypoint_calibration", "slope": self.slope.tolist(),
                                          "intercept": self.intercept.tolist(), "size_slope": self.size_slope.tolist(),
                                          "person_slope": self.person_slope.tolist(),
                                          "reference_height_px": REFERENCE_HEIGHT, **self.provenance}, indent=2)
                              + "\n")

    @classmethod
    def load(cls, path: str | Path) -> KeypointCalibration:
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"keypoint calibration {path} not found: set keypoint_calibration to the shipped "
                                   "models/yolo11n_pose_keypoint_calibration.json, or 'none' for raw confidences")
        try:
            values = json.loads(path.read_text())
            slope, intercept = np.asarray(values["slope"], float), np.asarray(values["intercept"], float)
            size_slope = np.asarray(values.get("size_slope", np.zeros(NUM_KEYPOINTS)), float)
            person_slope = np.asarray(values.get("person_slope", np.zeros(NUM_KEYPOINTS)), float)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"keypoint calibration {path} is not readable ({error}); make it again with "
                                   "exlow-pose-calibrate") from None
        if values.get("kind") != "exlow_pose.keypoint_calibration" or \
                any(v.shape != (NUM_KEYPOINTS,) or not np.isfinite(v).all()
                    for v in (slope, intercept, size_slope, person_slope)):
            raise CalibrationError(f"keypoint calibration {path} is malformed (needs kind "
                                   f"'exlow_pose.keypoint_calibration' and {NUM_KEYPOINTS} finite slopes and "
                                   "intercepts); make it again with exlow-pose-calibrate")
        ignored = ("slope", "intercept", "size_slope", "person_slope", "reference_height_px")
        return cls(slope, intercept, {k: v for k, v in values.items() if k not in ignored}, size_slope, person_slope)
