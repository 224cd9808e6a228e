"""From tracked persons to skeletons: per-track 5-frame windows, one batched inference per frame, and the
poses mapped back to image pixels through each frame's crop region."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from .backends.base import PoseBackend
from .crop import SquareRegion, denormalise_keypoints, normalise_keypoints, rgb_crop, square_region
from .model_contract import crops_to_input
from .person_tracker import TrackedBox
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
    detector_keypoints: np.ndarray | None = None  # (17, 3) the detector's own x, y (pixels), confidence


@dataclass(frozen=True)
class SkeletonEstimate:
    """The pose of one person in the frame it describes."""

    track_id: int
    stamp: Any
    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # (17, 2) pixels
    score: float           # the detector's score of the person in the described frame
    confidence: np.ndarray | None = None  # (17,) the model's per-joint confidence, if it gives one


def observe(bgr: np.ndarray, tracked: Iterable[TrackedBox], stamp: Any) -> list[PersonObservation]:
    """The crop convention on one BGR frame: each tracked box -> its square region, 16x16 RGB crop and the
    detector's keypoints (the one box-to-crop step of the offline CLI and the benchmark)."""
    persons = []
    for person in tracked:
        region = square_region(person.box)
        persons.append(PersonObservation(person.track_id, person.box, person.score, region, rgb_crop(bgr, region),
                                         stamp, person.keypoints))
    return persons


