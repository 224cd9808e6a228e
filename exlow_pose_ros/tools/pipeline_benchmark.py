"""`exlow_pose_benchmark`: the pipeline's speed on this machine, in one run (a benchmark, not a test).

1. Detector: ms per frame for each detector backend (PyTorch, ONNX Runtime, OpenVINO; TensorRT on a GPU) and
   imgsz, on real video (vtest.avi frames 150-179 by default: 3-9 pedestrians in every frame).
2. Pipeline: frames per second of the per-frame work (detector and tracker, crops, pose, message building and CDR
   serialisation) for each detector setting, and each stage's median by persons in frame for the first setting.
3. Pose: ms per window for each pose backend (ONNX Runtime with 1 and 2 threads, torch from a checkpoint, TensorRT
   FP32/FP16 on a GPU) at batch 1, 8, 32, 128, for each model given (e.g. an FP32 and an INT8 one).
4. The pose stage's share of the detector's time.
Prints the tables and writes benchmark.json and pipeline_stages.png. A detector backend with no cached export gets
a dynamic-shape one first (python -m exlow_pose_ros.core.detector_export). Parameters and FLOPs of a model:
`exlow-pose-model-size` (training).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from exlow_pose_msgs.msg import TrackedPersonArray
from rclpy.serialization import serialize_message
from rich.console import Console
from rich.table import Table
from std_msgs.msg import Header

from ..core.assets import assets_dir, default_detector, default_model
from ..core.backends import BackendError, create_backend, tensorrt_usable
from ..core.detector_export import DEFAULT_MAX_UPSCALE, ExportError, export_detector, find_exports
from ..core.person_tracker import TRACKER_BACKENDS, PersonTracker, TrackerError
from ..core.pose_estimator import KEYPOINT_SOURCES, PoseEstimator, observe
from ..nodes.conversions import skeleton_array, tracked_person_message

STAGES = ("detector", "crop", "pose", "publish")
BATCHES = (1, 8, 32, 128)


def pipeline_rows(video: Path, model: Path, detector: Path, frames: int, start: int, imgsz: int,
                  detector_backend: str = "torch", export_dir: Path | None = None,
                  max_upscale: float = 0.0, keypoint_source: str = "detector", tile_size: int = 0) -> list[dict]:
    """Per frame: detector, crop, pose and publish (message building + CDR serialisation) times in ms."""
    tracker = PersonTracker(detector, image_size=imgsz, backend=detector_backend, export_dir=export_dir,
                            max_upscale=max_upscale, tile_size=tile_size)
    estimator = PoseEstimator(create_backend("onnxruntime", model, threads=2), "centre",
                              keypoint_source=keypoint_source)
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
        observations = observe(bgr, tracked, header)
        t2 = time.perf_counter()
        estimates = estimator.process(observations)
        t3 = time.perf_counter()
        persons = TrackedPersonArray(header=header, image_width=bgr.shape[1], image_height=bgr.shape[0],
                                     persons=[tracked_person_message(box, o.region, o.crop, header)
                                              for box, o in zip(tracked, observations, strict=True)])
        serialize_message(persons)
        serialize_message(skeleton_array(header, bgr.shape[1], bgr.shape[0], estimates))
        t4 = time.perf_counter()
        rows.append({"frame": start + index, "persons": len(tracked), "detector_backend": tracker.backend,
                     "detector_input": list(tracker.input_shape(bgr.shape[1], bgr.shape[0])),
                     "skeletons": len(estimates),
                     "detector_ms": 1000 * (t1 - t0), "crop_ms": 1000 * (t2 - t1), "pose_ms": 1000 * (t3 - t2),
                     "publish_ms": 1000 * (t4 - t3)})
    return rows


def summarise_stages(rows: list[dict]) -> list[dict]:
    """Median stage times grouped by persons in frame."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        persons = row["persons"]
        key = "0" if persons == 0 else "1-2" if persons <= 2 else "3-5" if persons <= 5 else "6-9" if persons <= 9 \
            else "10+"
        groups.setdefault(key, []).append(row)
    summary = []
    for key in [k for k in ("0", "1-2", "3-5", "6-9", "10+") if k in groups]:
        group = groups[key]
        stats = {stage: float(np.median([r[f"{stage}_ms"] for r in group])) for stage in STAGES}
        persons = float(np.mean([r["persons"] for r in group]))
        summary.append({"persons": key, "frames": len(group), "mean_persons": persons, **{f"{k}_ms": v for k, v in
                        stats.items()}, "pose_ms_per_person": stats["pose"] / persons if persons else None,
                        "pose_share_of_detector": stats["pose"] / stats["detector"]})
    return summary


