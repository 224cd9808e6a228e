"""exlow_pose_soak: a long run of the pose node at camera rate with constant track churn; memory and latency.

This process plays a tracker: every frame it publishes a TrackedPersonArray and its image (320x240) at --rate.
People come and go all the time (new ids, never reused), some are hidden for a frame or two, a burst of
--burst-size extra people arrives every --burst-every seconds, and every --empty-every seconds the scene is
empty for --empty-s seconds. It samples the pose node's resident memory and its tracks, times every frame
from publish to the node's acknowledgement (sent after the frame's skeletons are published), and checks
that every frame is answered. At the end it prints a table per time window, writes soak.json and soak.png
into --out, and exits 1 when memory grew or latency drifted beyond the limits given.

With --tracker-video the tracker node also runs, on that video played in a loop at --rate, and its memory
and latency are sampled too (the tracker's output is not fed to the pose node: the synthetic churn is).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.assets import default_model as shipped_model
from .demo import command, ros_args

NAMESPACE = f"/exlow_soak_{os.getpid()}"
POSE_NODE = f"exlow_soak_pose_{os.getpid()}"  # its own name: /diagnostics is shared with any other pose node
WIDTH, HEIGHT = 320, 240
CROP_POOL = 64


def rss_mb(pid: int) -> float | None:
    """Resident memory of process `pid` in MiB (psutil when installed, else /proc), None once it is gone."""
    try:
        import psutil

        try:
            return psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            return None
    except ImportError:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
    return None


@dataclass
class Person:
    track_id: int
    x: float
    y: float
    width: float
    height: float
    vx: float
    vy: float
    frames_left: int
    crop: int  # index into the crop pool


class Scene:
    """Synthetic tracked people with constant churn, bursts and empty stretches (seeded, reproducible)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self.people: list[Person] = []
        self.next_id = 1
        self.frame = 0
        self.mean_life = max(1.0, args.track_s * args.rate)
        self.burst_until = -1

    def _spawn(self, life_frames: float) -> Person:
        height = float(self.rng.uniform(12, 60))
        person = Person(self.next_id, float(self.rng.uniform(0, WIDTH)), float(self.rng.uniform(0, HEIGHT)),
                        height * float(self.rng.uniform(0.3, 0.5)), height, float(self.rng.normal(0, 1.5)),
                        float(self.rng.normal(0, 0.7)), max(1, int(self.rng.exponential(life_frames))),
                        int(self.rng.integers(CROP_POOL)))
        self.next_id += 1
        return person

    def phase(self, t: float) -> str:
        a = self.args
        if a.empty_every > 0 and t % a.empty_every >= a.empty_every - a.empty_s:
            return "empty"
        if a.burst_every > 0 and t % a.burst_every < a.burst_s and t >= a.burst_every:
            return "burst"
        return "normal"

    def step(self, t: float) -> list[Person]:
        """The people visible in the next frame, at time `t` seconds into the run."""
        self.frame += 1
        phase = self.phase(t)
        if phase == "empty":
            self.people.clear()
        else:
            # Arrivals keep the population near --persons: Poisson with rate persons / mean lifetime.
            for _ in range(int(self.rng.poisson(self.args.persons / self.mean_life))):
                self.people.append(self._spawn(self.mean_life))
            if phase == "burst" and self.burst_until < self.frame:
                self.burst_until = self.frame + int(self.args.burst_s * self.args.rate)
                burst = [self._spawn(1) for _ in range(self.args.burst_size)]
                for person in burst:
                    person.frames_left = self.burst_until - self.frame  # they all leave together
                self.people += burst
        alive = []
        for p in self.people:
            p.x, p.y, p.frames_left = p.x + p.vx, p.y + p.vy, p.frames_left - 1
            if p.frames_left > 0 and -p.width < p.x < WIDTH and -p.height < p.y < HEIGHT:
                alive.append(p)
        self.people = alive
        # A few are hidden for a frame (occlusion, a missed detection): their tracks get a gap.
        return [p for p in self.people if self.rng.random() >= self.args.hidden]