class PoseEstimator:
    """Keeps per-track windows; `process` takes one frame's persons and returns the skeletons it completes, of
    this frame or, where a track's run ended (a gap), of earlier frames; `flush` those still owed."""

    def __init__(self, backend: PoseBackend, mode: OutputMode = "centre", max_tracks: int = 512,
                 keypoint_source: str = "model",
                 keypoint_calibration: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if keypoint_source not in KEYPOINT_SOURCES:
            raise ValueError(f"keypoint_source must be one of {KEYPOINT_SOURCES}, not {keypoint_source!r}")
        self.backend = backend
        self.keypoint_source = keypoint_source
        self.keypoint_calibration = keypoint_calibration
        self.mode = mode
        self.output_index = OUTPUT_INDEX[mode]
        self.max_tracks = max_tracks
        self.windows: TrackWindows[PersonObservation] = TrackWindows(mode)
        self._sequence = 0
        self.dropped_persons = 0  # persons over max_tracks in their frame, lowest scores first

    def reset(self) -> None:
        """Forget every track (a new stream): its frames must not share windows with the old stream's."""
        self.windows = TrackWindows(self.mode)

    @property
    def active_tracks(self) -> int:
        return len(self.windows)

    def flush(self) -> list[SkeletonEstimate]:
        """The skeletons still owed to every live run (end of a stream); afterwards every track starts afresh."""
        windows = self.windows.finish_all()
        self.reset()
        return estimate_windows(self.backend, windows, self.output_index, self.keypoint_source,
                                self.keypoint_calibration)

    def pending_stamps(self) -> list[Any]:
        """Stamps of observations that have no skeleton yet."""
        return [observation.stamp for observation in self.windows.pending()]

    def process(self, persons: list[PersonObservation]) -> list[SkeletonEstimate]:
        """Feed one frame (all its persons, possibly none); frames must come in capture order. Over max_tracks
        persons in one frame, those with the lowest scores are dropped (counted in `dropped_persons`), so at most
        max_tracks runs are live: a track missing from a frame has its run finished and is forgotten."""
        sequence = self._sequence
        self._sequence += 1
        kept = persons_within(persons, self.max_tracks)
        self.dropped_persons += len(persons) - len(kept)
        ready = [w for p in kept if (w := self.windows.update(p.track_id, p, sequence)) is not None]
        ready += self.windows.close_gaps(sequence)
        return estimate_windows(self.backend, ready, self.output_index, self.keypoint_source,
                                self.keypoint_calibration)


def persons_within(persons: list[PersonObservation], limit: int) -> list[PersonObservation]:
    """At most `limit` persons of one frame, in their order: the highest scores, ties to the lower track id."""
    if len(persons) <= limit:
        return persons
    ranked = sorted(range(len(persons)), key=lambda i: (-persons[i].score, persons[i].track_id))
    keep = set(ranked[:limit])
    return [person for i, person in enumerate(persons) if i in keep]


F = TypeVar("F")


@dataclass
class FrameSkeletons(Generic[F]):
    """One input frame's output: every skeleton describing it (possibly none), in the order frames came."""

    stamp: Any                       # the frame's stamp, as its observations carry it
    payload: F                       # what the caller keeps with the frame (its size, its image ...)
    skeletons: list[SkeletonEstimate] = field(default_factory=list)


class FrameStream(Generic[F]):
    """Per-frame output over a PoseEstimator, for the node and the offline CLI alike: `push` each input frame
    and get back the frames now complete, oldest first, each exactly once with all its skeletons. A frame is
    complete once no live track still owes it a skeleton: at most the mode's delay (two frames in centre
    mode), or at once where every run touching it ended. `flush` completes the rest (end of a stream).

    `key` maps a stamp (std_msgs/Header, a frame index ...) to a hashable value equal for equal frames."""

    def __init__(self, estimator: PoseEstimator, key: Callable[[Any], Hashable] = lambda stamp: stamp) -> None:
        self.estimator = estimator
        self.key = key
        self._waiting: deque[FrameSkeletons[F]] = deque()
        self._by_key: dict[Hashable, FrameSkeletons[F]] = {}
        self.orphans = 0  # skeletons of frames no longer waiting (never happens while frames come in order)

    def __len__(self) -> int:
        """Frames waiting for skeletons."""
        return len(self._waiting)

    def waiting_keys(self) -> set[Hashable]:
        """Keys of the frames waiting for skeletons."""
        return set(self._by_key)

    def push(self, stamp: Any, persons: list[PersonObservation], payload: F = None) -> list[FrameSkeletons[F]]:
        frame = FrameSkeletons(stamp, payload)
        self._waiting.append(frame)
        self._by_key[self.key(stamp)] = frame
        self._collect(self.estimator.process(persons))
        owed = {self.key(s) for s in self.estimator.pending_stamps()}
        return self._release(lambda waiting: self.key(waiting.stamp) not in owed)

    def flush(self) -> list[FrameSkeletons[F]]:
        """Every waiting frame, completed by ending every run (a later frame starts new tracks)."""
        self._collect(self.estimator.flush())
        return self._release(lambda waiting: True)

    def _collect(self, estimates: list[SkeletonEstimate]) -> None:
        for estimate in estimates:
            frame = self._by_key.get(self.key(estimate.stamp))
            if frame is None:
                self.orphans += 1
            else:
                frame.skeletons.append(estimate)

    def _release(self, complete: Callable[[FrameSkeletons[F]], bool]) -> list[FrameSkeletons[F]]:
        released = []
        while self._waiting and complete(self._waiting[0]):
            frame = self._waiting.popleft()
            del self._by_key[self.key(frame.stamp)]
            frame.skeletons.sort(key=lambda estimate: estimate.track_id)
            released.append(frame)
        return released


KEYPOINT_SOURCES = ("detector", "model")
NEIGHBOUR_WEIGHT = 0.5  # a neighbouring frame's keypoint counts half as much as the described frame's own


def smooth_detector_keypoints(points: np.ndarray, centre: int) -> np.ndarray:
    """The detector's keypoints of frame `centre`, each a confidence-weighted mean (pixels) over that frame and
    its direct neighbours: points (T, 17, 3) of T consecutive frames of one person, x, y, confidence. Returns
    (17, 3): smoothed x, y and the frame's own confidence.

    Why: at 12-32 px the detector's keypoints jitter from frame to frame. Measured on the unseen scenes of
    training/configs/scenes.yaml, this filter beats the raw keypoints on 63 % of the person-frames, where every
    learned model so far loses to them (README "Results"). Pixels, not crop coordinates: the crop follows
    the detector's jittering box, and averaging in crop coordinates was worse than no filter."""
    neighbours = [i for i in (centre - 1, centre, centre + 1) if 0 <= i < len(points)]
    weights = np.stack([points[i, :, 2] * (1.0 if i == centre else NEIGHBOUR_WEIGHT) for i in neighbours])
    total = weights.sum(axis=0)
    mean = (weights[..., None] * points[neighbours, :, :2]).sum(axis=0) / np.maximum(total, 1e-9)[:, None]
    xy = np.where(total[:, None] > 0, mean, points[centre, :, :2])
    return np.concatenate([xy, points[centre, :, 2:3]], axis=1).astype(np.float32)


def detector_skeleton(window: list[PersonObservation], output_index: int,
                      calibration: Callable[..., np.ndarray] | None = None) -> SkeletonEstimate | None:
    """The described frame's skeleton from the detector's own keypoints, smoothed over the frames of the
    window next to it (edge-padding copies are not frames), its confidences through `calibration`; None when
    the tracker sent no keypoints."""
    described = window[output_index]
    if described.detector_keypoints is None:
        return None
    frames = [o for i, o in enumerate(window) if i == output_index or (
        abs(i - output_index) == 1 and o is not described and o.detector_keypoints is not None)]
    points = np.stack([o.detector_keypoints for o in frames]).astype(np.float64)
    smoothed = smooth_detector_keypoints(points, next(i for i, o in enumerate(frames) if o is described))
    height = described.box[3] - described.box[1]  # the same confidence means less on a smaller person
    confidence = smoothed[:, 2] if calibration is None else calibration(smoothed[:, 2], height)
    return SkeletonEstimate(described.track_id, described.stamp, described.box, smoothed[:, :2], described.score,
                            confidence)


def detector_input(window: list[PersonObservation]) -> np.ndarray:
    """(5, 17, 3): each frame's detector keypoints in that frame's crop coordinates, zeros where absent."""
    out = np.zeros((len(window), 17, 3), np.float32)
    for index, observation in enumerate(window):
        if observation.detector_keypoints is not None:
            out[index, :, :2] = normalise_keypoints(observation.detector_keypoints[:, :2], observation.region)
            out[index, :, 2] = observation.detector_keypoints[:, 2]
    return out


def estimate_windows(backend: PoseBackend, windows: list[list[PersonObservation]], output_index: int,
                     keypoint_source: str = "model",
                     calibration: Callable[[np.ndarray], np.ndarray] | None = None) -> list[SkeletonEstimate]:
    """Each window gives the skeleton of its frame `output_index`: with keypoint source "detector", from the
    detector's own keypoints (smoothed) where the tracker sent them; otherwise from one batched inference."""
    if keypoint_source == "detector":
        from_detector = [detector_skeleton(window, output_index, calibration) for window in windows]
        rest = [window for window, estimate in zip(windows, from_detector, strict=True) if estimate is None]
        inferred = iter(estimate_windows(backend, rest, output_index))
        return [estimate if estimate is not None else next(inferred) for estimate in from_detector]
    if not windows:
        return []
    crops = np.stack([np.stack([observation.crop for observation in window]) for window in windows])
    detector = np.stack([detector_input(window) for window in windows]) if backend.takes_detector else None
    poses, confidence = backend.estimate(crops_to_input(crops), detector)
    estimates = []
    for number, window in enumerate(windows):
        described = window[output_index]
        estimates.append(SkeletonEstimate(described.track_id, described.stamp, described.box,
                                          denormalise_keypoints(poses[number, output_index], described.region),
                                          described.score,
                                          None if confidence is None else confidence[number, output_index]))
    return estimates
