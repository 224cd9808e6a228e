#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (it cannot run on a CPU-only machine and says so at once):
#   1. builds TensorRT engines (FP32, FP16) of the shipped pose model models/exlow_pose_pten.onnx through our
#      TensorRT backend (exlow_pose_ros/core/backends/tensorrt_backend.py) and checks them against ONNX Runtime
#      (FP32 <= 1e-3, FP16 <= 1e-2 against FP32);
#   2. times the pose model at batch 1/8/32/128 (ONNX Runtime CPU, TensorRT FP32, FP16);
#   3. exports the detector (YOLO11n-pose) to a TensorRT engine through Ultralytics (our detector_export cache)
#      and runs the tracker with it on vtest frames 150-179, against PyTorch on the same GPU;
#   4. writes results/gpu_check.json and prints a table.
#
# Packages: uses .venv (scripts/setup.sh) when there is one, else python3. What is missing (tensorrt,
# ultralytics, lap, onnxruntime, opencv) is installed once into .gpu_site/ and stamped, as setup.sh does:
# from wheels in $GPU_CHECK_WHEELS (default .whl/, for machines without a package index) when that folder
# exists, else from the configured pip index. TensorRT's PyPI name is tensorrt-cu12 / tensorrt-cu13 (11.4.0.106
# on our registry); those are NVIDIA stubs that fetch tensorrt_cu1X_libs and _bindings from pypi.nvidia.com at
# install time, so an offline machine needs those wheels in $GPU_CHECK_WHEELS.
# Assets (git-ignored, carry them): assets/models/yolo11n-pose.pt, assets/videos/vtest.avi.
#
# Usage: bash scripts/gpu_check.sh [--force]   Exit: 0 passed, 1 a check failed, 2 no GPU / cannot set up.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
site="$repo/.gpu_site"
stamps="$site/.stamps"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf '[gpu_check] %s\n' "$*"; }
die() { printf '[gpu_check] ERROR: %s\n' "$*" >&2; exit 2; }

# --- A GPU first, before anything slow.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
  die "no NVIDIA GPU on this machine (nvidia-smi finds none): run scripts/gpu_check.sh on a machine with an NVIDIA GPU and its driver"
fi
log "$(nvidia-smi -L | head -1)"

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=$(command -v python3 || true); fi
fi
[[ -n "$python" ]] || die "no python3 found"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || die "$python has no torch that sees the GPU (torch with CUDA is needed for the TensorRT buffers)"

# --- Missing packages, installed once into .gpu_site (stamped by the requirement list).
cuda_major=$("$python" -c "import torch; print((torch.version.cuda or '12').split('.')[0])")
requirements=("tensorrt-cu${cuda_major}==11.4.0.106" "ultralytics==8.4.190" "lap==0.5.13" "onnxruntime" "onnx"
              "opencv-python-headless")
modules=(tensorrt ultralytics lap onnxruntime onnx cv2)
export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
missing=()
for i in "${!modules[@]}"; do
  "$python" -c "import ${modules[$i]}" 2>/dev/null || missing+=("${requirements[$i]}")
done
wheels=${GPU_CHECK_WHEELS:-$repo/.whl}
stamp=$(printf '%s\n' "${missing[@]}" | sha256sum | cut -d' ' -f1)
if (( ${#missing[@]} )); then
  if [[ $force == 1 || ! -f "$stamps/deps" || "$(cat "$stamps/deps")" != "$stamp" ]]; then
    log "installing into $site: ${missing[*]}"
    source_args=()
    [[ -d "$wheels" ]] && source_args=(--no-index --find-links "$wheels")
    "$python" -m pip install -q --disable-pip-version-check --target "$site" --upgrade "${source_args[@]}" \
      "${missing[@]}" || die "pip could not install ${missing[*]} (offline? put their wheels in $wheels)"
    mkdir -p "$stamps" && printf '%s' "$stamp" >"$stamps/deps"
  fi
  for module in "${modules[@]}"; do
    "$python" -c "import $module" 2>/dev/null || die "python module $module still missing after the install"
  done
fi

for asset in assets/models/yolo11n-pose.pt assets/videos/vtest.avi models/exlow_pose_pten.onnx; do
  [[ -f "$repo/$asset" ]] || die "$asset missing: run scripts/setup.sh here, or carry it from a machine that did"
done

# --- The checks.
mkdir -p "$repo/results"
cd "$repo"
YOLO_OFFLINE=1 "$python" - <<'PY'
"""scripts/gpu_check.sh's checks; writes results/gpu_check.json."""
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from exlow_pose_ros.core.backends import create_backend
from exlow_pose_ros.core.detector_export import effective_imgsz, export_detector, letterbox_shape
from exlow_pose_ros.core.person_tracker import PersonTracker

POSE = Path("models/exlow_pose_pten.onnx")
DETECTOR = Path("assets/models/yolo11n-pose.pt")
VTEST = Path("assets/videos/vtest.avi")
CACHE = Path("results/gpu_check_cache")
BATCHES = (1, 8, 32, 128)
failures: list[str] = []
result: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version()}
try:
    import tensorrt

    result["tensorrt"] = tensorrt.__version__
except ImportError:
    result["tensorrt"] = None


def timed_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - started))
    return float(np.median(times))