def default_model() -> Path:
    """The shipped model (models/ is part of the package)."""
    model = shipped_model()
    if not model.is_file():
        raise SystemExit(f"exlow_pose_soak: the shipped model {model} is missing: reinstall the package or give "
                         "--model")
    return model


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def window_stats(frames: list[dict], samples: list[dict], tracks: list[tuple[float, int]], start: float,
                 end: float) -> dict:
    """Per time window: frames, people, the node's buffered tracks, memory at its end, and latency of the
    normal frames (p50, p99) and of the burst frames (p99) apart, so bursts do not read as drift."""
    inside = [f for f in frames if start <= f["t"] < end]
    normal = [f["latency_ms"] for f in inside if f["latency_ms"] is not None and f["phase"] != "burst"]
    burst = [f["latency_ms"] for f in inside if f["latency_ms"] is not None and f["phase"] == "burst"]
    rss = [s["pose_rss_mb"] for s in samples if start <= s["t"] < end and s["pose_rss_mb"] is not None]
    return {"start_s": start, "end_s": end, "frames": len(inside), "unanswered": sum(f["latency_ms"] is None
                                                                                    for f in inside),
            "persons_mean": float(np.mean([f["persons"] for f in inside])) if inside else 0.0,
            "persons_max": max((f["persons"] for f in inside), default=0),
            "active_tracks_max": max((n for t, n in tracks if start <= t < end), default=0),
            "rss_mb": rss[-1] if rss else math.nan, "p50_ms": percentile(normal, 50),
            "p99_ms": percentile(normal, 99), "burst_p99_ms": percentile(burst, 99),
            "max_ms": max(normal + burst, default=math.nan)}


