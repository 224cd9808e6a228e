"""Calibrated per-joint confidence for the detector's own keypoints.

YOLO11n-pose's keypoint confidences are not probabilities: on people 12-32 px tall they are too sure (ECE
0.12 on unseen scenes, README "Results"). A calibration maps each joint's confidence c to
sigmoid(a_j * logit(c) + b_j), the probability that the (smoothed) keypoint is right (per-keypoint OKS >= 0.5),
with a_j, b_j fitted on the training scenes (`exlow-pose-calibrate`) and shipped as JSON beside the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .keypoints import NUM_KEYPOINTS

EPSILON = 1e-4
SLOPE_RANGE = (0.1, 3.0)


class CalibrationError(ValueError):
    """The calibration file is missing or malformed; the message says what to do."""


def logit(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(confidence, np.float64), EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class KeypointCalibration:
    slope: np.ndarray       # (17,)
    intercept: np.ndarray   # (17,)
    provenance: dict

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        """(..., 17) detector confidences -> calibrated probabilities; 0 stays 0 (no keypoint)."""
        calibrated = 1 / (1 + np.exp(-np.clip(self.slope * logit(confidence) + self.intercept, -30, 30)))
        return np.where(np.asarray(confidence) > 0, calibrated, 0.0).astype(np.float32)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "exlow_pose.keypoint_calibration", "slope": self.slope.tolist(),
                                          "intercept": self.intercept.tolist(), **self.provenance}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> KeypointCalibration:
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"keypoint calibration {path} not found: set keypoint_calibration to the shipped "
                                   "models/yolo11n_pose_keypoint_calibration.json, or 'none' for raw confidences")
        try:
            values = json.loads(path.read_text())
            slope, intercept = np.asarray(values["slope"], float), np.asarray(values["intercept"], float)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"keypoint calibration {path} is not readable ({error}); make it again with "
                                   "exlow-pose-calibrate") from None
        if values.get("kind") != "exlow_pose.keypoint_calibration" or slope.shape != (NUM_KEYPOINTS,) or \
                intercept.shape != (NUM_KEYPOINTS,) or not (np.isfinite(slope).all() and np.isfinite(intercept).all()):
            raise CalibrationError(f"keypoint calibration {path} is malformed (needs kind "
                                   f"'exlow_pose.keypoint_calibration' and {NUM_KEYPOINTS} finite slopes and "
                                   "intercepts); make it again with exlow-pose-calibrate")
        return cls(slope, intercept, {k: v for k, v in values.items() if k not in ("slope", "intercept")})


def fit_calibration(confidence: np.ndarray, correct: np.ndarray, joint: np.ndarray, provenance: dict,
                    iterations: int = 50) -> KeypointCalibration:
    """Per-joint logistic regression of `correct` on logit(confidence) (Newton's method, a small ridge)."""
    slope, intercept = np.ones(NUM_KEYPOINTS), np.zeros(NUM_KEYPOINTS)
    for j in range(NUM_KEYPOINTS):
        chosen = joint == j
        if chosen.sum() < 20:
            continue
        x = np.stack([logit(confidence[chosen]), np.ones(chosen.sum())], axis=1)
        y = correct[chosen].astype(float)
        weights = np.array([1.0, 0.0])
        ridge = 1e-2 * len(y)  # keeps a joint with little data near the identity map
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-np.clip(x @ weights, -30, 30)))
            gradient = x.T @ (p - y) + ridge * (weights - [1.0, 0.0])
            hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
            weights = weights - np.linalg.solve(hessian, gradient)
        if not SLOPE_RANGE[0] <= weights[0] <= SLOPE_RANGE[1]:  # saturated confidences (eyes): no step function
            weights[0] = np.clip(weights[0], *SLOPE_RANGE)
            for _ in range(iterations):  # refit the intercept alone
                p = 1 / (1 + np.exp(-np.clip(x @ weights, -30, 30)))
                weights[1] -= (p - y).sum() / max((p * (1 - p)).sum(), 1e-9)
        slope[j], intercept[j] = weights
    return KeypointCalibration(slope, intercept, provenance)
