"""exlow_pose_demo: the whole ROS 2 pipeline on a real video, as separate node processes over DDS.

video source -> tracker -> pose -> recorder (rosbag2, MCAP). The source publishes the next frame when the
pose node acknowledges the last one, so a slow CPU loses no frame. This process watches the topics,
writes the annotated video (H.264 .mp4 where OpenCV can, else VP8 .webm: exlow_pose_ros.tools.video_writer),
shows progress on stderr (frames the pose node acknowledged, of the video's), checks the bag reads back, and
prints a summary (frames, persons, tracks, skeletons per second, time per stage).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from ..core.assets import assets_dir, default_detector
from ..core.person_tracker import TRACKER_BACKENDS as DETECTOR_BACKENDS

PROG = "exlow_pose_demo"
NAMESPACE = "/exlow_pose"
ACK_TOPIC = f"{NAMESPACE}/processed"
CAMERA = "/camera"
IMAGE_TOPIC = f"{CAMERA}/image_raw"
# Besides the recorder's default set (compressed images, camera_info, skeletons, markers, diagnostics).
TRACKED_TOPIC = f"{NAMESPACE}/tracked_persons:exlow_pose_msgs/msg/TrackedPersonArray"


def command(executable: str, module: str) -> list[str]:
    """The installed console script, or the module run by this interpreter (source checkouts)."""
    found = shutil.which(executable)
    return [found] if found else [sys.executable, "-m", module]


def ros_args(namespace: str | None, remaps: dict[str, str], parameters: dict[str, object]) -> list[str]:
    args = ["--ros-args"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for source, target in remaps.items():
        args += ["-r", f"{source}:={target}"]
    for name, value in parameters.items():
        text = json.dumps(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) \
            else str(value)
        args += ["-p", f"{name}:={text}"]
    return args


@dataclass
class Observed:
    """What this process saw on the pipeline's topics."""

    frames: int = 0
    persons: int = 0
    tracks: set[int] = field(default_factory=set)
    skeleton_arrays: int = 0
    skeletons: int = 0
    first_frame: float | None = None
    last_skeleton: float | None = None
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    video_frames: int = 0
    acks: int = 0  # frames the pose node has finished with: the pipeline's own count of frames done