def summarise_setting(requested: str, imgsz: int, rows: list[dict], tile_size: int = 0) -> dict:
    """One detector setting (the backend asked for, e.g. auto, and the one that ran): detector time and the
    pipeline's frames per second (the first frame, which pays for lazy initialisation, left out)."""
    timed = rows[1:] or rows
    totals = [sum(r[f"{stage}_ms"] for stage in STAGES) for r in timed]
    detector = [r["detector_ms"] for r in timed]
    return {"setting": f"{requested} {imgsz}" + (f" tiles {tile_size}" if tile_size else ""),
            "backend": rows[0]["detector_backend"] if rows else requested,
            "imgsz": imgsz, "tile_size": tile_size, "frames": len(timed),
            "input": rows[0]["detector_input"] if rows else None,
            "detector_ms_median": float(np.median(detector)), "detector_ms_p90": float(np.percentile(detector, 90)),
            "pipeline_ms_mean": float(np.mean(totals)), "frames_per_second": 1000.0 * len(totals) / sum(totals),
            "pose_ms_median": float(np.median([r["pose_ms"] for r in timed])),
            "pose_share_of_detector": float(sum(r["pose_ms"] for r in timed) / sum(detector)),
            "mean_persons": float(np.mean([r["persons"] for r in rows]))}


def time_calls(function, warmup: int, repeats: int, budget_s: float) -> list[float]:
    for _ in range(warmup):
        function()
    times, started = [], time.perf_counter()
    while len(times) < repeats and (time.perf_counter() - started < budget_s or len(times) < 5):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return times


def pose_rows(models: list[Path], checkpoint: Path | None, budget_s: float) -> list[dict]:
    """Pose inference per model, backend and batch on random crops (and detector keypoints where the model takes
    them): the time does not depend on the pixel values."""
    setups: list[tuple[str, str, Path, dict]] = []
    for model in models:
        setups += [(model.name, "onnxruntime CPU, 1 thread", model, {"kind": "onnxruntime", "threads": 1}),
                   (model.name, "onnxruntime CPU, 2 threads", model, {"kind": "onnxruntime", "threads": 2})]
        if tensorrt_usable():
            setups += [(model.name, f"TensorRT {p.upper()}", model,
                        {"kind": "tensorrt", "precision": p, "batch_max": max(BATCHES)}) for p in ("fp32", "fp16")]
    if checkpoint is not None:
        setups.append((checkpoint.name, "torch CPU, 2 threads", checkpoint, {"kind": "torch", "threads": 2}))
    rows = []
    rng = np.random.default_rng(0)
    for model_name, label, path, options in setups:
        try:
            backend = create_backend(options.pop("kind"), path, **options)
        except BackendError as error:
            rows.append({"model": model_name, "backend": label, "error": str(error)})
            continue
        for batch in BATCHES:
            crops = rng.random((batch, 5, 3, 16, 16), dtype=np.float32)
            detector = rng.random((batch, 5, 17, 3), dtype=np.float32) if backend.takes_detector else None
            times = time_calls(lambda b=backend, c=crops, d=detector: b.estimate(c, d), warmup=3, repeats=200,
                               budget_s=budget_s)
            p50 = statistics.median(times)
            rows.append({"model": model_name, "backend": label, "batch": batch, "p50_ms": 1000 * p50,
                         "p99_ms": 1000 * float(np.percentile(times, 99)), "windows_per_s": batch / p50,
                         "ms_per_window": 1000 * p50 / batch, "calls": len(times)})
    return rows


