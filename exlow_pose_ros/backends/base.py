"""What every pose inference backend offers, and the input checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..crop import CROP_SIZE
from ..keypoints import NUM_KEYPOINTS
from ..windows import WINDOW_LENGTH

INPUT_SHAPE = (WINDOW_LENGTH, 3, CROP_SIZE, CROP_SIZE)
OUTPUT_SHAPE = (WINDOW_LENGTH, NUM_KEYPOINTS, 2)


class BackendError(RuntimeError):
    """A backend cannot start (missing package, file or device); the message says what to do."""


class PoseBackend(ABC):
    """Runs the pose model on a batch of windows: crops (N, 5, 3, 16, 16) in [0, 1] -> poses (N, 5, 17, 2)."""

    name: str
    contract: dict[str, Any]

    def infer(self, crops: np.ndarray) -> np.ndarray:
        if crops.ndim != 5 or crops.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"crops must have shape (N, {', '.join(map(str, INPUT_SHAPE))}), got {crops.shape}")
        if crops.shape[0] == 0:
            return np.zeros((0, *OUTPUT_SHAPE), np.float32)
        return self._infer(np.ascontiguousarray(crops, dtype=np.float32))

    @abstractmethod
    def _infer(self, crops: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str:
        return f"{self.name} ({self.contract.get('method', '?')})"
