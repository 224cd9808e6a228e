"""From tracked persons to skeletons: per-track 5-frame windows, one batched inference per frame, and the
poses mapped back to image pixels through each frame's crop region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends.base import PoseBackend
from .crop import SquareRegion, denormalise_keypoints
from .model_contract import crops_to_input
from .windows import OUTPUT_INDEX, OutputMode, TrackWindows


@dataclass(frozen=True)
class PersonObservation:
    """One tracked person in one frame, as the pose stage needs it."""

    track_id: int
    box: tuple[float, float, float, float]  # pixels
    score: float
    region: SquareRegion
    crop: np.ndarray                        # (16, 16, 3) uint8 RGB, cut from `region`
    stamp: Any = None                       # the frame's capture time (any type; passed through)


@dataclass(frozen=True)
class SkeletonEstimate:
    """The pose of one person in the frame it describes."""

    track_id: int
    stamp: Any
    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # (17, 2) pixels
    score: float           # the detector's score of the described frame (PTEN gives no per-joint confidence)


class PoseEstimator:
    """Keeps per-track windows; `process` takes one frame's persons and returns the skeletons it completes."""

    def __init__(self, backend: PoseBackend, mode: OutputMode = "centre", max_missing: int = 15,
                 max_tracks: int = 512) -> None:
        self.backend = backend
        self.mode = mode
        self.output_index = OUTPUT_INDEX[mode]
        self.windows: TrackWindows[PersonObservation] = TrackWindows(mode, max_missing, max_tracks)
        self._sequence = 0

    def reset(self) -> None:
        """Forget every track (a new stream): its frames must not share windows with the old stream's."""
        self.windows = TrackWindows(self.mode, self.windows.max_missing, self.windows.max_tracks)

    @property
    def active_tracks(self) -> int:
        return len(self.windows)

    def process(self, persons: list[PersonObservation]) -> list[SkeletonEstimate]:
        """Feed one frame (all its persons, possibly none); frames must come in capture order."""
        sequence = self._sequence
        self._sequence += 1
        ready = [w for p in persons if (w := self.windows.update(p.track_id, p, sequence)) is not None]
        self.windows.evict(sequence)
        if not ready:
            return []
        crops = np.stack([np.stack([observation.crop for observation in window]) for window in ready])
        poses = self.backend.infer(crops_to_input(crops))[:, self.output_index]
        estimates = []
        for window, pose in zip(ready, poses, strict=True):
            described = window[self.output_index]
            estimates.append(SkeletonEstimate(described.track_id, described.stamp, described.box,
                                              denormalise_keypoints(pose, described.region), described.score))
        return estimates