def print_tables(result: dict) -> None:
    console = Console(width=150)  # wide enough for the tables when the output is not a terminal
    machine = f"{result['machine']['cpu']}, {result['machine']['cores']} cores, load {result['load_average']}"
    table = Table(title=f"Detector and pipeline per frame ({result['source']}; {machine})")
    for column in ("backend", "imgsz", "tiles", "input HxW", "frames", "detector ms (median)", "detector ms (p90)",
                   "pipeline frames/s", "pose / detector", "persons"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for row in result["settings"]:
        shape = "x".join(map(str, row["input"])) if row["input"] else "-"
        table.add_row(row["backend"], str(row["imgsz"]), str(row.get("tile_size") or "off"), shape,
                      str(row["frames"]), f"{row['detector_ms_median']:.1f}",
                      f"{row['detector_ms_p90']:.1f}", f"{row['frames_per_second']:.2f}",
                      f"{100 * row['pose_share_of_detector']:.1f}%", f"{row['mean_persons']:.1f}")
    console.print(table)
    table = Table(title=f"Stages per frame, median ms by persons in frame ({result['settings'][0]['setting']}, "
                  f"keypoint_source {result['keypoint_source']})")
    for column in ("persons", "frames", "detector", "crop", "pose", "publish", "pose/person", "pose/detector"):
        table.add_column(column, justify="right")
    for row in result["stages"]:
        per_person = f"{row['pose_ms_per_person']:.2f}" if row["pose_ms_per_person"] is not None else "-"
        table.add_row(row["persons"], str(row["frames"]), f"{row['detector_ms']:.1f}", f"{row['crop_ms']:.2f}",
                      f"{row['pose_ms']:.2f}", f"{row['publish_ms']:.2f}", per_person,
                      f"{100 * row['pose_share_of_detector']:.1f}%")
    console.print(table)
    table = Table(title="Pose inference per window (random inputs of the contract's shapes)")
    for column in ("model", "backend", "batch", "p50 ms", "p99 ms", "ms/window", "windows/s"):
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    for row in result["pose"]:
        if "error" in row:
            table.add_row(row["model"], row["backend"], "-", "-", "-", "-", row["error"][:60])
        else:
            table.add_row(row["model"], row["backend"], str(row["batch"]), f"{row['p50_ms']:.2f}",
                          f"{row['p99_ms']:.2f}", f"{row['ms_per_window']:.3f}", f"{row['windows_per_s']:.0f}")
    console.print(table)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    persons = [r["persons"] for r in rows]
    for stage in STAGES:
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
    parser = argparse.ArgumentParser(prog="exlow_pose_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", default=[default_model()],
                        help="pose models (.onnx) to time; the first one runs in the pipeline (default: shipped)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a training checkpoint to time on torch as well (needs exlow_pose_training)")
    parser.add_argument("--video", type=Path, default=assets_dir() / "videos" / "vtest.avi")
    parser.add_argument("--detector", type=Path, default=default_detector())
    parser.add_argument("--frames", type=int, default=30, help="frames to time per detector setting")
    parser.add_argument("--start-frame", type=int, default=150)
    parser.add_argument("--imgsz", type=int, nargs="+", default=[1280], help="detector input sizes")
    parser.add_argument("--detector-backend", nargs="+", choices=TRACKER_BACKENDS, default=["auto"],
                        help="detector backends, each timed on the same frames at every imgsz; one with no cached "
                        "export is exported first (dynamic shape); the first setting fills the stage table")
    parser.add_argument("--detector-export-dir", type=Path, default=None,
                        help="detector export cache (default: exported/ next to the detector weights)")
    parser.add_argument("--max-upscale", type=float, default=DEFAULT_MAX_UPSCALE,
                        help="detector max_upscale (default: %(default)s, the tracker's)")
    parser.add_argument("--tile-size", type=int, nargs="+", default=[0], help="the tracker's tile_size, each timed "
                        "at every detector setting (default: 0, off)")
    parser.add_argument("--keypoints", choices=KEYPOINT_SOURCES, default="detector",
                        help="the pose node's keypoint_source in the pipeline (default: %(default)s, the node's "
                        "default: the model runs only for persons without detector keypoints)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per pose backend and batch")
    parser.add_argument("--out", type=Path, default=Path("results") / "benchmark")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    load_before = os.getloadavg()
    runs: dict[tuple[str, int, int], list[dict]] = {}
    try:
        for backend in args.detector_backend:
            for imgsz in args.imgsz:
                if backend not in ("torch", "auto") and not find_exports(args.detector, backend, imgsz,
                                                           cache_dir=args.detector_export_dir):
                    print(f"exporting the detector for {backend} at imgsz {imgsz} (dynamic shape; once, cached)")
                    export_detector(args.detector, backend, imgsz, cache_dir=args.detector_export_dir)
                for tile in args.tile_size:
                    runs[(backend, imgsz, tile)] = pipeline_rows(args.video, args.model[0], args.detector,
                                                                 args.frames, args.start_frame, imgsz, backend,
                                                                 args.detector_export_dir, args.max_upscale,
                                                                 args.keypoints, tile)
    except (TrackerError, ExportError) as error:
        print(f"error: {error}")
        return 1
    pose = pose_rows(args.model, args.checkpoint, args.seconds)
    first = next(iter(runs.values()))
    settings = [summarise_setting(backend, imgsz, rows, tile) for (backend, imgsz, tile), rows in runs.items()]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              # Timings on a shared machine are only as good as its load: record it with them.
              "load_average": f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after",
              "model_path": str(args.model[0]), "keypoint_source": args.keypoints,
              "source": f"{args.video.name} frames {args.start_frame}-{args.start_frame + len(first) - 1}",
              "settings": settings,
              "stages": summarise_stages(first), "pose": pose,
              "frames": {setting["setting"]: rows for setting, rows in zip(settings, runs.values(), strict=True)}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    plot(first, args.out / "pipeline_stages.png")
    print_tables(result)
    print(f"wrote {args.out / 'benchmark.json'} and {args.out / 'pipeline_stages.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