# 1-2. Pose model: engines, parity, batch timings.
rng = np.random.default_rng(0)
reference = create_backend("onnxruntime", POSE)
crops = rng.random((37, 5, 3, 16, 16), dtype=np.float32)
detector = rng.random((37, 5, 17, 3), dtype=np.float32) if reference.takes_detector else None
expected = reference.infer(crops, detector)
engines, outputs = {}, {}
for precision in ("fp32", "fp16"):
    started = time.perf_counter()
    engines[precision] = create_backend("tensorrt", POSE, precision=precision, cache_dir=CACHE, batch_max=128)
    outputs[precision] = engines[precision].infer(crops, detector)
    result[f"pose_engine_{precision}_build_s"] = round(time.perf_counter() - started, 1)
parity = {"fp32_vs_onnxruntime": float(np.abs(outputs["fp32"] - expected).max()),
          "fp16_vs_fp32": float(np.abs(outputs["fp16"] - outputs["fp32"]).max())}
result["pose_parity_max_abs"] = parity
if parity["fp32_vs_onnxruntime"] > 1e-3:
    failures.append(f"pose FP32 engine differs from ONNX Runtime by {parity['fp32_vs_onnxruntime']:.2e} > 1e-3")
if parity["fp16_vs_fp32"] > 1e-2:
    failures.append(f"pose FP16 engine differs from FP32 by {parity['fp16_vs_fp32']:.2e} > 1e-2")
timings = []
for batch in BATCHES:
    batch_crops = rng.random((batch, 5, 3, 16, 16), dtype=np.float32)
    batch_detector = None if detector is None else rng.random((batch, 5, 17, 3), dtype=np.float32)
    row = {"batch": batch}
    for name, backend in (("onnxruntime_cpu", reference), *engines.items()):
        row[f"{name}_ms"] = timed_ms(lambda b=backend: b.infer(batch_crops, batch_detector), 20)
    timings.append(row)
result["pose_batch_ms"] = timings

# 3. Detector: TensorRT engine through Ultralytics' export, in the tracker, against PyTorch on the GPU.
capture = cv2.VideoCapture(str(VTEST))
for _ in range(150):
    capture.grab()
frames = [capture.read()[1] for _ in range(30)]
height, width = frames[0].shape[:2]
detector_rows = []
for imgsz in (1280, 640):
    shape = letterbox_shape(width, height, effective_imgsz(width, height, imgsz, 2.0))
    runs = {"torch_cuda": PersonTracker(DETECTOR, imgsz, device="cuda:0")}
    for precision in ("fp32", "fp16"):
        started = time.perf_counter()
        export_detector(DETECTOR, "tensorrt", imgsz, shape, precision, CACHE, device="0")
        result[f"detector_engine_{imgsz}_{precision}_build_s"] = round(time.perf_counter() - started, 1)
        runs[f"tensorrt_{precision}"] = PersonTracker(DETECTOR, imgsz, device="cuda:0", backend="tensorrt",
                                                      export_dir=CACHE, precision=precision)
    counts: dict[str, list[int]] = {}
    for name, tracker in runs.items():
        times = []
        for bgr in frames:
            started = time.perf_counter()
            tracker.track(bgr)
            times.append(1000 * (time.perf_counter() - started))
            counts.setdefault(name, []).append(len(tracker.detections.scores))
        detector_rows.append({"imgsz": imgsz, "input": list(shape), "backend": name,
                              "median_ms": float(np.median(times[1:])), "persons": float(np.mean(counts[name]))})
    for name in runs:
        worst = max(abs(a - b) for a, b in zip(counts[name], counts["torch_cuda"], strict=True))
        if worst > 1:
            failures.append(f"detector {name} at {imgsz}: person count differs from PyTorch by {worst} in a frame")
result["detector"] = detector_rows
result["failures"] = failures
Path("results/gpu_check.json").write_text(json.dumps(result, indent=2))

print(f"\n{result['gpu']}, TensorRT {result['tensorrt']}, torch {result['torch']}")
print(f"pose parity: FP32 vs ONNX Runtime {parity['fp32_vs_onnxruntime']:.2e}, FP16 vs FP32 "
      f"{parity['fp16_vs_fp32']:.2e}")
print(f"{'batch':>6} {'ORT cpu ms':>11} {'TRT fp32 ms':>12} {'TRT fp16 ms':>12}")
for row in timings:
    print(f"{row['batch']:>6} {row['onnxruntime_cpu_ms']:>11.2f} {row['fp32_ms']:>12.2f} {row['fp16_ms']:>12.2f}")
print(f"{'imgsz':>6} {'input':>9} {'detector':>14} {'median ms':>10} {'persons':>8}")
for row in detector_rows:
    print(f"{row['imgsz']:>6} {'x'.join(map(str, row['input'])):>9} {row['backend']:>14} {row['median_ms']:>10.2f} "
          f"{row['persons']:>8.1f}")
print("wrote results/gpu_check.json")
for failure in failures:
    print(f"FAILED: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
PY
