"""What every pose inference backend offers, and the input checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..crop import CROP_SIZE
from ..keypoints import NUM_KEYPOINTS
from ..model_contract import gives_confidence, takes_detector
from ..windows import WINDOW_LENGTH

INPUT_SHAPE = (WINDOW_LENGTH, 3, CROP_SIZE, CROP_SIZE)
DETECTOR_SHAPE = (WINDOW_LENGTH, NUM_KEYPOINTS, 3)
OUTPUT_SHAPE = (WINDOW_LENGTH, NUM_KEYPOINTS, 2)
CONFIDENCE_SHAPE = (WINDOW_LENGTH, NUM_KEYPOINTS)


class BackendError(RuntimeError):
    """A backend cannot start (missing package, file or device); the message says what to do."""


class PoseBackend(ABC):
    """Runs the pose model on a batch of windows: crops (N, 5, 3, 16, 16) in [0, 1], and for models that take
    them the detector's keypoints (N, 5, 17, 3) -> poses (N, 5, 17, 2) and, for models that give it, a
    per-joint confidence (N, 5, 17)."""

    name: str
    contract: dict[str, Any]

    @property
    def takes_detector(self) -> bool:
        return takes_detector(self.contract)

    @property
    def gives_confidence(self) -> bool:
        return gives_confidence(self.contract)

    def infer(self, crops: np.ndarray, detector: np.ndarray | None = None) -> np.ndarray:
        return self.estimate(crops, detector)[0]

    def estimate(self, crops: np.ndarray, detector: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Poses and (None for models without it) confidence. A model that takes detector keypoints gets zeros
        when `detector` is None; a model that does not ignores them."""
        if crops.ndim != 5 or crops.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"crops must have shape (N, {', '.join(map(str, INPUT_SHAPE))}), got {crops.shape}")
        if detector is not None and detector.shape != (crops.shape[0], *DETECTOR_SHAPE):
            raise ValueError(f"detector keypoints must have shape (N, {', '.join(map(str, DETECTOR_SHAPE))}), got "
                             f"{detector.shape}")
        if crops.shape[0] == 0:
            return (np.zeros((0, *OUTPUT_SHAPE), np.float32),
                    np.zeros((0, *CONFIDENCE_SHAPE), np.float32) if self.gives_confidence else None)
        if self.takes_detector:
            detector = (np.zeros((crops.shape[0], *DETECTOR_SHAPE), np.float32) if detector is None
                        else np.ascontiguousarray(detector, dtype=np.float32))
        else:
            detector = None
        return self._estimate(np.ascontiguousarray(crops, dtype=np.float32), detector)

    @abstractmethod
    def _estimate(self, crops: np.ndarray, detector: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]: ...

    def describe(self) -> str:
        return f"{self.name} ({self.contract.get('method', '?')})"
