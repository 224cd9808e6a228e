"""Person detection and tracking with Ultralytics (ByteTrack or BoT-SORT), persons only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .error_text import first_line

TRACKERS = ("bytetrack.yaml", "botsort.yaml")


class TrackerError(RuntimeError):
    """The tracker cannot start (missing package or weights); the message says what to do."""


@dataclass(frozen=True)
class TrackedBox:
    track_id: int
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in pixels
    score: float
    keypoints: np.ndarray | None = None     # (17, 3) the detector's own x, y (pixels) and confidence; None if
                                            # the detector is not a pose model


@dataclass(frozen=True)
class Detections:
    """Every person the detector found in the last frame, tracked or not (pixels)."""

    boxes: np.ndarray      # (N, 4) x_min, y_min, x_max, y_max
    scores: np.ndarray     # (N,)
    keypoints: np.ndarray | None  # (N, 17, 3) x, y, confidence; None if the detector is not a pose model
    tracked: np.ndarray    # (N,) bool: reported as a tracked person this frame


class PersonTracker:
    """Runs detector + tracker on BGR frames of one stream; ids persist across calls.

    One detector forward per frame, then Ultralytics' tracker on its boxes (the same code `YOLO.track` runs).
    Unlike `YOLO.track`, a person first seen in this frame is reported at once with the id its track will keep
    (`report_new_tracks`): Ultralytics hides a new track until a second frame confirms it, and at 12-32 px the
    detector often finds a person in one frame only, so the pose stage would miss persons the detector found.
    """

    def __init__(self, model_path: str | Path, image_size: int = 1280, confidence: float = 0.25, iou: float = 0.7,
                 tracker: str = "bytetrack.yaml", device: str = "cpu", max_persons: int = 100,
                 report_new_tracks: bool = True) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")  # never download at run time
        path = Path(model_path)
        if not path.is_file():
            raise TrackerError(f"detector weights {path} not found: run scripts/setup.sh (it unpacks "
                               "yolo11n-pose.pt into assets/models) or set detector_model to a local .pt/.onnx")
        if tracker not in TRACKERS and not Path(tracker).is_file():
            raise TrackerError(f"tracker must be one of {TRACKERS} or a tracker YAML file, not {tracker!r}")
        try:
            from ultralytics import YOLO
        except ImportError:
            raise TrackerError("the tracker needs the ultralytics package: pip install ultralytics lap "
                               "(rosdep keys python3-ultralytics-pip, python3-lap-pip)") from None
        try:
            self.model = YOLO(str(path), task="pose" if "pose" in path.name else "detect")
        except Exception as error:  # Ultralytics raises many types for unreadable checkpoints
            raise TrackerError(f"cannot load detector weights {path}: {first_line(error)}") from None
        self.image_size, self.confidence, self.iou = image_size, confidence, iou
        self.tracker_config, self.device, self.max_persons = tracker, device, max_persons
        self.report_new_tracks = report_new_tracks
        self.found = 0
        self.detections = Detections(np.zeros((0, 4)), np.zeros(0), None, np.zeros(0, bool))
        self._warm_up(path)
        self.reset()

    def _warm_up(self, path: Path) -> None:
        """One blank frame now: exported weights (.onnx, .engine) load lazily and a missing device shows only
        at the first inference, which would crash a node at its first image instead of stopping its start."""
        import logging

        from ultralytics.utils import LOGGER

        level = LOGGER.level
        LOGGER.setLevel(logging.ERROR)  # its requirement warnings would bury the one line that matters
        try:
            self._detect(np.zeros((64, 64, 3), np.uint8))
        except Exception as error:
            hint = (" A TensorRT engine runs only with the TensorRT version and GPU it was built for: export it "
                    "again on this machine (yolo export model=yolo11n-pose.pt format=engine) or use the .pt weights."
                    if path.suffix == ".engine" else "")
            raise TrackerError(f"detector {path} fails its first inference on device {self.device!r}: "
                               f"{first_line(error)}.{hint}") from None
        finally:
            LOGGER.setLevel(level)

    def _detect(self, bgr: np.ndarray):
        return self.model.predict(bgr, classes=[0], imgsz=self.image_size, conf=self.confidence, iou=self.iou,
                                  device=self.device, verbose=False)[0]

    def track(self, bgr: np.ndarray) -> list[TrackedBox]:
        """Tracked persons in this frame, at most max_persons, highest scores first; `detections` keeps every
        person the detector found in it."""
        result = self._detect(bgr)
        boxes = result.boxes.cpu().numpy()
        rows = self.tracker.update(boxes, bgr)
        if self.report_new_tracks:  # this frame's new tracks, still unconfirmed: already carry their final id
            new = [t.result for t in self.tracker.tracked_stracks
                   if not t.is_activated and t.frame_id == self.tracker.frame_id]
            rows = np.concatenate([np.asarray(rows, float).reshape(-1, 8), np.asarray(new, float).reshape(-1, 8)])
        rows = np.asarray(rows, float).reshape(-1, 8)
        keypoints = None if result.keypoints is None else result.keypoints.data.cpu().numpy().astype(np.float32)
        tracked = np.zeros(len(boxes), bool)
        tracked[rows[:, 7].astype(int)] = True
        self.detections = Detections(boxes.xyxy.astype(float).reshape(-1, 4), boxes.conf.astype(float), keypoints,
                                     tracked)
        self.found = len(rows)  # before the max_persons cap, so a node can say what the cap dropped
        order = np.argsort(-rows[:, 5], kind="stable")[: self.max_persons]
        # Each person's box is its own detection's (inside the frame, and the box its keypoints belong to), not
        # the tracker's Kalman estimate.
        detection = rows[:, 7].astype(int)
        return [TrackedBox(int(rows[i, 4]), tuple(self.detections.boxes[detection[i]]),
                           float(self.detections.scores[detection[i]]),
                           None if keypoints is None else keypoints[detection[i]]) for i in order]

    def reset(self) -> None:
        """Forget all tracks (a new stream)."""
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        config = IterableSimpleNamespace(**YAML.load(check_yaml(self.tracker_config)))
        config.device = self.device
        self.tracker = TRACKER_MAP[config.tracker_type](args=config)
