"""Exported detector backends (ONNX Runtime, OpenVINO; TensorRT on a GPU) against the PyTorch model on real
frames, the export cache, start-up errors, and the scale-aware detector input size (max_upscale)."""

from __future__ import annotations

import importlib.util
import json
import time

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.boxes import box_iou as iou
from exlow_pose_ros.core.detector_export import (
    ExportError,
    effective_imgsz,
    export_detector,
    find_exports,
    letterbox_shape,
)
from exlow_pose_ros.core.person_tracker import PersonTracker, TrackerError
from exlow_pose_ros.core.provenance import file_sha256

from conftest import DETECTOR, VTEST

pytestmark = pytest.mark.skipif(not (VTEST.exists() and DETECTOR.exists()),
                                reason="assets missing: run scripts/setup.sh")

IMGSZ = 640  # small, so the exports and the parity check fit in about a minute on a 2-core CPU
# At 640 the full vtest frame shows nobody; its top-right quarter (384x288, 4-5 persons) at 640 has the pixel
# scale of the full frame at 1280 (x1.67), the production setting.
CROP = (slice(0, 288), slice(384, 768))
CPU_BACKENDS = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


def frames(first: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VTEST))
    for _ in range(first):
        capture.grab()
    return [capture.read()[1] for _ in range(count)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One fixed-shape export per CPU backend for the 384x288 crops at IMGSZ, shared by the tests."""
    folder = tmp_path_factory.mktemp("detector_exports")
    shape = letterbox_shape(384, 288, effective_imgsz(384, 288, IMGSZ, 2.0))
    for backend in CPU_BACKENDS:
        export_detector(DETECTOR, backend, IMGSZ, shape, cache_dir=folder)
    return folder


class InputShapes:
    """Records the input tensor shape Ultralytics feeds each model."""

    def __init__(self, monkeypatch) -> None:
        from ultralytics.nn.autobackend import AutoBackend

        self.shapes: list[tuple[int, ...]] = []
        forward = AutoBackend.forward

        def recording(backend, image, *args, **kwargs):
            self.shapes.append(tuple(image.shape))
            return forward(backend, image, *args, **kwargs)

        monkeypatch.setattr(AutoBackend, "forward", recording)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_exported_backend_matches_pytorch_on_real_frames(backend, cache, monkeypatch):
    shapes = InputShapes(monkeypatch)
    reference = PersonTracker(DETECTOR, IMGSZ)
    exported = PersonTracker(DETECTOR, IMGSZ, backend=backend, export_dir=cache)
    shapes.shapes.clear()
    worst_iou, keypoint_errors = 1.0, []
    for frame in frames(150, 3):
        bgr = np.ascontiguousarray(frame[CROP])
        reference.track(bgr)
        exported.track(bgr)
        expected, got = reference.detections, exported.detections
        assert abs(len(expected.scores) - len(got.scores)) <= 1
        confident = expected.scores > 0.4  # a box near the threshold may be in one model's output only
        assert confident.sum() >= 2 and len(got.scores)
        overlap = iou(expected.boxes[confident], got.boxes)
        match = overlap.argmax(1)
        worst_iou = min(worst_iou, float(overlap.max(1).min(initial=1.0)))
        visible = expected.keypoints[confident][..., 2] > 0.5
        difference = np.abs(expected.keypoints[confident][..., :2] - got.keypoints[match][..., :2])
        keypoint_errors.extend(difference[visible].ravel())
    # Both ran at the crop's rectangular letterbox, 640x480, not the square 640x640.
    assert set(shapes.shapes) == {(1, 3, 480, 640)}
    assert worst_iou > 0.9
    assert np.median(keypoint_errors) < 1.0 and np.percentile(keypoint_errors, 95) < 2.0, \
        (np.median(keypoint_errors), np.percentile(keypoint_errors, 95))


def test_export_is_cached_and_keyed(cache):
    first = find_exports(DETECTOR, "onnxruntime", IMGSZ, cache_dir=cache)
    assert [e.key.shape for e in first] == [(480, 640)]
    started = time.perf_counter()
    again = export_detector(DETECTOR, "onnxruntime", IMGSZ, (480, 640), cache_dir=cache)
    assert again == first[0] and time.perf_counter() - started < 5, "the second call must reuse the cache"
    record = json.loads((again.path.parent / "key.json").read_text())
    assert record["key"]["weights_sha256"] == file_sha256(DETECTOR)
    assert record["key"]["imgsz"] == IMGSZ and record["key"]["precision"] == "fp32"
    assert find_exports(DETECTOR, "onnxruntime", 1280, cache_dir=cache) == []  # another imgsz is another key


def test_missing_or_corrupt_export_fails_at_start_with_what_to_do(cache, tmp_path):
    with pytest.raises(TrackerError, match=r"no onnxruntime export .*run python -m exlow_pose_ros.core."
                                           r"detector_export --backend onnxruntime"):
        PersonTracker(DETECTOR, IMGSZ, backend="onnxruntime", export_dir=tmp_path)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    model = find_exports(DETECTOR, "onnxruntime", IMGSZ, cache_dir=copy)[0].path
    model.write_bytes(model.read_bytes()[:1000])  # truncated
    with pytest.raises(TrackerError, match=r"corrupt .*delete") as error:
        PersonTracker(DETECTOR, IMGSZ, backend="onnxruntime", export_dir=copy)
    assert "\n" not in str(error.value)
    key_file = model.parent / "key.json"  # a record without its file names (hand-edited, or another version's)
    record = json.loads(key_file.read_text())
    key_file.write_text(json.dumps({"key": record["key"]}))
    with pytest.raises(ExportError, match=r"is corrupt \('model'\): delete it and export again"):
        find_exports(DETECTOR, "onnxruntime", IMGSZ, cache_dir=copy)


@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="openvino is not installed (its wheel is x86-only)")
def test_auto_takes_the_cached_openvino_export_else_pytorch_and_refuses_a_corrupt_one(cache, tmp_path):
    chosen = PersonTracker(DETECTOR, IMGSZ, backend="auto", export_dir=cache)
    assert chosen.backend == "openvino" and chosen.detector.dynamic_model is None and chosen.detector.static_models
    assert "cached" in chosen.backend_note
    fallback = PersonTracker(DETECTOR, IMGSZ, backend="auto", export_dir=tmp_path)  # nothing cached there
    assert fallback.backend == "torch" and fallback.detector.model is not None
    assert f"detector_export --backend openvino --weights {DETECTOR} --imgsz {IMGSZ}" in fallback.backend_note
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    folder = find_exports(DETECTOR, "openvino", IMGSZ, cache_dir=copy)[0].path
    weights = next(folder.glob("*.bin"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(TrackerError, match="corrupt"):  # not silently PyTorch: the user must know
        PersonTracker(DETECTOR, IMGSZ, backend="auto", export_dir=copy)


def test_missing_openvino_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(TrackerError, match=r"needs the openvino package: pip install openvino=="):
        PersonTracker(DETECTOR, IMGSZ, backend="openvino")
    with pytest.raises(ExportError, match="openvino"):
        export_detector(DETECTOR, "openvino", IMGSZ)


def tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT detector export needs the tensorrt package and an NVIDIA GPU (scripts/gpu_check.sh)"
    import torch

    return None if torch.cuda.is_available() else "TensorRT detector export needs an NVIDIA GPU"


@pytest.mark.skipif(tensorrt_reason() is not None, reason=str(tensorrt_reason()))
def test_tensorrt_engine_matches_pytorch(tmp_path):
    shape = letterbox_shape(768, 576, IMGSZ)
    export_detector(DETECTOR, "tensorrt", IMGSZ, shape, cache_dir=tmp_path, device="0")
    reference = PersonTracker(DETECTOR, IMGSZ, device="cuda:0")
    engine = PersonTracker(DETECTOR, IMGSZ, backend="tensorrt", export_dir=tmp_path, device="cuda:0")
    for bgr in frames(150, 3):
        reference.track(bgr)
        engine.track(bgr)
        assert abs(len(reference.detections.scores) - len(engine.detections.scores)) <= 1


def test_effective_input_size_follows_the_frame():
    assert effective_imgsz(64, 48, 1280, 2.0) == 128
    assert effective_imgsz(768, 576, 1280, 2.0) == 1280  # vtest: unchanged
    assert effective_imgsz(400, 300, 1280, 2.0) == 800
    assert effective_imgsz(401, 300, 1280, 2.0) == 832  # rounded up to the stride, as Ultralytics does
    assert effective_imgsz(64, 48, 1280, 0) == 1280  # 0: off
    assert letterbox_shape(768, 576, 1280) == (960, 1280)
    assert letterbox_shape(64, 48, 128) == (96, 128)


def test_a_small_frame_is_not_blown_up_to_imgsz(monkeypatch):
    from ultralytics.data.augment import LetterBox

    shapes = InputShapes(monkeypatch)
    tracker = PersonTracker(DETECTOR, 1280, max_upscale=2.0)
    small = cv2.resize(frames(150, 1)[0], (64, 48), interpolation=cv2.INTER_AREA)
    shapes.shapes.clear()
    tracker.track(small)
    assert shapes.shapes == [(1, 3, 96, 128)] and tracker.input_shape(64, 48) == (96, 128)
    # What Ultralytics feeds is our letterbox_shape, for vtest's size too.
    vtest = frames(150, 1)[0]
    assert LetterBox(1280, auto=True, stride=32)(image=vtest).shape[:2] == tracker.input_shape(768, 576)
    unlimited = PersonTracker(DETECTOR, 1280, max_upscale=0)
    shapes.shapes.clear()
    unlimited.track(small)
    assert shapes.shapes == [(1, 3, 960, 1280)]


def test_tracker_node_without_the_export_stops_at_start_up_with_the_command(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "exlow_pose_ros.nodes.tracker_node", "--ros-args",
                           "-p", "detector_backend:=onnxruntime", "-p", f"detector_export_dir:={tmp_path}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    line = next(x for x in done.stderr.splitlines() if "cannot start" in x)
    assert "no onnxruntime export" in line and "python -m exlow_pose_ros.core.detector_export" in line


def test_every_entry_point_defaults_to_the_same_max_upscale():
    # The benchmark datasets, the offline CLI, the speed benchmark and the tracker node must run the detector alike,
    # or the report would score a product nobody runs.
    from exlow_pose_ros.core.detector_export import DEFAULT_MAX_UPSCALE
    from exlow_pose_ros.core.person_tracker import DEFAULT_TINY_MIN_UPSCALE
    from exlow_pose_ros.nodes.parameters import load_schema
    from exlow_pose_ros.tools.offline import build_parser

    schema, offline = load_schema("tracker_node"), build_parser().parse_args(["x.mp4", "--out-json", "x.json"])
    assert schema["max_upscale"].default == DEFAULT_MAX_UPSCALE > 0
    assert offline.max_upscale == DEFAULT_MAX_UPSCALE
    # ... and the same second detector for tiny people ('' = the shipped one) on the same frames.
    assert schema["tiny_min_upscale"].default == offline.tiny_min_upscale == DEFAULT_TINY_MIN_UPSCALE
    assert schema["tiny_detector_model"].default == offline.tiny_detector == ""
