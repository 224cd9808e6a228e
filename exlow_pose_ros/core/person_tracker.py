"""Person detection and tracking with Ultralytics (ByteTrack or BoT-SORT), persons only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detection_merge import MERGE_IOU, merge_detections
from .detector_export import (
    BACKENDS,
    ExportError,
    check_backend_available,
    default_cache_dir,
    effective_imgsz,
    export_command,
    find_exports,
    letterbox_shape,
)
from .error_text import first_line
from .flip_test import average_flipped, unflip_detections
from .keypoints import NUM_KEYPOINTS
from .tiles import detect_tiled

TRACKERS = ("bytetrack.yaml", "botsort.yaml")
TRACKER_BACKENDS = ("auto", *BACKENDS)
AUTO_ORDER_GPU = ("tensorrt",)  # tried first when the tracker's device is a GPU
DEFAULT_TINY_MIN_UPSCALE = 2.0  # the tiny-people detector runs on frames enlarged this much or more
AUTO_ORDER_CPU = ("openvino",)  # ONNX Runtime is left out: not faster than PyTorch for this detector
MAX_PLANS = 64  # frame sizes whose detector input plan is remembered


def resolve_auto_backend(weights: Path, image_size: int, precision: str, device: str,
                         export_dir: str | Path | None) -> tuple[str, str]:
    """The backend 'auto' means for these weights: the fastest one with an export cached at this imgsz and
    precision (TensorRT on a GPU device, then OpenVINO where it is installed), else PyTorch. Returns it with a
    sentence for the start-up log. A corrupt cached export raises ExportError rather than being passed over."""
    cache = None if export_dir in (None, "") else Path(export_dir)
    order = (AUTO_ORDER_GPU if str(device) != "cpu" else ()) + AUTO_ORDER_CPU
    for backend in order:
        try:
            check_backend_available(backend)
        except ExportError:
            continue
        if find_exports(weights, backend, image_size, precision, cache):
            return backend, f"auto: {backend}, its export is cached"
    hint = export_command("openvino", weights, image_size, precision, cache)
    return "torch", (f"auto: torch, no faster export cached (on an x86 CPU, `{hint}` makes OpenVINO's, about "
                     "1.6x faster)")


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


class PoseDetector:
    """One Ultralytics pose detector on one backend: loads the weights or their cached exports, plans the input
    size per frame size (max_upscale) and finds persons in a BGR frame."""

    def __init__(self, model_path: str | Path, image_size: int = 1280, device: str = "cpu", backend: str = "torch",
                 export_dir: str | Path | None = None, max_upscale: float = 0.0, precision: str = "fp32") -> None:
        """backend: torch runs `model_path` as it is (.pt on PyTorch; an .onnx/.engine path also works);
        onnxruntime, openvino, tensorrt run the exports of the .pt that detector_export cached in `export_dir`
        (default: exported/ next to the weights); auto: see resolve_auto_backend (`backend` then holds the choice,
        `backend_note` why). max_upscale: see detector_export.effective_imgsz."""
        os.environ.setdefault("YOLO_OFFLINE", "1")  # never download at run time
        path = Path(model_path)
        if not path.is_file():
            raise TrackerError(f"detector weights {path} not found: run scripts/setup.sh (it unpacks "
                               "yolo11n-pose.pt into assets/models) or set detector_model to a local .pt/.onnx")
        if backend not in TRACKER_BACKENDS:
            raise TrackerError(f"detector backend must be one of {TRACKER_BACKENDS}, not {backend!r}")
        self.path, self.backend_note = path, backend
        if backend == "auto":
            if path.suffix != ".pt":  # an .onnx/.engine given as weights runs as it is
                backend, self.backend_note = "torch", f"auto: {path.name} as it is"
            else:
                try:
                    backend, self.backend_note = resolve_auto_backend(path, image_size, precision, device,
                                                                      export_dir)
                except ExportError as error:
                    raise TrackerError(str(error)) from None
        if backend != "torch" and path.suffix != ".pt":
            raise TrackerError(f"detector backend {backend} runs exports of .pt weights, not {path.name}: set "
                               "detector_model to the .pt file or use detector_backend torch")
        try:
            from ultralytics import YOLO
        except ImportError:
            raise TrackerError("the tracker needs the ultralytics package: pip install ultralytics lap "
                               "(rosdep keys python3-ultralytics-pip, python3-lap-pip)") from None
        self.backend, self.max_upscale = backend, max_upscale
        self.image_size, self.device = image_size, device
        task = "pose" if "pose" in path.name else "detect"
        # Exported models: a dynamic one takes any frame size; fixed-shape ones serve frames whose letterboxed
        # shape they match (Ultralytics runs a fixed-shape model at its export shape whatever imgsz it is given).
        self.model = None
        self.dynamic_model = None
        self.static_models: dict[tuple[int, int], object] = {}
        self._plans: dict[tuple[int, int], tuple[object, int | tuple[int, int]]] = {}
        if backend == "torch":
            try:
                self.model = YOLO(str(path), task=task)
            except Exception as error:  # Ultralytics raises many types for unreadable checkpoints
                raise TrackerError(f"cannot load detector weights {path}: {first_line(error)}") from None
        else:
            self._load_exports(YOLO, path, task, export_dir, precision)
        self._warm_up(path)

    def _load_exports(self, yolo, path: Path, task: str, export_dir: str | Path | None, precision: str) -> None:
        cache = None if export_dir in (None, "") else Path(export_dir)
        try:
            check_backend_available(self.backend)
            exports = find_exports(path, self.backend, self.image_size, precision, cache)
        except ExportError as error:
            raise TrackerError(str(error)) from None
        if not exports:
            command = export_command(self.backend, path, self.image_size, precision, cache)
            raise TrackerError(f"no {self.backend} export of {path.name} at imgsz {self.image_size} ({precision}) "
                               f"in {cache or default_cache_dir(path)}: run {command} [--frame-size WxH]")
        for export in exports:
            try:
                model = yolo(str(export.path), task=task)
            except Exception as error:
                raise TrackerError(f"cannot load exported detector {export.path}: {first_line(error)}; delete it "
                                   "and export again") from None
            if export.key.shape is None:
                self.dynamic_model = model
            else:
                self.static_models[export.key.shape] = model

    def _plan(self, width: int, height: int) -> tuple[object, int | tuple[int, int]]:
        """The model and predict imgsz for a width x height frame (cached per frame size)."""
        plan = self._plans.get((width, height))
        if plan is None:
            size = effective_imgsz(width, height, self.image_size, self.max_upscale)
            shape = letterbox_shape(width, height, size)
            if self.model is not None:
                plan = (self.model, size)
            elif shape in self.static_models:
                plan = (self.static_models[shape], shape)
            elif self.dynamic_model is not None:
                plan = (self.dynamic_model, size)
            else:  # no export for this frame size: the largest one, Ultralytics letterboxes the frame into it
                largest = max(self.static_models, key=lambda s: s[0] * s[1])
                plan = (self.static_models[largest], largest)
            if len(self._plans) >= MAX_PLANS:  # a source whose frame size keeps changing (a moving ROI)
                self._plans.pop(next(iter(self._plans)))
            self._plans[(width, height)] = plan
        return plan

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) of the detector input for a frame of this size."""
        imgsz = self._plan(width, height)[1]
        return imgsz if isinstance(imgsz, tuple) else letterbox_shape(width, height, imgsz)

    def _warm_up(self, path: Path) -> None:
        """One blank frame now: exported weights (.onnx, .engine) load lazily and a missing device shows only
        at the first inference, which would crash a node at its first image instead of stopping its start."""
        import logging

        from ultralytics.utils import LOGGER

        level = LOGGER.level
        LOGGER.setLevel(logging.ERROR)  # its requirement warnings would bury the one line that matters
        blanks = [(64, 64)] if self.model is not None or self.dynamic_model is not None else []
        blanks += list(self.static_models)  # each fixed-shape export at its own shape
        try:
            for height, width in blanks:
                self.detect(np.zeros((height, width, 3), np.uint8))
        except Exception as error:
            hint = (" A TensorRT engine runs only with the TensorRT version and GPU it was built for: export it "
                    "again on this machine (yolo export model=yolo11n-pose.pt format=engine) or use the .pt weights."
                    if path.suffix == ".engine" or self.backend == "tensorrt" else
                    " Delete the export and make it again (python -m exlow_pose_ros.core.detector_export)."
                    if self.backend != "torch" else "")
            raise TrackerError(f"detector {path} ({self.backend}) fails its first inference on device "
                               f"{self.device!r}: {first_line(error)}.{hint}") from None
        finally:
            LOGGER.setLevel(level)

    def upscale(self, width: int, height: int) -> float:
        """How many times the detector enlarges a frame of this size."""
        return effective_imgsz(width, height, self.image_size, self.max_upscale) / max(width, height)

    def detect(self, bgr: np.ndarray, confidence: float = 0.25, iou: float = 0.7):
        """Ultralytics' result (persons only) for one BGR frame."""
        model, imgsz = self._plan(bgr.shape[1], bgr.shape[0])
        return model.predict(bgr, classes=[0], imgsz=imgsz, conf=confidence, iou=iou, device=self.device,
                             verbose=False)[0]


