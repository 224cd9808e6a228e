"""exlow_pose_pose: tracked persons in, 2D skeletons out (PTEN over per-track 5-frame crop windows).

Subscribes  tracked_persons (exlow_pose_msgs/TrackedPersonArray)
            image (sensor_msgs/Image, only with publish_annotated_image)
Publishes   skeletons (exlow_pose_msgs/Skeleton2DArray: one per described frame, empty when nobody is there;
            header = the described frame's, two frames behind the input in centre mode. A track the tracker
            missed for a frame or two is described at its own window's centre, an older frame: those
            skeletons come in an extra array with that frame's header)
            annotated_image (sensor_msgs/Image), skeleton_markers (visualization_msgs/MarkerArray)
            /diagnostics, and the optional pipeline ack (std_msgs/Header)
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from pathlib import Path

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from exlow_pose_msgs.msg import Skeleton2DArray, TrackedPersonArray
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..backends import create_backend
from ..conversions import StampOrder, observations_from_message, skeleton_array, stamp_key
from ..drawing import draw_skeletons
from ..image_conversion import ImageConversionError, image_to_numpy, numpy_to_image, to_bgr8
from ..keypoints import COCO17_LIMBS
from ..parameters import declare
from ..pose_estimator import PoseEstimator, SkeletonEstimate
from ..shipped_files import default_model, keypoint_calibration
from ..windows import OUTPUT_DELAY
from .diagnostics import FaultLog, RateWindow, status
from .runner import run_node

NODE = "pose_node"
RELIABLE = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)
IMAGES_KEPT = 30  # source images kept for drawing the (delayed) described frame


class PoseNode(Node):
    def __init__(self) -> None:
        super().__init__("exlow_pose_pose")
        p = declare(self, NODE)
        self.params = p
        model = Path(p["model_path"]) if p["model_path"] else default_model()
        backend = create_backend(p["backend"], model, threads=p["threads"], precision=p["precision"],
                                 cache_dir=p["engine_cache_dir"] or None, log=self.get_logger().info)
        self.estimator = PoseEstimator(backend, p["output_mode"], p["max_missing_frames"], p["max_tracks"],
                                       p["keypoint_source"], keypoint_calibration(p["keypoint_calibration"]))
        self.delay = OUTPUT_DELAY[p["output_mode"]]
        self.skeletons = self.create_publisher(Skeleton2DArray, "skeletons", RELIABLE)
        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.markers = self.create_publisher(MarkerArray, "skeleton_markers", 10) if p["publish_markers"] else None
        self.annotated = None
        self.images: OrderedDict[tuple[int, int], Image] = OrderedDict()
        if p["publish_annotated_image"]:
            self.annotated = self.create_publisher(Image, "annotated_image", 10)
            image_qos = QoSProfile(depth=IMAGES_KEPT, reliability=ReliabilityPolicy.RELIABLE) if p["reliable_image"] \
                else qos_profile_sensor_data
            self.create_subscription(Image, "image", self.on_image, image_qos)
        self.ack = self.create_publisher(Header, p["ack_topic"], RELIABLE) if p["ack_topic"] else None
        self.create_subscription(TrackedPersonArray, "tracked_persons", self.on_persons, RELIABLE)
        # Headers and sizes of the last inputs: the described frame of an input is `delay` frames back.
        self.recent: deque[tuple[Header, int, int]] = deque(maxlen=self.delay + 1)
        # Skeletons of frames newer than the one described now (runs that ended early), by stamp.
        self.ahead: dict[tuple[int, int], list[SkeletonEstimate]] = {}
        self.inputs, self.latency, self.inference, self.publish_ms = (RateWindow(), RateWindow(), RateWindow(),
                                                                      RateWindow())
        self.faults = FaultLog(self.get_logger())
        self.order = StampOrder()
        self.frame_size: tuple[int, int] | None = None
        self.create_timer(p["diagnostics_period"], self.publish_diagnostics)
        self.get_logger().info(f"pose model {model.name} on {backend.describe()}, output {p['output_mode']}")

    def on_image(self, message: Image) -> None:
        key = stamp_key(message.header)
        self.images.pop(key, None)  # a repeated stamp (a looped bag) counts as the newest image
        self.images[key] = message
        while len(self.images) > IMAGES_KEPT:
            self.images.popitem(last=False)

    def on_persons(self, message: TrackedPersonArray) -> None:
        started = time.monotonic()
        key = stamp_key(message.header)
        previous, order = self.order.last, self.order.check(key)
        if order == "late":
            # Windows must follow capture order; a repeated or older frame would corrupt every track's history.
            self.faults.report("stamp order", f"tracked persons stamped {key} arrive after {previous}; dropped")
            return
        if order == "restart":
            self.faults.report("stream restart", f"stamps jumped back from {previous} to {key}: a new stream (a looped "
                               "bag, a restarted camera); every track starts again", "warning")
            self.estimator.reset()
            self.ahead.clear()
            self.recent.clear()
        size = (message.image_width, message.image_height)
        if self.frame_size is not None and size != self.frame_size:
            self.faults.report("frame size", f"frame size changed from {self.frame_size[0]}x{self.frame_size[1]} "
                               f"to {size[0]}x{size[1]} at stamp {key}", "warning")
        self.frame_size = size
        observations, errors = observations_from_message(message)
        for error in errors:
            self.faults.report(error.kind, f"person dropped: {error}")
        inference_started = time.monotonic()
        overflowed = self.estimator.windows.overflowed
        estimates = self.estimator.process(observations)
        if self.estimator.windows.overflowed > overflowed:
            self.faults.report("too many tracks", f"{len(observations)} persons in the frame stamped {key} and "
                               f"{self.estimator.active_tracks} tracks kept: over max_tracks="
                               f"{self.estimator.windows.max_tracks}, the least recently seen histories were dropped",
                               "warning")
        self.inference.add((time.monotonic() - inference_started) * 1000.0)
        self.recent.append((message.header, message.image_width, message.image_height))
        published = time.monotonic()
        self.publish(estimates)
        self.publish_ms.add((time.monotonic() - published) * 1000.0)
        if self.ack is not None:
            self.ack.publish(message.header)
        self.inputs.add()
        self.latency.add((time.monotonic() - started) * 1000.0)

    def publish(self, estimates: list[SkeletonEstimate]) -> None:
        if len(self.recent) <= self.delay:
            return  # the first described frame is not complete yet
        header, width, height = self.recent[0]
        current = stamp_key(header)
        by_frame: dict[tuple[int, int], list[SkeletonEstimate]] = {current: self.ahead.pop(current, [])}
        frames = {current: (header, width, height)}
        for frame in [f for f in self.ahead if f < current]:  # its own input never came: publish it late
            by_frame[frame] = self.ahead.pop(frame)
            frames[frame] = (by_frame[frame][0].stamp, width, height)
        for estimate in estimates:
            frame = stamp_key(estimate.stamp)
            if frame > current:  # a run that ended early: its frame is published with the rest of that frame
                self.ahead.setdefault(frame, []).append(estimate)
                continue
            by_frame.setdefault(frame, []).append(estimate)
            frames.setdefault(frame, (estimate.stamp, width, height))  # a track with gaps: an older frame
        for frame, group in sorted(by_frame.items()):
            described, frame_width, frame_height = frames[frame]
            self.skeletons.publish(skeleton_array(described, frame_width, frame_height, group))
            if frame == current:  # late skeletons of tracks with gaps: the older frame was drawn already
                self.publish_visuals(described, group)

    def publish_visuals(self, header: Header, estimates: list[SkeletonEstimate]) -> None:
        if self.annotated is not None and (image := self.images.get(stamp_key(header))) is not None:
            try:
                pixels = to_bgr8(image_to_numpy(image), image.encoding, "the annotated image")
            except ImageConversionError as error:
                self.faults.report(error.kind, f"annotated image for stamp {stamp_key(header)} skipped: {error}")
            else:
                self.annotated.publish(numpy_to_image(draw_skeletons(pixels, estimates), "bgr8", header))
        if self.markers is not None:
            self.markers.publish(self.marker_array(header, estimates))

    def marker_array(self, header: Header, estimates: list[SkeletonEstimate]) -> MarkerArray:
        """Limbs on a plane marker_depth metres in front of the camera (optical frame), marker_scale m/px."""
        scale, depth = self.params["marker_scale"], self.params["marker_depth"]
        width, height = self.recent[-1][1], self.recent[-1][2]
        markers = [Marker(header=header, ns="exlow_pose", action=Marker.DELETEALL)]
        for estimate in estimates:
            marker = Marker(header=header, ns="exlow_pose", id=int(estimate.track_id) % 2**31, type=Marker.LINE_LIST,
                            action=Marker.ADD, lifetime=Duration(sec=0, nanosec=500_000_000))
            marker.pose.orientation.w = 1.0
            marker.scale.x = max(scale * 2.0, 1e-4)
            marker.color = ColorRGBA(r=0.2, g=0.8, b=1.0, a=1.0)
            for a, b in COCO17_LIMBS:
                for index in (a, b):
                    u, v = estimate.keypoints[index]
                    marker.points.append(Point(x=float((u - width / 2) * scale), y=float((v - height / 2) * scale),
                                               z=float(depth)))
            markers.append(marker)
        return MarkerArray(markers=markers)

    def publish_diagnostics(self) -> None:
        self.diagnostics.publish(status(self, "pose", {
            "backend": self.estimator.backend.describe(), "input rate (Hz)": f"{self.inputs.rate():.2f}",
            "latency per frame (ms)": f"{self.latency.mean():.1f}", "inference (ms)": f"{self.inference.mean():.1f}",
            "publish (ms)": f"{self.publish_ms.mean():.2f}",
            "active tracks": self.estimator.active_tracks, **self.faults.values()},
            stale_after=5.0, idle=self.inputs.idle_seconds()))


def main(argv: list[str] | None = None) -> int:
    return run_node(NODE, __doc__.strip().splitlines()[0], PoseNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
