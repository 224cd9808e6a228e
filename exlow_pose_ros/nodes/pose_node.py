"""exlow_pose_pose: tracked persons in, 2D skeletons out (PTEN over per-track 5-frame crop windows).

Subscribes  tracked_persons (exlow_pose_msgs/TrackedPersonArray)
            image (sensor_msgs/Image; or image/compressed, sensor_msgs/CompressedImage; only with
            publish_annotated_image)
            camera_info (sensor_msgs/CameraInfo, only with publish_markers and use_camera_info)
Publishes   skeletons (exlow_pose_msgs/Skeleton2DArray): exactly one per input frame, in input order, with
            that frame's header, empty when nobody is there. In centre mode a frame is published once no
            track still owes it a skeleton (two frames later at most, or after flush_timeout without input)
            annotated_image (sensor_msgs/Image), annotated_image/compressed (sensor_msgs/CompressedImage),
            skeleton_markers (visualization_msgs/MarkerArray), skeleton_image_markers (ImageMarker),
            /diagnostics, and the optional pipeline ack (std_msgs/Header)
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPersonArray
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import ImageMarker, MarkerArray

from ..core.assets import default_model, keypoint_calibration
from ..core.backends import create_backend
from ..core.drawing import draw_skeletons
from ..core.pose_estimator import FrameSkeletons, FrameStream, PoseEstimator
from ..core.source_images import SourceImages
from ..core.stream_guard import StreamGuard, StreamIdle
from .conversions import observations_from_message, skeleton_array, stamp_key
from .diagnostics import FaultLog, RateWindow, report_stream_check, status
from .image_conversion import ImageConversionError, decode_compressed, image_to_numpy, numpy_to_image, to_bgr8
from .markers import skeleton_image_marker, skeleton_markers
from .parameters import declare
from .runner import run_node

NODE = "pose_node"
RELIABLE = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)
IMAGE_QUEUE_DEPTH = 30  # the reliable image subscription's queue
SHUTDOWN_ACK_TIMEOUT_S = 2.0  # longest wait at shutdown for subscribers to acknowledge the last frames
MAX_DRAWN_PIXELS = 7680 * 4320  # a compressed source image claiming more is not decoded (as the tracker's default)


class PoseNode(Node):
    def __init__(self) -> None:
        super().__init__("exlow_pose_pose")
        p = self.params = declare(self, NODE, on_change=self.on_parameters)
        model = Path(p["model_path"]) if p["model_path"] else default_model()
        self.backend = create_backend(p["backend"], model, threads=p["threads"], precision=p["precision"],
                                      cache_dir=p["engine_cache_dir"] or None, log=self.get_logger().info)
        self.calibration = keypoint_calibration(p["keypoint_calibration"])
        self.stream = self.new_stream()
        self.skeletons = self.create_publisher(Skeleton2DArray, "skeletons", RELIABLE)
        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.markers = self.create_publisher(MarkerArray, "skeleton_markers", 10) if p["publish_markers"] else None
        self.image_markers = self.create_publisher(ImageMarker, "skeleton_image_markers", 10) \
            if p["publish_image_markers"] else None
        self.camera_info: CameraInfo | None = None
        if p["publish_markers"] and p["use_camera_info"]:
            self.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos_profile_sensor_data)
        self.annotated = self.annotated_compressed = None
        self.images: SourceImages[tuple[int, int], Image | CompressedImage] = SourceImages()
        self.last_tracked: tuple[int, int] | None = None  # the newest frame of tracked persons handled
        if p["publish_annotated_image"]:
            self.annotated = self.create_publisher(Image, "annotated_image", 10)
            self.annotated_compressed = self.create_publisher(CompressedImage, "annotated_image/compressed", 10)
            image_qos = QoSProfile(depth=IMAGE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE) \
                if p["reliable_image"] else qos_profile_sensor_data
            if p["compressed_input"]:
                self.create_subscription(CompressedImage, "image/compressed", self.on_image, image_qos)
            else:
                self.create_subscription(Image, "image", self.on_image, image_qos)
        self.ack = self.create_publisher(Header, p["ack_topic"], RELIABLE) if p["ack_topic"] else None
        self.create_subscription(TrackedPersonArray, "tracked_persons", self.on_persons, RELIABLE)
        self.inputs, self.latency, self.inference, self.publish_ms = (RateWindow(), RateWindow(), RateWindow(),
                                                                      RateWindow())
        self.frames_published = self.annotated_images = 0
        self.faults = FaultLog(self.get_logger())
        self.guard = StreamGuard(on_restart=[self.flush_stream])
        self.idle = StreamIdle()
        # Wall-clock timers: with use_sim_time a bag's /clock stops at its end, and the owed frames must still go.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(p["diagnostics_period"], self.publish_diagnostics, clock=steady)
        self.create_timer(0.1, self.flush_when_idle, clock=steady)
        self.get_logger().info(f"pose model {model.name} on {self.backend.describe()}, output {p['output_mode']}")

    def new_stream(self) -> FrameStream[tuple[int, int]]:
        p = self.params
        estimator = PoseEstimator(self.backend, p["output_mode"], p["max_tracks"],
                                  p["keypoint_source"], self.calibration)
        return FrameStream(estimator, key=stamp_key)

    def on_parameters(self, names: list[str]) -> None:
        """A run-time change: the estimator's settings apply to new runs, so the owed frames go out first."""
        if {"keypoint_source", "output_mode", "max_tracks"} & set(names):
            self.flush_stream()
            self.stream = self.new_stream()
        self.get_logger().info("parameters changed: " + ", ".join(f"{n}={self.params[n]!r}" for n in names))

    def on_image(self, message: Image | CompressedImage) -> None:
        self.images.add(stamp_key(message.header), message)

    def on_camera_info(self, message: CameraInfo) -> None:
        self.camera_info = message

    def on_persons(self, message: TrackedPersonArray) -> None:
        started = time.monotonic()
        key = stamp_key(message.header)
        size = (message.image_width, message.image_height)
        # On a restart the guard has had the old stream's owed frames published first (flush_stream).
        if report_stream_check(self.faults, self.guard.check(key, size), key, size, "frame of tracked persons",
                               "every track starts again"):
            return
        observations, errors = observations_from_message(message)
        for error in errors:
            self.faults.report(error.kind, f"person dropped: {error}")
        inference_started = time.monotonic()
        estimator = self.stream.estimator
        dropped = estimator.dropped_persons
        complete = self.stream.push(message.header, observations, size)
        if estimator.dropped_persons > dropped:
            self.faults.report("too many tracks", f"{len(observations)} persons in the frame stamped {key}, "
                               f"max_tracks={estimator.max_tracks}: the "
                               f"{estimator.dropped_persons - dropped} lowest-scored got no skeleton", "warning")
        self.inference.add((time.monotonic() - inference_started) * 1000.0)
        published = time.monotonic()
        self.publish_frames(complete)
        self.last_tracked = key
        self.images.release(key, self.stream.waiting_keys())
        self.publish_ms.add((time.monotonic() - published) * 1000.0)
        if self.ack is not None:
            self.ack.publish(message.header)
        self.inputs.add()
        self.idle.frame(time.monotonic())
        self.latency.add((time.monotonic() - started) * 1000.0)

    def flush_stream(self) -> None:
        """Publish every owed frame; every track then starts again (a stream ended or restarted)."""
        self.publish_frames(self.stream.flush())
        if self.last_tracked is not None:  # every frame is drawn now: none of their images is needed
            self.images.release(self.last_tracked, waiting=())

    def flush_when_idle(self) -> None:
        timeout = self.params["flush_timeout"]
        if timeout > 0 and len(self.stream) and self.idle.stopped(time.monotonic(), timeout):
            self.flush_stream()

    def close(self) -> None:
        """At shutdown: the owed frames, while the context still lets them out."""
        try:
            self.flush_stream()
            # Reliable outputs are only delivered once acknowledged: leaving before that loses the last frames
            # whenever the machine is busy.
            for publisher in (self.skeletons, self.ack):
                if publisher is not None:
                    publisher.wait_for_all_acked(Duration(seconds=SHUTDOWN_ACK_TIMEOUT_S))
        except Exception as error:  # the context may be gone already (SIGINT): nothing left to save
            self.get_logger().debug(f"owed frames not published at shutdown: {error}")

    def publish_frames(self, frames: list[FrameSkeletons[tuple[int, int]]]) -> None:
        for frame in frames:
            width, height = frame.payload
            self.skeletons.publish(skeleton_array(frame.stamp, width, height, frame.skeletons))
            self.frames_published += 1
            self.publish_visuals(frame.stamp, width, height, frame.skeletons)

    def publish_visuals(self, header: Header, width: int, height: int, estimates: list) -> None:
        """Visual outputs are built only for topics someone subscribes to (a recorder counts), as image_transport
        does: drawing and JPEG-encoding a frame costs more than its skeletons."""
        if self.annotated is not None:
            self.publish_annotated(header, estimates)
        if subscribed(self.markers):
            self.markers.publish(skeleton_markers(header, width, height, estimates, self.params["marker_depth"],
                                                  self.params["marker_scale"], self.camera_info))
        if subscribed(self.image_markers):
            self.image_markers.publish(skeleton_image_marker(header, estimates))

    def publish_annotated(self, header: Header, estimates: list) -> None:
        raw, jpeg_wanted = subscribed(self.annotated), subscribed(self.annotated_compressed)
        if not (raw or jpeg_wanted):
            return
        key = stamp_key(header)
        image = self.images.get(key)
        if image is None:
            self.faults.report("missing source image", f"no source image stamped {key} (lost, or pushed out by "
                               f"more than {self.images.capacity} newer ones): no annotated image for it", "warning")
            return
        try:
            pixels = decode_compressed(image.data, image.format, MAX_DRAWN_PIXELS) \
                if isinstance(image, CompressedImage) else to_bgr8(image_to_numpy(image), image.encoding,
                                                                   "the annotated image")
        except ImageConversionError as error:
            self.faults.report(error.kind, f"annotated image for stamp {key} skipped: {error}")
            return
        drawn = draw_skeletons(pixels, estimates)
        self.annotated_images += 1
        if raw:
            self.annotated.publish(numpy_to_image(drawn, "bgr8", header))
        if jpeg_wanted:
            ok, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, int(self.params["jpeg_quality"])])
            if ok:
                self.annotated_compressed.publish(CompressedImage(header=header, format="jpeg",
                                                                  data=jpeg.tobytes()))

    def publish_diagnostics(self) -> None:
        self.diagnostics.publish(status(self, "pose", {
            "backend": self.backend.describe(), "input rate (Hz)": f"{self.inputs.rate():.2f}",
            "latency per frame (ms)": f"{self.latency.mean():.1f}", "inference (ms)": f"{self.inference.mean():.1f}",
            "publish (ms)": f"{self.publish_ms.mean():.2f}",
            "active tracks": self.stream.estimator.active_tracks, "frames published": self.frames_published,
            "annotated images drawn": self.annotated_images,
            "visual subscribers": sum(map(subscription_count, (self.annotated, self.annotated_compressed,
                                                               self.markers, self.image_markers))),
            "frames waiting": len(self.stream), "source images kept": len(self.images),
            "idle flush after (s)": f"{self.idle.idle_after(self.params['flush_timeout']):.2f}",
            **self.faults.values()},
            stale_after=5.0, idle=self.inputs.idle_seconds()))


def subscription_count(publisher) -> int:
    return 0 if publisher is None else publisher.get_subscription_count()


def subscribed(publisher) -> bool:
    return subscription_count(publisher) > 0


def main(argv: list[str] | None = None) -> int:
    return run_node(NODE, __doc__.strip().splitlines()[0], PoseNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