def _arrays(result) -> tuple[np.ndarray, np.ndarray | None]:
    """An Ultralytics result as boxes (N, 6) float64 and keypoints (N, 17, 3) float32 or None."""
    boxes = np.asarray(result.boxes.cpu().numpy().data, np.float64).reshape(-1, 6)
    keypoints = None if result.keypoints is None else np.asarray(result.keypoints.cpu().numpy().data, np.float32)
    return boxes, keypoints


class PersonTracker:
    """Runs detector + tracker on BGR frames of one stream; ids persist across calls.

    One detector forward per frame (two with a tiny-people detector, below), then Ultralytics' tracker on its
    boxes (the same code `YOLO.track` runs).
    Unlike `YOLO.track`, a person first seen in this frame is reported at once with the id its track will keep
    (`report_new_tracks`): Ultralytics hides a new track until a second frame confirms it, and at 12-32 px the
    detector often finds a person in one frame only, so the pose stage would miss persons the detector found.

    `tiny_model_path` adds a second detector for tiny people (exlow-pose-finetune-detector) on frames the
    detector enlarges at least `tiny_min_upscale` times: both run, and each person found by both keeps the
    detection whose keypoints are more confident (detection_merge); persons only one of them found are kept.

    `flip_test` runs each detector on the frame's mirror image too and averages every person's two estimates
    (flip_test): twice the detector time, the same persons.

    `tile_size` > 0 also runs the detector on overlapping tiles of that many pixels of a larger frame, each
    enlarged as a small frame would be (tiles): people too small for the full-frame pass are found there, at
    one detector pass per tile.
    """

    def __init__(self, model_path: str | Path, image_size: int = 1280, confidence: float = 0.25, iou: float = 0.7,
                 tracker: str = "bytetrack.yaml", device: str = "cpu", max_persons: int = 100,
                 report_new_tracks: bool = True, backend: str = "torch", export_dir: str | Path | None = None,
                 max_upscale: float = 0.0, precision: str = "fp32", tiny_model_path: str | Path | None = None,
                 tiny_min_upscale: float = DEFAULT_TINY_MIN_UPSCALE, flip_test: bool = False,
                 tile_size: int = 0) -> None:
        """The detector's settings: see PoseDetector (the tiny-people detector gets the same)."""
        if tracker not in TRACKERS and not Path(tracker).is_file():
            raise TrackerError(f"tracker must be one of {TRACKERS} or a tracker YAML file, not {tracker!r}")
        settings = {"image_size": image_size, "device": device, "backend": backend, "export_dir": export_dir,
                    "max_upscale": max_upscale, "precision": precision}
        self.detector = PoseDetector(model_path, **settings)
        self.tiny_detector = None if tiny_model_path in (None, "") else PoseDetector(tiny_model_path, **settings)
        self.tiny_min_upscale, self.flip_test, self.tile_size = tiny_min_upscale, flip_test, tile_size
        self.confidence, self.iou = confidence, iou
        self.tracker_config, self.device, self.max_persons = tracker, device, max_persons
        self.report_new_tracks = report_new_tracks
        self.found = 0
        self.detections = Detections(np.zeros((0, 4)), np.zeros(0), None, np.zeros(0, bool))
        self.reset()

    @property
    def backend(self) -> str:
        return self.detector.backend

    @property
    def backend_note(self) -> str:
        return self.detector.backend_note

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) of the detector input for a frame of this size."""
        return self.detector.input_shape(width, height)

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Boxes (N, 6: x_min, y_min, x_max, y_max, score, class) and keypoints (N, 17, 3) or None."""
        detectors = [self.detector]
        if self.tiny_detector is not None and \
                self.detector.upscale(bgr.shape[1], bgr.shape[0]) >= self.tiny_min_upscale:
            detectors.append(self.tiny_detector)
        found = [self._detect_one(detector, bgr) for detector in detectors]
        if len(found) == 1 or found[0][1] is None or found[1][1] is None:
            boxes, keypoints = found[0]
        else:
            boxes, keypoints = merge_detections(*found[0], *found[1], MERGE_IOU)
        if self.tile_size <= 0 or (keypoints is None and len(boxes)):  # tiles merge by keypoint confidence
            return boxes, keypoints
        if keypoints is None:
            keypoints = np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        return detect_tiled(lambda tile: self._detect_one(self.detector, tile), bgr, self.tile_size, boxes,
                            keypoints)

    def _detect_one(self, detector: PoseDetector, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One detector's boxes and keypoints, averaged with its mirror-image pass when flip_test is on."""
        boxes, keypoints = _arrays(detector.detect(bgr, self.confidence, self.iou))
        if not self.flip_test or keypoints is None or len(boxes) == 0:
            return boxes, keypoints
        mirror = np.ascontiguousarray(bgr[:, ::-1])
        flipped = unflip_detections(*_arrays(detector.detect(mirror, self.confidence, self.iou)), bgr.shape[1])
        return average_flipped(boxes, keypoints, *flipped)

    def track(self, bgr: np.ndarray) -> list[TrackedBox]:
        """Tracked persons in this frame, at most max_persons, highest scores first; `detections` keeps every
        person the detector found in it."""
        from ultralytics.engine.results import Boxes

        data, keypoints = self._detect(bgr)
        boxes = Boxes(data, bgr.shape[:2])
        rows = self.tracker.update(boxes, bgr)
        if self.report_new_tracks:  # this frame's new tracks, still unconfirmed: already carry their final id
            new = [t.result for t in self.tracker.tracked_stracks
                   if not t.is_activated and t.frame_id == self.tracker.frame_id]
            rows = np.concatenate([np.asarray(rows, float).reshape(-1, 8), np.asarray(new, float).reshape(-1, 8)])
        rows = np.asarray(rows, float).reshape(-1, 8)
        tracked = np.zeros(len(data), bool)
        tracked[rows[:, 7].astype(int)] = True
        self.detections = Detections(data[:, :4].copy(), data[:, 4].copy(), keypoints, tracked)
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