def plot(path: Path, frames: list[dict], samples: list[dict], tracks: list[tuple[float, int]], windows: list[dict],
         title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    minutes = np.array([s["t"] for s in samples]) / 60
    figure, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for key, label in (("pose_rss_mb", "pose node"), ("tracker_rss_mb", "tracker node")):
        values = [s.get(key) for s in samples]
        if any(v is not None for v in values):
            axes[0].plot(minutes, [math.nan if v is None else v for v in values], label=label)
    axes[0].set_ylabel("resident memory (MiB)")
    axes[0].legend(loc="lower right")
    centre = [(w["start_s"] + w["end_s"]) / 120 for w in windows]
    frame_minutes = np.array([f["t"] for f in frames]) / 60
    axes[1].plot(frame_minutes, [f["latency_ms"] if f["latency_ms"] is not None else math.nan for f in frames],
                 ",", color="0.7", label="each frame")
    axes[1].plot(centre, [w["p50_ms"] for w in windows], "o-", label="p50 per window")
    axes[1].plot(centre, [w["p99_ms"] for w in windows], "s-", label="p99 per window")
    axes[1].plot(centre, [w["burst_p99_ms"] for w in windows], "^--", label="p99 of burst frames")
    axes[1].set_ylabel("frame in -> skeletons out (ms)")
    axes[1].set_yscale("log")
    axes[1].legend(loc="upper right")
    axes[2].plot(frame_minutes, [f["persons"] for f in frames], lw=0.5, label="persons in the frame")
    axes[2].plot([t / 60 for t, _ in tracks], [n for _, n in tracks], lw=1.0, label="tracks buffered by the node")
    axes[2].set_ylabel("count")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow_pose_soak", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument("--rate", type=float, default=15.0, help="frames per second (camera rate)")
    parser.add_argument("--persons", type=float, default=12.0, help="mean number of people in a normal frame")
    parser.add_argument("--track-s", type=float, default=6.0, help="mean life of a track, seconds")
    parser.add_argument("--hidden", type=float, default=0.03, help="chance a person is missing from a frame")
    parser.add_argument("--burst-every", type=float, default=120.0, help="seconds between bursts (0: none)")
    parser.add_argument("--burst-size", type=int, default=60, help="extra people in a burst")
    parser.add_argument("--burst-s", type=float, default=3.0, help="length of a burst, seconds")
    parser.add_argument("--empty-every", type=float, default=300.0, help="seconds between empty stretches (0: none)")
    parser.add_argument("--empty-s", type=float, default=30.0, help="length of an empty stretch, seconds")
    parser.add_argument("--model", type=Path, default=None, help="pose model (default: shipped or untrained PTEN)")
    parser.add_argument("--backend", default="onnxruntime", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    parser.add_argument("--threads", type=int, default=1, help="inference threads of the pose node")
    parser.add_argument("--tracker-video", type=Path, default=None, help="also soak the tracker on this video")
    parser.add_argument("--tracker-imgsz", type=int, default=320)
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--windows", type=int, default=10, help="rows of the summary table")
    parser.add_argument("--warm-up-s", type=float, default=None,
                        help="left out of the memory growth figure (default: until 30 s after the first burst)")
    parser.add_argument("--max-growth-mb", type=float, default=25.0, help="fail above this memory growth")
    parser.add_argument("--max-p99-ratio", type=float, default=3.0,
                        help="fail when a window's p99 latency exceeds the first's by more than this factor")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results") / "soak")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPerson, TrackedPersonArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ..core.crop import square_region
    from ..nodes.conversions import pixel_box, stamp_key
    from ..nodes.image_conversion import numpy_to_image

    model = args.model.resolve() if args.model else default_model()
    logs = {name: (args.out / f"{name}.log").open("w") for name in ("pose", "tracker", "source")}
    processes: dict[str, subprocess.Popen] = {"pose": subprocess.Popen(
        command("exlow_pose_pose", "exlow_pose_ros.nodes.pose_node") + ros_args(NAMESPACE, {"__node": POSE_NODE}, {
            "model_path": str(model), "backend": args.backend, "threads": args.threads, "ack_topic": "processed",
            "reliable_image": True, "diagnostics_period": 1.0}),
        stdout=logs["pose"], stderr=subprocess.STDOUT)}
    if args.tracker_video:
        tracker_ns = f"{NAMESPACE}_tracker"
        processes["tracker"] = subprocess.Popen(
            command("exlow_pose_tracker", "exlow_pose_ros.nodes.tracker_node") + ros_args(tracker_ns, {}, {
                "image_size": args.tracker_imgsz, "reliable_input": True}),
            stdout=logs["tracker"], stderr=subprocess.STDOUT)
        processes["source"] = subprocess.Popen(
            command("exlow_pose_video_source", "exlow_pose_ros.tools.video_source_node") + ros_args(
                tracker_ns, {"image_raw": "image"}, {"video_path": str(args.tracker_video.resolve()),
                                                      "rate": str(args.rate), "loop": True, "stamp_source": "now",
                                                      # best-effort megabyte images lose fragments on a busy host
                                                      "reliable": True}),
            stdout=logs["source"], stderr=subprocess.STDOUT)

    rclpy.init()
    node = rclpy.create_node("exlow_pose_soak")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    persons_out = node.create_publisher(TrackedPersonArray, f"{NAMESPACE}/tracked_persons", reliable)
    images_out = node.create_publisher(Image, f"{NAMESPACE}/image", QoSProfile(depth=30,
                                                                              reliability=ReliabilityPolicy.RELIABLE))
    rng = np.random.default_rng(args.seed)
    crops = [numpy_to_image(rng.integers(0, 255, (16, 16, 3), np.uint8), "rgb8") for _ in range(CROP_POOL)]
    background = rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
    sent: dict[tuple[int, int], int] = {}      # stamp -> index into frames
    frames: list[dict] = []
    samples: list[dict] = []
    state = {"tracks": [], "skeleton_arrays": 0, "skeletons": 0, "tracker_latency": [], "tracks_created": 0,
             "started": time.monotonic()}

    def on_ack(header: Header) -> None:
        index = sent.pop(stamp_key(header), None)
        if index is not None:
            frames[index]["latency_ms"] = (time.monotonic() - frames[index]["sent"]) * 1000

    def on_skeletons(message: Skeleton2DArray) -> None:
        state["skeleton_arrays"] += 1
        state["skeletons"] += len(message.skeletons)

    def on_diagnostics(message: DiagnosticArray) -> None:
        for status in message.status:
            if status.hardware_id == POSE_NODE:
                values = {v.key: v.value for v in status.values}
                state["tracks"].append((time.monotonic() - state["started"], int(values.get("active tracks", 0))))

    def on_tracked(message: TrackedPersonArray) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
        state["tracker_latency"].append((now - stamp) / 1e6)

    node.create_subscription(Header, f"{NAMESPACE}/processed", on_ack, reliable)
    node.create_subscription(Skeleton2DArray, f"{NAMESPACE}/skeletons", on_skeletons, reliable)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    if args.tracker_video:
        node.create_subscription(TrackedPersonArray, f"{NAMESPACE}_tracker/tracked_persons", on_tracked, reliable)

    def alive() -> None:
        for name, process in processes.items():
            if process.poll() is not None:
                raise SystemExit(f"exlow_pose_soak: the {name} node stopped ({process.returncode}); see "
                                 f"{args.out}/{name}.log")

    print(f"exlow_pose_soak: {args.minutes:g} min at {args.rate:g} Hz, about {args.persons:g} people with churn, "
          f"bursts of {args.burst_size} every {args.burst_every:g} s, {args.empty_s:g} s empty every "
          f"{args.empty_every:g} s; model {model.name}; output in {args.out}", flush=True)
    deadline = time.monotonic() + 120
    while persons_out.get_subscription_count() == 0 or images_out.get_subscription_count() == 0:
        alive()
        executor.spin_once(timeout_sec=0.1)
        if time.monotonic() > deadline:
            raise SystemExit("exlow_pose_soak: the pose node did not subscribe within 120 s")
    scene = Scene(args)
    period = 1.0 / args.rate
    started = state["started"] = time.monotonic()
    end = started + args.minutes * 60
    next_frame, next_sample, next_print = started, started, started + 60
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_frame:
                t = now - started
                visible = scene.step(t)
                header = Header(frame_id="soak_camera")
                header.stamp = node.get_clock().now().to_msg()
                persons = []
                for p in visible:
                    box = (p.x, p.y, p.x + p.width, p.y + p.height)
                    crop = crops[p.crop]
                    crop.header = header
                    persons.append(TrackedPerson(track_id=p.track_id, box=pixel_box(box), score=0.8,
                                                 crop_region=pixel_box(square_region(box).box), crop=crop))
                images_out.publish(numpy_to_image(background, "bgr8", header))
                persons_out.publish(TrackedPersonArray(header=header, image_width=WIDTH, image_height=HEIGHT,
                                                       persons=persons))
                sent[stamp_key(header)] = len(frames)
                frames.append({"t": t, "sent": now, "persons": len(persons), "phase": scene.phase(t),
                               "latency_ms": None})
                next_frame += period
                if next_frame < now:  # this process fell behind (a loaded machine): do not burst to catch up
                    next_frame = now + period
            if now >= next_sample:
                alive()
                samples.append({"t": now - started, "pose_rss_mb": rss_mb(processes["pose"].pid),
                                "tracker_rss_mb": rss_mb(processes["tracker"].pid) if "tracker" in processes
                                else None, "soak_rss_mb": rss_mb(os.getpid()), "unanswered_now": len(sent)})
                next_sample += args.sample_s
            if now >= next_print:
                recent = [f["latency_ms"] for f in frames[-int(60 * args.rate):] if f["latency_ms"] is not None]
                print(f"  {(now - started) / 60:5.1f} min: {len(frames)} frames, pose node "
                      f"{samples[-1]['pose_rss_mb']:.1f} MiB, last minute p50 {percentile(recent, 50):.1f} ms "
                      f"p99 {percentile(recent, 99):.1f} ms", flush=True)
                next_print += 60
            executor.spin_once(timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
        state["tracks_created"] = scene.next_id - 1
        drain = time.monotonic() + 10
        while sent and time.monotonic() < drain:  # the last frames' acks
            executor.spin_once(timeout_sec=0.05)
    finally:
        codes = {}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for name, process in processes.items():
            try:
                codes[name] = process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = "killed"
        for log in logs.values():
            log.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return report(args, frames, samples, state, codes, model)


def report(args: argparse.Namespace, frames: list[dict], samples: list[dict], state: dict, codes: dict,
           model: Path) -> int:
    duration = frames[-1]["t"] if frames else 0.0
    step = max(duration / args.windows, 1e-9)
    windows = [window_stats(frames, samples, state["tracks"], k * step,
                            (k + 1) * step + (1e-6 if k == args.windows - 1 else 0)) for k in range(args.windows)]
    if args.warm_up_s is None:  # allocators reach their high-water mark with the first burst's batch
        args.warm_up_s = min(duration / 4, args.burst_every + args.burst_s + 30) if args.burst_every else 60.0
    steady = [s["pose_rss_mb"] for s in samples if s["t"] >= args.warm_up_s and s["pose_rss_mb"] is not None]
    head = float(np.median(steady[:max(1, len(steady) // 10)])) if steady else math.nan
    tail = float(np.median(steady[-max(1, len(steady) // 10):])) if steady else math.nan
    slope = float(np.polyfit([s["t"] / 3600 for s in samples if s["t"] >= args.warm_up_s
                              and s["pose_rss_mb"] is not None], steady, 1)[0]) if len(steady) > 2 else math.nan
    unanswered = sum(f["latency_ms"] is None for f in frames)
    normal = [f["latency_ms"] for f in frames if f["latency_ms"] is not None and f["phase"] != "burst"]
    burst = [f["latency_ms"] for f in frames if f["latency_ms"] is not None and f["phase"] == "burst"]
    p99s = [w["p99_ms"] for w in windows if not math.isnan(w["p99_ms"])]
    first_rss = next((s["pose_rss_mb"] for s in samples if s["pose_rss_mb"] is not None), math.nan)
    summary = {
        "minutes": duration / 60, "rate_hz": args.rate, "frames": len(frames), "unanswered_frames": unanswered,
        "persons_sent": sum(f["persons"] for f in frames), "tracks_created": state["tracks_created"],
        "skeleton_arrays": state["skeleton_arrays"], "skeletons": state["skeletons"],
        "pose_rss_mb": {"start": first_rss, "after_warm_up": head, "end": tail, "growth": tail - head,
                        "slope_mb_per_hour": slope, "max": max(steady, default=math.nan)},
        "latency_ms": {"p50": percentile(normal, 50), "p99": percentile(normal, 99),
                       "burst_p99": percentile(burst, 99), "max": max(normal + burst, default=math.nan),
                       "p99_worst_over_first_window": max(p99s) / p99s[0] if p99s else math.nan},
        "exit_codes": codes}
    if state["tracker_latency"]:
        tracker_rss = [s["tracker_rss_mb"] for s in samples if s["t"] >= args.warm_up_s and s["tracker_rss_mb"]]
        summary["tracker"] = {"frames": len(state["tracker_latency"]),
                              "latency_ms": {"p50": percentile(state["tracker_latency"], 50),
                                             "p99": percentile(state["tracker_latency"], 99)},
                              "rss_mb": {"after_warm_up": tracker_rss[0] if tracker_rss else math.nan,
                                         "end": tracker_rss[-1] if tracker_rss else math.nan}}
    failures = []
    if not math.isnan(summary["pose_rss_mb"]["growth"]) and summary["pose_rss_mb"]["growth"] > args.max_growth_mb:
        failures.append(f"pose node memory grew {summary['pose_rss_mb']['growth']:.1f} MiB after warm-up "
                        f"(limit {args.max_growth_mb:g})")
    if summary["latency_ms"]["p99_worst_over_first_window"] > args.max_p99_ratio:
        failures.append(f"p99 latency rose to {summary['latency_ms']['p99_worst_over_first_window']:.1f}x the "
                        f"first window's (limit {args.max_p99_ratio:g}x)")
    if unanswered:
        failures.append(f"{unanswered} frames got no answer")
    if any(code != 0 for code in codes.values()):
        failures.append(f"exit codes {codes}")
    summary["verdict"] = "fail: " + "; ".join(failures) if failures else "pass"

    print(f"\n{'window (min)':>14} {'frames':>7} {'lost':>5} {'persons':>12} {'tracks':>7} {'RSS MiB':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'burst p99':>9} {'max ms':>7}")
    for w in windows:
        print(f"{w['start_s'] / 60:6.1f}-{w['end_s'] / 60:<6.1f} {w['frames']:7d} {w['unanswered']:5d} "
              f"{w['persons_mean']:6.1f}/{w['persons_max']:<5d} {w['active_tracks_max']:7d} {w['rss_mb']:8.1f} "
              f"{w['p50_ms']:7.1f} {w['p99_ms']:7.1f} {w['burst_p99_ms']:9.1f} {w['max_ms']:7.1f}")
    rss = summary["pose_rss_mb"]
    print(f"\npose node memory: {rss['start']:.1f} MiB at start, {rss['after_warm_up']:.1f} after "
          f"{args.warm_up_s:.0f} s, {rss['end']:.1f} at the end (growth {rss['growth']:+.1f} MiB, trend "
          f"{rss['slope_mb_per_hour']:+.2f} MiB/h)")
    lat = summary["latency_ms"]
    print(f"latency frame in -> skeletons out: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms (burst frames "
          f"p99 {lat['burst_p99']:.1f} ms), max {lat['max']:.1f} ms; worst window p99 "
          f"{lat['p99_worst_over_first_window']:.2f}x the first")
    print(f"{len(frames)} frames, {unanswered} unanswered, {summary['persons_sent']} persons sent, "
          f"{state['skeletons']} skeletons in {state['skeleton_arrays']} arrays; exit codes {codes}")
    if "tracker" in summary:
        tr = summary["tracker"]
        print(f"tracker: {tr['frames']} frames, latency p50 {tr['latency_ms']['p50']:.1f} ms p99 "
              f"{tr['latency_ms']['p99']:.1f} ms, memory {tr['rss_mb']['after_warm_up']:.1f} -> "
              f"{tr['rss_mb']['end']:.1f} MiB")
    print(f"verdict: {summary['verdict']}")
    title = (f"exlow_pose soak: {duration / 60:.1f} min at {args.rate:g} Hz, {len(frames)} frames, "
             f"model {model.name}")
    drawn = plot(args.out / "soak.png", frames, samples, state["tracks"], windows, title)
    (args.out / "soak.json").write_text(json.dumps({
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "summary": summary,
        "windows": windows, "samples": samples, "node_tracks": state["tracks"],
        "frames": [{k: f[k] for k in ("t", "persons", "phase", "latency_ms")} for f in frames]}, indent=1))
    print(f"wrote {args.out / 'soak.json'}" + (f" and {args.out / 'soak.png'}" if drawn else
                                                " (no plot: matplotlib is not installed)"))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