class Progress:
    """Frames done of the total, rate, ETA, person-frames and tracks on stderr, from real counts (the pose node's acks).

    On a terminal a tqdm bar; elsewhere (a log file, CI, captured output) a redrawn bar is unreadable, so the
    same text comes as one line every line_period seconds and at the end. The clock starts at the first ack:
    node start-up (the detector loading) would otherwise skew the rate and ETA.
    """

    FORMAT = "{desc}: {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}, {rate_fmt}]{postfix}"

    def __init__(self, total: int, stream: TextIO = sys.stderr, line_period: float = 10.0) -> None:
        # total 0: a container that does not state its frame count; then no ETA.
        self.total, self.stream, self.line_period = total or None, stream, line_period
        self.terminal = stream.isatty()
        self.bar: tqdm | None = None
        self.started: float | None = None
        self.last_line, self.last_done = -line_period, -1

    def update(self, done: int, persons: int, tracks: int) -> None:
        if done == 0:
            return
        now = time.monotonic()
        self.started = self.started or now
        postfix = f"person-frames {persons}, tracks {tracks}"
        if self.terminal:
            if self.bar is None:
                self.bar = tqdm(total=self.total, desc=PROG, unit="frame", file=self.stream)
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(done - self.bar.n)
        elif done != self.last_done and (now - self.last_line >= self.line_period or done == self.total):
            self.last_line, self.last_done = now, done
            print(tqdm.format_meter(done, self.total, now - self.started, prefix=PROG, unit="frame",
                                    postfix=postfix, bar_format=self.FORMAT), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Watcher:
    """A small rclpy node: counts, stage timings from /diagnostics, annotated frames into a video file."""

    def __init__(self, video_path: Path, fps: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPersonArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        from .video_writer import VideoOutput

        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("exlow_pose_demo")
        self.observed = Observed()
        self.video_path, self.fps = video_path, fps
        self.writer: VideoOutput | None = None
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(TrackedPersonArray, f"{NAMESPACE}/tracked_persons", self.on_persons, reliable)
        self.node.create_subscription(Skeleton2DArray, f"{NAMESPACE}/skeletons", self.on_skeletons, reliable)
        self.node.create_subscription(Image, f"{NAMESPACE}/annotated_image", self.on_annotated, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 50)
        self.node.create_subscription(Header, ACK_TOPIC, self.on_ack, reliable)

    def on_persons(self, message) -> None:
        self.observed.first_frame = self.observed.first_frame or time.monotonic()
        self.observed.frames += 1
        self.observed.persons += len(message.persons)
        self.observed.tracks.update(int(p.track_id) for p in message.persons)

    def on_skeletons(self, message) -> None:
        now = time.monotonic()
        self.observed.skeleton_arrays += 1
        self.observed.skeletons += len(message.skeletons)
        self.observed.last_skeleton = now

    def on_ack(self, _header) -> None:
        self.observed.acks += 1

    def on_annotated(self, message) -> None:
        from ..nodes.image_conversion import image_to_numpy
        from .video_writer import open_video_writer

        frame = image_to_numpy(message)
        if self.writer is None:
            self.writer = open_video_writer(self.video_path, self.fps, (frame.shape[1], frame.shape[0]))
            if self.writer.note:
                tqdm.write(f"{PROG}: {self.writer.note}", file=sys.stderr)  # above a running progress bar
        self.writer.write(frame)
        self.observed.video_frames += 1

    @property
    def annotated_video(self) -> Path:
        """The file written, whose suffix may differ from the requested one (video_writer)."""
        return self.writer.path if self.writer else self.video_path

    def on_diagnostics(self, message) -> None:
        for entry in message.status:
            for value in entry.values:
                if value.key.endswith("(ms)"):
                    with contextlib.suppress(ValueError):  # a foreign node's non-numeric value
                        self.observed.stage_ms.setdefault(value.key, []).append(float(value.value))

    def spin_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
        return done()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def stop(processes: dict[str, subprocess.Popen], timeout: float = 20.0) -> dict[str, int]:
    """SIGINT every node (the recorder then closes its bag); returns exit codes."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    codes = {}
    for name, process in processes.items():
        try:
            codes[name] = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[name] = process.wait()
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow_pose_demo", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--video", type=Path, default=assets_dir() / "videos" / "vtest.avi")
    parser.add_argument("--model", type=Path, default=None, help="pose model .onnx (default: the shipped one)")
    parser.add_argument("--detector", type=Path, default=default_detector())
    parser.add_argument("--backend", default="onnxruntime", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    parser.add_argument("--mode", default="centre", choices=("centre", "latest"))
    parser.add_argument("--keypoints", default="detector", choices=("detector", "model"),
                        help="the pose node's keypoint_source (default: %(default)s)")
    parser.add_argument("--imgsz", type=int, default=None, help="detector input size (default: the tracker's "
                        "params file)")
    parser.add_argument("--tile-size", type=int, default=None, help="tiled detection for tiny people, the "
                        "tracker's tile_size (default: the tracker's, off)")
    parser.add_argument("--detector-backend", choices=DETECTOR_BACKENDS, default=None,
                        help="the tracker's detector_backend (default: the tracker's params file)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: whole video)")
    parser.add_argument("--out", type=Path, default=Path("results") / "demo",
                        help="output folder, replaced (default results/demo in the working directory)")
    parser.add_argument("--record-images", action="store_true", help="also record the camera images in the bag")
    args = parser.parse_args(argv)

    for label, path in (("video", args.video), ("detector", args.detector)):
        if not path.is_file():
            print(f"exlow_pose_demo: {label} {path} not found (scripts/setup.sh fetches the defaults)", file=sys.stderr)
            return 2
    import cv2

    capture = cv2.VideoCapture(str(args.video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    expected_frames = min(total, args.max_frames) if args.max_frames else total
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    # Localhost discovery unless the user chose otherwise: a demo should not talk to robots on the network.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    logs = {}

    def start(name: str, argv_: list[str]) -> subprocess.Popen:
        logs[name] = (args.out / f"{name}.log").open("w")
        return subprocess.Popen(argv_, stdout=logs[name], stderr=subprocess.STDOUT)

    pose_parameters = {"backend": args.backend, "output_mode": args.mode, "keypoint_source": args.keypoints,
                       "ack_topic": ACK_TOPIC, "reliable_image": True}
    if args.model:
        pose_parameters["model_path"] = str(args.model.resolve())
    from ..nodes.parameters import load_schema

    topics = [*load_schema("bag_recorder_node")["topics"].default, TRACKED_TOPIC,
              *([f"{IMAGE_TOPIC}:sensor_msgs/msg/Image"] if args.record_images else [])]
    processes = {
        "recorder": start("recorder", command("exlow_pose_recorder", "exlow_pose_ros.tools.bag_recorder_node")
                          + ros_args(None, {}, {"topics": topics, "output": str(args.out / "bag")})),
        "pose": start("pose", command("exlow_pose_pose", "exlow_pose_ros.nodes.pose_node")
                      + ros_args(NAMESPACE, {"image": IMAGE_TOPIC, "camera_info": f"{CAMERA}/camera_info"},
                                 pose_parameters)),
        "tracker": start("tracker", command("exlow_pose_tracker", "exlow_pose_ros.nodes.tracker_node")
                         + ros_args(NAMESPACE, {"image": IMAGE_TOPIC},
                                    {"detector_model": str(args.detector.resolve()), "reliable_input": True,
                                     **({} if args.imgsz is None else {"image_size": args.imgsz}),
                                     **({} if args.tile_size is None else {"tile_size": args.tile_size}),
                                     **({} if args.detector_backend is None
                                        else {"detector_backend": args.detector_backend})})),
    }
    watcher = Watcher(args.out / "annotated.mp4", fps)
    progress = Progress(expected_frames)
    started = time.monotonic()
    try:
        # The source waits for every image subscriber: tracker, pose node (annotated image), and the recorder
        # when it records images. The tracker subscribes only once its detector is loaded.
        processes["source"] = start("source", command("exlow_pose_video_source",
                                                      "exlow_pose_ros.tools.video_source_node")
                                    + ros_args(CAMERA, {}, {
                                        "video_path": str(args.video.resolve()), "reliable": True, "rate": "max",
                                        "exit_at_end": True, "wait_for_subscribers": 3 if args.record_images else 2,
                                        "wait_for_subscribers_timeout": 120.0, "pipeline_ack_topic": ACK_TOPIC,
                                        "ack_timeout": 30.0,
                                        "max_frames": args.max_frames}))
        print(f"exlow_pose_demo: {args.video.name} ({expected_frames} frames) through video source -> tracker -> "
              f"pose -> recorder; logs in {args.out}. Starting the nodes (the tracker loads its detector first)",
              flush=True)
        observed = watcher.observed

        def show() -> None:
            progress.update(observed.acks, observed.persons, len(observed.tracks))

        while processes["source"].poll() is None:
            watcher.spin_until(lambda: False, 1.0)
            failed = [n for n, p in processes.items() if p.poll() not in (None, 0)]
            if failed:
                progress.close()
                print(f"exlow_pose_demo: {', '.join(failed)} stopped; see {args.out}/{failed[0]}.log", file=sys.stderr)
                return 1
            show()
        # The last frames' skeletons and the recorder's last messages are on their way.
        # One skeleton array per frame: the last ones come when the pose node's flush_timeout (1 s) passes.
        watcher.spin_until(lambda: observed.skeleton_arrays >= expected_frames, 30.0)
        watcher.spin_until(lambda: False, 1.0)
        show()
    finally:
        progress.close()
        codes = stop(processes)
        watcher.close()
        for log in logs.values():
            log.close()
    elapsed = time.monotonic() - started
    return report(args, watcher.observed, codes, elapsed, expected_frames, watcher.annotated_video)


def report(args: argparse.Namespace, observed: Observed, codes: dict[str, int], elapsed: float,
           expected_frames: int, annotated_video: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    from .bag_io import bag_summary

    bag = bag_summary(args.out / "bag")
    skeleton_span = (observed.last_skeleton or 0) - (observed.first_frame or 0)  # first frame in, last pose out
    stages = {key: sum(values) / len(values) for key, values in observed.stage_ms.items() if values}
    summary = {
        "video": str(args.video), "frames_expected": expected_frames, "frames_processed": observed.frames,
        "persons": observed.persons, "tracks": len(observed.tracks), "skeleton_arrays": observed.skeleton_arrays,
        "skeletons": observed.skeletons,
        "skeletons_per_second": observed.skeletons / skeleton_span if skeleton_span > 0 else 0.0,
        "frames_per_second": observed.frames / elapsed, "wall_seconds": elapsed, "stage_ms": stages,
        "annotated_video": str(annotated_video), "annotated_frames": observed.video_frames,
        "bag": bag, "exit_codes": codes,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    table = Table(title=f"exlow_pose_demo on {args.video.name}", show_header=False)
    for label, value in (
        ("frames processed", f"{observed.frames} of {expected_frames}"),
        ("persons (tracked person-frames)", observed.persons),
        ("distinct tracks", len(observed.tracks)),
        ("skeletons published", f"{observed.skeletons} in {observed.skeleton_arrays} arrays"),
        ("skeletons per second", f"{summary['skeletons_per_second']:.1f}"),
        ("pipeline frames per second", f"{summary['frames_per_second']:.2f}"),
        *((f"  {key}", f"{ms:.2f}") for key, ms in sorted(stages.items())),
        ("bag", f"{args.out / 'bag'}: " + ", ".join(f"{t} {v['count']}" for t, v in bag["topics"].items())),
        ("annotated video", f"{annotated_video} ({observed.video_frames} frames)"),
        ("node exit codes", ", ".join(f"{n} {c}" for n, c in codes.items())),
    ):
        table.add_row(label, str(value))
    Console().print(table)
    complete = observed.frames == expected_frames == observed.skeleton_arrays and all(
        code == 0 for code in codes.values())
    if not complete:
        print("exlow_pose_demo: the pipeline did not process every frame or a node failed; see the logs",
              file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
