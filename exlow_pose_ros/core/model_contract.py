"""The contract of an exlow_pose ONNX model, stored in its metadata so a C++ or Jetson user needs
nothing else (README, "Model contract").

Input  `crops`: float32 [N, 5, 3, 16, 16]: for each of N tracks, its last 5 crops (oldest first),
       RGB, values in [0, 1], each cut by the crop convention (README; exlow_pose_ros.core.crop).
Output `poses`: float32 [N, 5, 17, 2]: the 5 frames' COCO-17 keypoints (x, y) in crop coordinates,
       [-1, 1] over each frame's own crop region. Read index 2 (the centre frame, the paper's output,
       two frames of delay) or index 4 (the newest frame, no delay).

Version 2 adds, when the model has them (named in the contract):
Input  `detector`:   float32 [N, 5, 17, 3]: the person detector's own keypoints for each frame, (x, y) in
       that frame's crop coordinates and the confidence; all zeros where the detector gave none.
Output `confidence`: float32 [N, 5, 17]: per joint, the probability that the keypoint is right
       (per-keypoint OKS >= 0.5).
Version-1 models (crops in, poses out) are still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from .crop import CROP_MARGIN, CROP_SIZE, FILL_VALUE
from .keypoints import COCO17_NAMES
from .windows import OUTPUT_INDEX, WINDOW_LENGTH

CONTRACT_KEY = "exlow_pose.contract"
CONTRACT_VERSION = 2
READABLE_VERSIONS = (1, 2)
INPUT_NAME = "crops"
OUTPUT_NAME = "poses"
DETECTOR_INPUT_NAME = "detector"
CONFIDENCE_OUTPUT_NAME = "confidence"
ONNX_OPSET = 18


class ModelContractError(ValueError):
    """The model's metadata is missing or does not match what this code feeds and reads."""


DETECTOR_INPUT = {"name": DETECTOR_INPUT_NAME, "dtype": "float32",
                  "shape": ["N", WINDOW_LENGTH, len(COCO17_NAMES), 3],
                  "units": "the detector's keypoints: (x, y) in crop coordinates and confidence in [0, 1]; all 0 "
                           "where it gave none"}
CONFIDENCE_OUTPUT = {"name": CONFIDENCE_OUTPUT_NAME, "dtype": "float32",
                     "shape": ["N", WINDOW_LENGTH, len(COCO17_NAMES)],
                     "units": "probability that the keypoint is right (per-keypoint OKS >= 0.5)"}


def contract(method: str, detector_input: bool = False, confidence_output: bool = False,
             **extra: Any) -> dict[str, Any]:
    """The contract stored in an exported model's metadata under CONTRACT_KEY."""
    optional = {**({"detector_input": DETECTOR_INPUT} if detector_input else {}),
                **({"confidence_output": CONFIDENCE_OUTPUT} if confidence_output else {})}
    return {
        **optional,
        "contract_version": CONTRACT_VERSION,
        "method": method,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["N", WINDOW_LENGTH, 3, CROP_SIZE, CROP_SIZE],
                  "layout": "N, frame (oldest first), channel (R, G, B), row, column", "range": [0.0, 1.0]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", WINDOW_LENGTH, len(COCO17_NAMES), 2],
                   "units": "crop coordinates: [-1, 1] over each frame's crop region, (x, y)",
                   "frame_index": dict(OUTPUT_INDEX)},
        "crop": {"size": CROP_SIZE, "margin": CROP_MARGIN, "fill": FILL_VALUE, "interpolation": "area",
                 "rounding": "floor(t + 0.5)", "colour": "rgb"},
        "keypoints": {"layout": "coco17", "names": list(COCO17_NAMES)},
        **extra,
    }


def parse_contract(metadata: Mapping[str, str], source: str) -> dict[str, Any]:
    """Read and check the contract from a model's metadata map; raise ModelContractError if unusable."""
    if CONTRACT_KEY not in metadata:
        raise ModelContractError(f"{source} has no '{CONTRACT_KEY}' metadata: it was not exported by "
                                 "exlow-pose-export; export it again from its checkpoint")
    try:
        found = json.loads(metadata[CONTRACT_KEY])
    except json.JSONDecodeError as error:
        raise ModelContractError(f"{source}: '{CONTRACT_KEY}' metadata is not JSON ({error})") from None
    if found.get("contract_version") not in READABLE_VERSIONS:
        raise ModelContractError(f"{source} has model contract version {found.get('contract_version')}, this "
                                 f"code reads versions {READABLE_VERSIONS}; use a matching exlow_pose release")
    expected = contract(found.get("method", "?"), detector_input=True, confidence_output=True)
    parts = ["input", "output", "crop"] + [p for p in ("detector_input", "confidence_output") if p in found]
    for part in parts:
        if found.get(part) != expected[part]:
            raise ModelContractError(f"{source}: its {part} contract {found.get(part)} differs from this code's "
                                     f"{expected[part]}")
    return found


def takes_detector(found: Mapping[str, Any]) -> bool:
    return "detector_input" in found


def gives_confidence(found: Mapping[str, Any]) -> bool:
    return "confidence_output" in found


def crops_to_input(crops: np.ndarray) -> np.ndarray:
    """Windows of crops (N, 5, 16, 16, 3) uint8 RGB -> the model input (N, 5, 3, 16, 16) float32 in [0, 1]."""
    return np.ascontiguousarray(crops.transpose(0, 1, 4, 2, 3), dtype=np.float32) / np.float32(255.0)
