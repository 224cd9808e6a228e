"""`exlow-pose-benchmark`: speed of the pose stage and of the whole pipeline (a benchmark, not a test).

1. Pose inference per backend (ONNX Runtime CPU with 1 and 2 threads, torch CPU, TensorRT FP32/FP16 when a
   GPU is present) at batch 1, 8, 32, 128: latency p50/p99 and windows per second.
2. Model size: parameters and FLOPs per window (torch's FLOP counter).
3. The end-to-end pipeline on real video frames, split by stage (detector, crop, pose, publish = building
   and serialising the ROS messages) and grouped by the number of persons in the frame.
Prints tables and writes JSON (and a plot of stage times against persons).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
BATCHES = (1, 8, 32, 128)


def time_calls(function, warmup: int, repeats: int, budget_s: float) -> list[float]:
    for _ in range(warmup):
        function()
    times, started = [], time.perf_counter()
    while len(times) < repeats and (time.perf_counter() - started < budget_s or len(times) < 5):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return times


def inference_rows(model: Path, checkpoint: Path | None, budget_s: float) -> list[dict]:
    from exlow_pose_ros.backends import BackendError, create_backend, tensorrt_usable

    setups: list[tuple[str, str, Path, dict]] = [
        ("onnxruntime CPU, 1 thread", "onnxruntime", model, {"threads": 1}),
        ("onnxruntime CPU, 2 threads", "onnxruntime", model, {"threads": 2}),
    ]
    if checkpoint is not None:
        setups.append(("torch CPU, 2 threads", "torch", checkpoint, {"threads": 2}))
    if tensorrt_usable():
        setups += [(f"TensorRT {p.upper()}", "tensorrt", model, {"precision": p, "batch_max": max(BATCHES)})
                   for p in ("fp32", "fp16")]
    rows = []
    rng = np.random.default_rng(0)
    for label, kind, path, options in setups:
        try:
            backend = create_backend(kind, path, **options)
        except BackendError as error:
            rows.append({"backend": label, "error": str(error)})
            continue
        for batch in BATCHES:
            crops = rng.random((batch, 5, 3, 16, 16), dtype=np.float32)
            times = time_calls(lambda b=backend, c=crops: b.infer(c), warmup=3, repeats=200, budget_s=budget_s)
            p50 = statistics.median(times)
            rows.append({"backend": label, "batch": batch, "p50_ms": 1000 * p50,
                         "p99_ms": 1000 * float(np.percentile(times, 99)), "windows_per_s": batch / p50,
                         "ms_per_window": 1000 * p50 / batch, "calls": len(times)})
    return rows


def model_size(checkpoint: Path | None, model: Path) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .checkpoints import load_model
    from .models import build_model

    if checkpoint is not None:
        network, method = load_model(checkpoint)
    else:  # the architecture named in the ONNX contract, with fresh weights: same parameters and FLOPs
        from exlow_pose_ros.backends import create_backend

        method = create_backend("onnxruntime", model).contract["method"]
        network = build_model(method).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.rand(1, 5, 3, 16, 16))
    return {"method": method, "parameters": int(sum(p.numel() for p in network.parameters())),
            "flops_per_window": int(counter.get_total_flops()), "onnx_bytes": model.stat().st_size}


def pipeline_rows(video: Path, model: Path, detector: Path, frames: int, start: int, imgsz: int) -> list[dict]:
    """Per frame: detector, crop, pose and publish (message building + CDR serialisation) times in ms."""
    import cv2
    from exlow_pose_msgs.msg import TrackedPersonArray
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from exlow_pose_ros.backends import create_backend
    from exlow_pose_ros.conversions import skeleton_array, tracked_person_message
    from exlow_pose_ros.crop import cut_crop, square_region
    from exlow_pose_ros.person_tracker import PersonTracker
    from exlow_pose_ros.pose_estimator import PersonObservation, PoseEstimator

    tracker = PersonTracker(detector, image_size=imgsz)
    estimator = PoseEstimator(create_backend("onnxruntime", model, threads=2), "centre")
    capture = cv2.VideoCapture(str(video))
    for _ in range(start):
        capture.grab()
    rows = []
    for index in range(frames):
        ok, bgr = capture.read()
        if not ok:
            break
        header = Header(frame_id="camera_optical_frame")
        header.stamp.sec = index
        t0 = time.perf_counter()
        tracked = tracker.track(bgr)
        t1 = time.perf_counter()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        observations, crops = [], []
        for box in tracked:
            region = square_region(box.box)
            crop = cut_crop(rgb, region)
            crops.append((box, region, crop))
            observations.append(PersonObservation(box.track_id, box.box, box.score, region, crop, header))
        t2 = time.perf_counter()
        estimates = estimator.process(observations)
        t3 = time.perf_counter()
        persons = TrackedPersonArray(header=header, image_width=bgr.shape[1], image_height=bgr.shape[0],
                                     persons=[tracked_person_message(b, r, c, header) for b, r, c in crops])
        serialize_message(persons)
        serialize_message(skeleton_array(header, bgr.shape[1], bgr.shape[0], estimates))
        t4 = time.perf_counter()
        rows.append({"frame": start + index, "persons": len(tracked), "skeletons": len(estimates),
                     "detector_ms": 1000 * (t1 - t0), "crop_ms": 1000 * (t2 - t1), "pose_ms": 1000 * (t3 - t2),
                     "publish_ms": 1000 * (t4 - t3)})
    return rows


def summarise_pipeline(rows: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        persons = row["persons"]
        key = "0" if persons == 0 else "1-2" if persons <= 2 else "3-5" if persons <= 5 else "6-9" if persons <= 9 \
            else "10+"
        groups.setdefault(key, []).append(row)
    order = ["0", "1-2", "3-5", "6-9", "10+"]
    summary = []
    for key in [k for k in order if k in groups]:
        group = groups[key]
        stats = {stage: float(np.median([r[f"{stage}_ms"] for r in group]))
                 for stage in ("detector", "crop", "pose", "publish")}
        persons = float(np.mean([r["persons"] for r in group]))
        summary.append({"persons": key, "frames": len(group), "mean_persons": persons, **{f"{k}_ms": v for k, v in
                        stats.items()}, "pose_ms_per_person": stats["pose"] / persons if persons else None,
                        "pose_share_of_detector": stats["pose"] / stats["detector"]})
    return summary


def print_tables(result: dict) -> None:
    console = Console()
    table = Table(title=f"Pose inference ({result['machine']['cpu']}, {result['machine']['cores']} cores)")
    for column in ("backend", "batch", "p50 ms", "p99 ms", "ms/window", "windows/s"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for row in result["inference"]:
        if "error" in row:
            table.add_row(row["backend"], "-", "-", "-", "-", row["error"][:60])
        else:
            table.add_row(row["backend"], str(row["batch"]), f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}",
                          f"{row['ms_per_window']:.3f}", f"{row['windows_per_s']:.0f}")
    console.print(table)
    size = result["model"]
    console.print(f"model {size['method']}: {size['parameters']:,} parameters, "
                  f"{size['flops_per_window'] / 1e6:.1f} MFLOPs per window, ONNX {size['onnx_bytes'] / 1e6:.2f} MB")
    if result.get("pipeline"):
        table = Table(title=f"End-to-end per frame, median ms by persons in frame ({result['pipeline_source']})")
        for column in ("persons", "frames", "detector", "crop", "pose", "publish", "pose/person", "pose/detector"):
            table.add_column(column, justify="right")
        for row in result["pipeline"]:
            per_person = f"{row['pose_ms_per_person']:.2f}" if row["pose_ms_per_person"] is not None else "-"
            table.add_row(row["persons"], str(row["frames"]), f"{row['detector_ms']:.1f}", f"{row['crop_ms']:.2f}",
                          f"{row['pose_ms']:.2f}", f"{row['publish_ms']:.2f}", per_person,
                          f"{100 * row['pose_share_of_detector']:.1f}%")
        console.print(table)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    persons = [r["persons"] for r in rows]
    for stage in ("detector", "crop", "pose", "publish"):
        axis.scatter(persons, [r[f"{stage}_ms"] for r in rows], s=10, label=stage)
    axis.set_yscale("log")
    axis.set_xlabel("persons in frame")
    axis.set_ylabel("ms per frame")
    axis.set_title("Pipeline stage time per frame")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "exlow_pose_pten.onnx")
    parser.add_argument("--checkpoint", type=Path, help="training checkpoint for the torch backend and FLOPs")
    parser.add_argument("--video", type=Path, default=REPO / "assets" / "videos" / "vtest.avi")
    parser.add_argument("--detector", type=Path, default=REPO / "assets" / "models" / "yolo11n-pose.pt")
    parser.add_argument("--frames", type=int, default=60, help="pipeline frames to time (0: skip the pipeline)")
    parser.add_argument("--start-frame", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=1280)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per backend and batch")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmark")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "model_path": str(args.model),
        "inference": inference_rows(args.model, args.checkpoint, args.seconds),
        "model": model_size(args.checkpoint, args.model),
    }
    if args.frames:
        rows = pipeline_rows(args.video, args.model, args.detector, args.frames, args.start_frame, args.imgsz)
        result.update(pipeline_frames=rows, pipeline=summarise_pipeline(rows),
                      pipeline_source=f"{args.video.name} frames {args.start_frame}-{args.start_frame + len(rows) - 1}"
                      f", detector imgsz {args.imgsz}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    if args.frames:
        plot(result["pipeline_frames"], args.out / "pipeline_stages.png")
    print_tables(result)
    print(f"wrote {args.out / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
