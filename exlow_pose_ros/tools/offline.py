"""exlow_pose_video: the exlow_pose pipeline on a video file without ROS, to JSON, COCO results and a video.

Same stages as the ROS nodes: PersonTracker (Ultralytics detector + ByteTrack/BoT-SORT) on each full
frame -> crop convention (square_region + cut_crop, RGB 16x16) -> PoseEstimator (per-track 5-frame
windows, one batched inference per frame) -> skeletons in image pixels. Offline the video has an end,
so each track's last frames are flushed with edge-padded windows at the end of the video
(PoseEstimator.flush), as they are at every gap of a track: in both modes every tracked person in every
frame gets a skeleton.

JSON written to --out-json (pixels: continuous coordinates, origin at the top-left corner of the
top-left pixel, as in the crop convention; keypoints in COCO-17 order, exlow_pose_ros.core.keypoints):

    {
      "video": "path/of/input.avi",
      "model": {"path": "...onnx", "sha256": "hex", "method": "pten"},   # method: from the model contract
      "backend": "onnxruntime CPU",                                       # PoseBackend.describe()
      "detector": {"path": "...pt", "imgsz": 1280, "conf": 0.25, "iou": 0.7, "tracker": "bytetrack.yaml"},
      "mode": "centre" | "latest",
      "fps": 10.0, "width": 768, "height": 576,                           # of the input video
      "start_frame": 0,
      "annotated_video": {"path": "out.webm", "codec": "VP8", "fourcc": "VP80"} | null,   # what --out-video wrote
      "frames": [                                                         # every processed frame, in order
        {"index": 200,                                                    # frame number in the input video
         "time_s": 20.0,                                                  # index / fps
         "persons": [                                                     # tracked persons, highest score first
           {"track_id": 3,
            "box": [x_min, y_min, x_max, y_max],                          # the tracker's box
            "score": 0.87,                                                # the detector's score
            "keypoints": [[x, y, score], ...]}                            # 17 rows; score = the model's
         ]}                                                               # per-joint confidence (models
      ]                                                                   # without one: the detector score)
    }

A tracked person without a skeleton would be left out of "persons" (only possible with more than 512 live
tracks, PoseEstimator's bound); the summary then warns.

The annotated video (--out-video; only when asked for) has one frame per entry of "frames", same size and
fps as the input. It is H.264 .mp4 where this OpenCV can write it, else VP8 .webm (browsers play both; the
suffix changes and a log line says so), mp4v only as a last resort (exlow_pose_ros.tools.video_writer).

--out-coco writes the same skeletons in the COCO keypoint results format (what pycocotools' COCO.loadRes and
COCOeval read), a JSON list with one entry per person per frame, in the order of "frames" and "persons":

    [{"image_id": 200,                          # the frame's "index": its number in the input video, from 0
      "category_id": 1,                         # COCO's person
      "keypoints": [x1, y1, c1, ..., x17, y17, c17],   # the "keypoints" rows above, flattened
      "score": 0.87,                            # the person's detector score
      "track_id": 3}]                           # extra (PoseTrack style); COCO tools ignore it

x, y are the JSON's coordinates unchanged (continuous, origin at the image's top-left corner, as COCO boxes
and as the COCO-trained detector reads COCO keypoints; tools that take COCO keypoints as pixel indices, such
as Detectron2, subtract 0.5). The third value is the per-joint confidence, not COCO's 0/1/2 visibility flag:
COCOeval uses only the ground truth's visibility, so results may put a confidence there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..core.assets import default_detector, default_model, keypoint_calibration, tiny_detector
from ..core.backends import BACKENDS, BackendError, create_backend
from ..core.detector_export import DEFAULT_MAX_UPSCALE, PRECISIONS
from ..core.drawing import draw_skeletons, draw_tracked_boxes
from ..core.person_tracker import (
    DEFAULT_TINY_MIN_UPSCALE,
    TRACKER_BACKENDS,
    TRACKERS,
    PersonTracker,
    TrackedBox,
    TrackerError,
)
from ..core.pose_estimator import (
    KEYPOINT_SOURCES,
    FrameSkeletons,
    FrameStream,
    PoseEstimator,
    SkeletonEstimate,
    observe,
)
from ..core.provenance import file_sha256
from ..core.windows import OUTPUT_INDEX
from .video_writer import VideoOutput, VideoWriterError, open_video_writer

PROG = "exlow_pose_video"
STAGES = ("read", "detector", "crop", "pose", "draw")
COCO_PERSON = 1  # COCO's category_id of person


class OfflineError(RuntimeError):
    """A problem the user can fix (missing file, unreadable video); the message says which."""


def _person_json(tracked: TrackedBox, skeleton: SkeletonEstimate) -> dict[str, Any]:
    score = round(float(tracked.score), 4)
    # Per joint: the model's confidence where it gives one, else the person's detector score.
    joint_scores = [score] * len(skeleton.keypoints) if skeleton.confidence is None else \
        [round(float(c), 4) for c in skeleton.confidence]
    return {"track_id": int(tracked.track_id), "box": [round(float(v), 2) for v in tracked.box], "score": score,
            "keypoints": [[round(float(x), 2), round(float(y), 2), c]
                          for (x, y), c in zip(skeleton.keypoints, joint_scores, strict=True)]}


def coco_results(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JSON's frames as COCO keypoint results (module docstring): derived from them, so both always agree."""
    return [{"image_id": frame["index"], "category_id": COCO_PERSON,
             "keypoints": [value for row in person["keypoints"] for value in row], "score": person["score"],
             "track_id": person["track_id"]}
            for frame in frames for person in frame["persons"]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run the exlow_pose pipeline (person tracker -> 16x16 crops -> PTEN pose) on a video "
        "file without ROS; write every tracked person's COCO-17 skeleton per frame as JSON (schema: "
        "pydoc exlow_pose_ros.tools.offline), optionally as COCO keypoint results and an annotated video.")
    parser.add_argument("video", type=Path, help="input video file (anything OpenCV reads)")
    parser.add_argument("--model", type=Path, default=default_model(), help="pose model: exported .onnx (or "
                        "checkpoint for --backend torch; default: the shipped %(default)s)")
    parser.add_argument("--detector", type=Path, default=default_detector(),
                        help="Ultralytics person detector weights (default: %(default)s)")
    parser.add_argument("--out-json", type=Path, required=True, help="JSON output path")
    parser.add_argument("--out-video", type=Path, help="annotated video output path (default: none). H.264 .mp4 "
                        "where this OpenCV can write it, else VP8 .webm: the suffix is changed and the log says so")
    parser.add_argument("--out-coco", type=Path, help="also write the skeletons as COCO keypoint results (a JSON "
                        "list for pycocotools' loadRes; default: none). image_id is the frame's index in the input "
                        "video (from 0, whatever --start-frame), category_id 1 (person), score the person's "
                        "detector score; each keypoint's third value is its confidence, not a visibility flag")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="pose inference backend (default: "
                        "%(default)s: TensorRT on a CUDA GPU with TensorRT, else ONNX Runtime)")
    parser.add_argument("--mode", choices=tuple(OUTPUT_INDEX), default="centre", help="centre: the pose of the "
                        "window's middle frame (the paper); latest: of its newest frame (default: %(default)s)")
    parser.add_argument("--keypoints", choices=KEYPOINT_SOURCES, default="detector",
                        help="detector: the detector's own keypoints, smoothed over neighbouring frames (best on "
                        "unseen scenes, README 'Results'); model: the pose model's. Persons without detector "
                        "keypoints always get the model's (default: %(default)s)")
    parser.add_argument("--keypoint-calibration", default="", help="calibration of the detector's keypoint "
                        "confidences: '' = the shipped one, 'none' = raw, or a JSON path (exlow-pose-calibrate)")
    parser.add_argument("--imgsz", type=int, default=1280, help="detector input size; small people need large "
                        "sizes (default: %(default)s)")
    parser.add_argument("--conf", type=float, default=0.25, help="detector confidence threshold (default: "
                        "%(default)s)")
    parser.add_argument("--iou", type=float, default=0.7, help="detector NMS IoU threshold (default: %(default)s)")
    parser.add_argument("--tracker", default="bytetrack.yaml", help=f"one of {', '.join(TRACKERS)} or a tracker "
                        "YAML (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="detector torch device (default: %(default)s)")
    parser.add_argument("--detector-backend", choices=TRACKER_BACKENDS, default="auto",
                        help="auto: the fastest cached export (as the tracker node's default); torch: --detector as it "
                        "is; onnxruntime, openvino (fastest on x86 CPUs), tensorrt: its export, made beforehand with "
                        "python -m exlow_pose_ros.core.detector_export (default: %(default)s)")
    parser.add_argument("--detector-export-dir", type=Path, default=None, help="detector export cache (default: "
                        "exported/ next to the detector weights)")
    parser.add_argument("--detector-precision", choices=PRECISIONS, default="fp32",
                        help="precision of the detector export (default: %(default)s)")
    parser.add_argument("--max-upscale", type=float, default=DEFAULT_MAX_UPSCALE,
                        help="run the detector at min(imgsz, this x the frame's longest side): some upscaling finds "
                        "tiny people, too much loses them; 0: always imgsz (default: %(default)s, the tracker's)")
    parser.add_argument("--tiny-detector", default="", help="a second detector for tiny people (.pt, from "
                        "exlow-pose-finetune-detector) on frames enlarged >= --tiny-min-upscale times, the more "
                        "confident keypoints per person, as the tracker node's tiny_detector_model ('': off)")
    parser.add_argument("--tiny-min-upscale", type=float, default=DEFAULT_TINY_MIN_UPSCALE,
                        help="see --tiny-detector (default: %(default)s, the tracker's)")
    parser.add_argument("--tile-size", type=int, default=0, help="tiled detection for tiny people in full-size "
                        "frames, as the tracker node's tile_size (default: %(default)s, off)")
    parser.add_argument("--start-frame", type=int, default=0, help="first frame to process (default: 0)")
    parser.add_argument("--max-frames", type=int, default=None, help="process at most this many frames "
                        "(default: all)")
    return parser


def _check_inputs(args: argparse.Namespace) -> None:
    for what, path in (("video", args.video), ("pose model", args.model), ("detector weights", args.detector)):
        if not path.is_file():
            raise OfflineError(f"{what} {path} not found")
    if args.start_frame < 0 or (args.max_frames is not None and args.max_frames < 1):
        raise OfflineError("--start-frame must be >= 0 and --max-frames >= 1")


def _open_video(path: Path, start_frame: int) -> tuple[cv2.VideoCapture, float, int, int, int]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OfflineError(f"OpenCV cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    # grab() rather than seeking: seeking is approximate for many codecs and frame indices must be exact.
    for skipped in range(start_frame):
        if not capture.grab():
            raise OfflineError(f"video {path} has only {skipped} frames, --start-frame is {start_frame}")
    return capture, fps if fps > 0 else 0.0, width, height, count


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline on args.video; writes the outputs and returns the summary."""
    _check_inputs(args)
    try:
        backend = create_backend(args.backend, args.model)
        tracker = PersonTracker(args.detector, args.imgsz, args.conf, args.iou, args.tracker, args.device,
                                backend=args.detector_backend, export_dir=args.detector_export_dir,
                                max_upscale=args.max_upscale, precision=args.detector_precision,
                                tiny_model_path=tiny_detector(args.tiny_detector),
                                tiny_min_upscale=args.tiny_min_upscale, tile_size=args.tile_size)
    except (BackendError, TrackerError) as error:
        raise OfflineError(str(error)) from None
    poses = PoseEstimator(backend, args.mode, keypoint_source=args.keypoints,
                          keypoint_calibration=keypoint_calibration(args.keypoint_calibration))
    stream: FrameStream[tuple[np.ndarray, list[TrackedBox]]] = FrameStream(poses)  # stamps: frame indices
    capture, fps, width, height, count = _open_video(args.video, args.start_frame)
    for path in (args.out_json, args.out_coco):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
    writer: VideoOutput | None = None
    if args.out_video:
        try:
            writer = open_video_writer(args.out_video, fps or 30.0, (width, height))
        except VideoWriterError as error:
            raise OfflineError(str(error)) from None
        if writer.note:  # now, not after the run: the user may be waiting for the requested file
            print(f"{PROG}: {writer.note}", file=sys.stderr)

    seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)  # per stage, over the whole run
    frames: list[dict[str, Any]] = []
    counts = {"persons": 0, "skeletons": 0, "missing": 0}
    tracks: set[int] = set()

    def emit(done: list[FrameSkeletons[tuple[np.ndarray, list[TrackedBox]]]]) -> None:
        for frame in done:
            emit_frame(frame.stamp, *frame.payload, {s.track_id: s for s in frame.skeletons})

    def emit_frame(index: int, bgr: np.ndarray, tracked: list[TrackedBox], found: dict[int, SkeletonEstimate]
                   ) -> None:
        start = time.perf_counter()
        persons = [_person_json(t, found[t.track_id]) for t in tracked if t.track_id in found]
        counts["skeletons"] += len(persons)
        counts["missing"] += len(tracked) - len(persons)
        frames.append({"index": index, "time_s": round(index / fps, 4) if fps else None, "persons": persons})
        if writer is not None:
            image = draw_skeletons(bgr, [found[t.track_id] for t in tracked if t.track_id in found])
            writer.write(draw_tracked_boxes(image, [t for t in tracked if t.track_id not in found]))
        seconds["draw"] += time.perf_counter() - start

    limits = [n for n in (count - args.start_frame if count > 0 else None, args.max_frames) if n is not None]
    total = max(min(limits), 0) if limits else None
    index = args.start_frame
    try:
        with tqdm(total=total, unit="frame", desc=PROG, disable=None, file=sys.stderr) as progress:
            while args.max_frames is None or index < args.start_frame + args.max_frames:
                start = time.perf_counter()
                ok, bgr = capture.read()
                if not ok:
                    break
                seconds["read"] += time.perf_counter() - start
                start = time.perf_counter()
                tracked = tracker.track(bgr)
                seconds["detector"] += time.perf_counter() - start
                start = time.perf_counter()
                persons = observe(bgr, tracked, index)
                seconds["crop"] += time.perf_counter() - start
                start = time.perf_counter()
                done = stream.push(index, persons, (bgr, tracked))
                seconds["pose"] += time.perf_counter() - start
                counts["persons"] += len(tracked)
                tracks.update(t.track_id for t in tracked)
                emit(done)
                index += 1
                progress.update(1)
                progress.set_postfix(tracks=poses.active_tracks, refresh=False)
            start = time.perf_counter()
            done = stream.flush()
            seconds["pose"] += time.perf_counter() - start
            emit(done)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise OfflineError(f"no frames read from {args.video} (from frame {args.start_frame})")

    document = {
        "video": str(args.video),
        "model": {"path": str(args.model), "sha256": file_sha256(args.model),
                  "method": backend.contract.get("method")},
        "backend": backend.describe(),
        "detector": {"path": str(args.detector), "imgsz": args.imgsz, "conf": args.conf, "iou": args.iou,
                     "tiny_detector": None if tracker.tiny_detector is None else str(tracker.tiny_detector.path),
                     "tiny_min_upscale": args.tiny_min_upscale,
                     "tracker": args.tracker, "backend": tracker.backend, "backend_choice": tracker.backend_note,
                     "max_upscale": args.max_upscale},
        "mode": args.mode, "fps": fps, "width": width, "height": height, "start_frame": args.start_frame,
        "annotated_video": writer.describe() if writer else None,
        "frames": frames,
    }
    args.out_json.write_text(json.dumps(document, separators=(",", ":")))
    if args.out_coco:
        args.out_coco.write_text(json.dumps(coco_results(frames), separators=(",", ":")))
    written = [args.out_json, *([writer.path] if writer else []), *([args.out_coco] if args.out_coco else [])]
    return {"written": written,"frames": len(frames), "persons": counts["persons"], "tracks": len(tracks),
            "skeletons": counts["skeletons"], "missing": counts["missing"], "backend": backend.describe(),
            "ms": {stage: 1000.0 * seconds[stage] / len(frames) for stage in STAGES}}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except OfflineError as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, whatever the cause
        return 2
    ms = summary["ms"]
    print(f"{PROG}: {summary['frames']} frames, {summary['persons']} persons in {summary['tracks']} tracks, "
          f"{summary['skeletons']} skeletons ({summary['backend']}, {args.mode})")
    if summary["missing"]:
        print(f"{PROG}: warning: {summary['missing']} tracked persons got no skeleton", file=sys.stderr)
    print(f"{PROG}: mean ms per frame: " + ", ".join(f"{stage} {ms[stage]:.1f}" for stage in STAGES)
          + f"; total {sum(ms.values()):.1f}")
    print(f"{PROG}: wrote " + ", ".join(str(path) for path in summary["written"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
