"""exlow_pose_tracker: images in, tracked persons with their 16x16 crops out.

Subscribes  image (sensor_msgs/Image; or image/compressed, sensor_msgs/CompressedImage)
Publishes   tracked_persons (exlow_pose_msgs/TrackedPersonArray, one per image, empty when nobody is seen)
            /diagnostics
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from exlow_pose_msgs.msg import TrackedPersonArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ..conversions import tracked_person_message
from ..crop import cut_crop, square_region
from ..image_conversion import ImageConversionError, image_to_numpy
from ..parameters import declare
from ..person_tracker import PersonTracker
from .diagnostics import RateWindow, status
from .runner import run_node

NODE = "tracker_node"
OUTPUT_QOS = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)


def default_detector() -> Path:
    assets = Path(os.environ.get("EXLOW_POSE_ASSETS", Path(__file__).resolve().parents[2] / "assets"))
    return assets / "models" / "yolo11n-pose.pt"


def to_bgr(pixels: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "bgr8":
        return pixels
    if encoding == "rgb8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if encoding == "mono8":
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    raise ImageConversionError(f"the detector needs a colour or mono8 image, not {encoding!r}")


class TrackerNode(Node):
    def __init__(self) -> None:
        super().__init__("exlow_pose_tracker")
        p = declare(self, NODE)
        self.tracker = PersonTracker(p["detector_model"] or default_detector(), p["image_size"], p["confidence"],
                                     p["iou"], p["tracker"], p["device"], p["max_persons"])
        self.publisher = self.create_publisher(TrackedPersonArray, "tracked_persons", OUTPUT_QOS)
        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        input_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if p["reliable_input"] \
            else qos_profile_sensor_data
        if p["compressed_input"]:
            self.create_subscription(CompressedImage, "image/compressed", self.on_compressed, input_qos)
        else:
            self.create_subscription(Image, "image", self.on_image, input_qos)
        self.inputs, self.detector_ms, self.crop_publish_ms = RateWindow(), RateWindow(), RateWindow()
        self.persons_published = 0
        self.last_stamp: tuple[int, int] | None = None
        self.create_timer(1.0, self.publish_diagnostics)
        self.get_logger().info(f"tracking persons with {Path(p['detector_model'] or default_detector()).name} at "
                               f"imgsz {p['image_size']} ({p['tracker']})")

    def on_image(self, message: Image) -> None:
        try:
            rgb_or_bgr = image_to_numpy(message)
            bgr = to_bgr(rgb_or_bgr, message.encoding)
        except ImageConversionError as error:
            self.get_logger().error(f"image dropped: {error}", throttle_duration_sec=5.0)
            return
        self.process(message.header, bgr)

    def on_compressed(self, message: CompressedImage) -> None:
        bgr = cv2.imdecode(np.frombuffer(bytes(message.data), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            self.get_logger().error(f"compressed image ({message.format!r}, {len(message.data)} bytes) does not "
                                    "decode; dropped", throttle_duration_sec=5.0)
            return
        self.process(message.header, bgr)

    def process(self, header, bgr: np.ndarray) -> None:
        height, width = bgr.shape[:2]
        if height == 0 or width == 0:
            self.get_logger().error(f"empty image {width}x{height} dropped", throttle_duration_sec=5.0)
            return
        stamp = (header.stamp.sec, header.stamp.nanosec)
        if self.last_stamp is not None and stamp <= self.last_stamp:
            self.get_logger().warn(f"image stamp {stamp} not after the previous {self.last_stamp}; tracking it anyway",
                                   throttle_duration_sec=5.0)
        self.last_stamp = stamp
        started = time.monotonic()
        tracked_boxes = self.tracker.track(bgr)
        detected = time.monotonic()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        persons = []
        for tracked in tracked_boxes:
            try:
                region = square_region(tracked.box)
            except ValueError as error:
                self.get_logger().error(f"track {tracked.track_id} skipped: {error}", throttle_duration_sec=5.0)
                continue
            persons.append(tracked_person_message(tracked, region, cut_crop(rgb, region), header))
        self.publisher.publish(TrackedPersonArray(header=header, image_width=width, image_height=height,
                                                  persons=persons))
        self.persons_published += len(persons)
        self.inputs.add()
        self.detector_ms.add((detected - started) * 1000.0)
        self.crop_publish_ms.add((time.monotonic() - detected) * 1000.0)

    def publish_diagnostics(self) -> None:
        self.diagnostics.publish(status(self, "tracker", {
            "input rate (Hz)": f"{self.inputs.rate():.2f}", "detector (ms)": f"{self.detector_ms.mean():.1f}",
            "crop and publish (ms)": f"{self.crop_publish_ms.mean():.2f}",
            "persons published": self.persons_published}, stale_after=5.0, idle=self.inputs.idle_seconds()))


def main(argv: list[str] | None = None) -> int:
    return run_node(NODE, __doc__.strip().splitlines()[0], TrackerNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
