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


class PersonTracker:
    """Runs detector + tracker on BGR frames of one stream; ids persist across calls."""

    def __init__(self, model_path: str | Path, image_size: int = 1280, confidence: float = 0.25, iou: float = 0.7,
                 tracker: str = "bytetrack.yaml", device: str = "cpu", max_persons: int = 100) -> None:
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
        self.tracker, self.device, self.max_persons = tracker, device, max_persons
        self.found = 0
        self._warm_up(path)

    def _warm_up(self, path: Path) -> None:
        """One blank frame now: exported weights (.onnx, .engine) load lazily and a missing device shows only
        at the first inference, which would crash a node at its first image instead of stopping its start."""
        import logging

        from ultralytics.utils import LOGGER

        level = LOGGER.level
        LOGGER.setLevel(logging.ERROR)  # its requirement warnings would bury the one line that matters
        try:
            self.track(np.zeros((64, 64, 3), np.uint8))
        except Exception as error:
            hint = (" A TensorRT engine runs only with the TensorRT version and GPU it was built for: export it "
                    "again on this machine (yolo export model=yolo11n-pose.pt format=engine) or use the .pt weights."
                    if path.suffix == ".engine" else "")
            raise TrackerError(f"detector {path} fails its first inference on device {self.device!r}: "
                               f"{first_line(error)}.{hint}") from None
        finally:
            LOGGER.setLevel(level)
        for tracker in getattr(self.model.predictor, "trackers", []):
            tracker.reset()  # the blank frame must not count as the stream's first frame

    def track(self, bgr: np.ndarray) -> list[TrackedBox]:
        """Tracked persons in this frame (confirmed tracks only), at most max_persons, highest scores first."""
        result = self.model.track(bgr, persist=True, classes=[0], tracker=self.tracker, imgsz=self.image_size,
                                  conf=self.confidence, iou=self.iou, device=self.device, verbose=False)[0]
        boxes = result.boxes
        self.found = 0
        if boxes is None or boxes.id is None or len(boxes) == 0:
            return []
        self.found = len(boxes)  # before the max_persons cap, so a node can say what the cap dropped
        xyxy = boxes.xyxy.cpu().numpy().astype(float)
        ids = boxes.id.int().cpu().numpy()
        scores = boxes.conf.cpu().numpy().astype(float)
        order = np.argsort(-scores)[: self.max_persons]
        return [TrackedBox(int(ids[i]), tuple(xyxy[i]), float(scores[i])) for i in order]

    def reset(self) -> None:
        """Forget all tracks (a new stream)."""
        self.model.predictor = None
