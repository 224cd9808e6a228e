"""`exlow_pose_benchmark`: time of each pipeline stage per frame on real video (a benchmark, not a test).

Per frame: detector (Ultralytics, persons, tracker), crop (the crop convention), pose (PoseEstimator) and publish
(building and CDR-serialising the ROS messages the nodes send), grouped by the number of persons in the frame.
Prints a table and writes pipeline.json and pipeline_stages.png. Model speed and size per backend and batch:
`exlow-pose-benchmark` (training).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from exlow_pose_msgs.msg import TrackedPersonArray
from rclpy.serialization import serialize_message
from rich.console import Console
from rich.table import Table
from std_msgs.msg import Header

from ..core.assets import assets_dir, default_detector, default_model
from ..core.backends import create_backend
from ..core.detector_export import BACKENDS
from ..core.person_tracker import PersonTracker, TrackerError
from ..core.pose_estimator import PoseEstimator, observe
from ..nodes.conversions import skeleton_array, tracked_person_message


def pipeline_rows(video: Path, model: Path, detector: Path, frames: int, start: int, imgsz: int,
                  detector_backend: str = "torch", export_dir: Path | None = None,
                  max_upscale: float = 0.0) -> list[dict]:
    """Per frame: detector, crop, pose and publish (message building + CDR serialisation) times in ms."""
    tracker = PersonTracker(detector, image_size=imgsz, backend=detector_backend, export_dir=export_dir,
                            max_upscale=max_upscale)
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
        rows.append({"frame": start + index, "persons": len(tracked),
                     "detector_input": list(tracker.input_shape(bgr.shape[1], bgr.shape[0])),
                     "skeletons": len(estimates),
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


def print_table(result: dict) -> None:
    table = Table(title=f"End-to-end per frame, median ms by persons in frame ({result['source']}; "
                  f"{result['machine']['cpu']}, {result['machine']['cores']} cores)")
    for column in ("persons", "frames", "detector", "crop", "pose", "publish", "pose/person", "pose/detector"):
        table.add_column(column, justify="right")
    for row in result["pipeline"]:
        per_person = f"{row['pose_ms_per_person']:.2f}" if row["pose_ms_per_person"] is not None else "-"
        table.add_row(row["persons"], str(row["frames"]), f"{row['detector_ms']:.1f}", f"{row['crop_ms']:.2f}",
                      f"{row['pose_ms']:.2f}", f"{row['publish_ms']:.2f}", per_person,
                      f"{100 * row['pose_share_of_detector']:.1f}%")
    Console().print(table)


def summarise_backends(runs: dict[str, list[dict]]) -> list[dict]:
    """Detector time per backend over the same frames (the first frame is left out: lazy initialisation)."""
    summary = []
    for backend, rows in runs.items():
        times = [r["detector_ms"] for r in rows[1:] or rows]
        summary.append({"backend": backend, "frames": len(times), "input": rows[0]["detector_input"] if rows else None,
                        "detector_ms_median": float(np.median(times)), "detector_ms_mean": float(np.mean(times)),
                        "detector_ms_p90": float(np.percentile(times, 90)),
                        "mean_persons": float(np.mean([r["persons"] for r in rows]))})
    return summary


def print_backends(result: dict) -> None:
    table = Table(title=f"Detector per frame by backend ({result['source']}; load {result['load_average']})")
    for column in ("backend", "input HxW", "frames", "median ms", "mean ms", "p90 ms", "persons"):
        table.add_column(column, justify="right")
    for row in result["detector_backends"]:
        shape = "x".join(map(str, row["input"])) if row["input"] else "-"
        table.add_row(row["backend"], shape, str(row["frames"]), f"{row['detector_ms_median']:.1f}",
                      f"{row['detector_ms_mean']:.1f}", f"{row['detector_ms_p90']:.1f}", f"{row['mean_persons']:.1f}")
    Console().print(table)


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
    parser = argparse.ArgumentParser(prog="exlow_pose_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model(), help="pose model (.onnx; default: shipped)")
    parser.add_argument("--video", type=Path, default=assets_dir() / "videos" / "vtest.avi")
    parser.add_argument("--detector", type=Path, default=default_detector())
    parser.add_argument("--frames", type=int, default=60, help="frames to time")
    parser.add_argument("--start-frame", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=1280)
    parser.add_argument("--detector-backend", nargs="+", choices=BACKENDS, default=["torch"],
                        help="one or more detector backends, timed on the same frames; exported ones must be "
                        "cached first (python -m exlow_pose_ros.core.detector_export); the first one fills the "
                        "stage table")
    parser.add_argument("--detector-export-dir", type=Path, default=None,
                        help="detector export cache (default: exported/ next to the detector weights)")
    parser.add_argument("--max-upscale", type=float, default=0.0, help="detector max_upscale (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("results") / "benchmark")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        runs = {backend: pipeline_rows(args.video, args.model, args.detector, args.frames, args.start_frame,
                                       args.imgsz, backend, args.detector_export_dir, args.max_upscale)
                for backend in args.detector_backend}
    except TrackerError as error:
        print(f"error: {error}")
        return 1
    rows = runs[args.detector_backend[0]]
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              # Timings on a shared machine are only as good as its load: record it with them.
              "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
              "model_path": str(args.model), "pipeline_frames": rows, "pipeline": summarise_pipeline(rows),
              "detector_backends": summarise_backends(runs),
              "detector_frames": {backend: [row["detector_ms"] for row in backend_rows]
                                  for backend, backend_rows in runs.items()},
              "source": f"{args.video.name} frames {args.start_frame}-{args.start_frame + len(rows) - 1}, detector "
                        f"imgsz {args.imgsz}, {args.detector_backend[0]}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "pipeline_stages.png")
    print_table(result)
    print_backends(result)
    print(f"wrote {args.out / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
