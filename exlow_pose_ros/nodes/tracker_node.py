"""exlow_pose_tracker: images in, tracked persons with their 16x16 crops out.

Subscribes  image (sensor_msgs/Image; or image/compressed, sensor_msgs/CompressedImage)
Publishes   tracked_persons (exlow_pose_msgs/TrackedPersonArray, one per image, empty when nobody is seen)
            /diagnostics
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from exlow_pose_msgs.msg import TrackedPersonArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..core.assets import default_detector, tiny_detector
from ..core.crop import rgb_crop, square_region
from ..core.person_tracker import PersonTracker
from ..core.stream_guard import StreamGuard
from .conversions import InputError, check_box, stamp_key, tracked_person_message
from .diagnostics import FaultLog, RateWindow, report_stream_check, status
from .image_conversion import ImageConversionError, decode_compressed, image_to_numpy, to_bgr8
from .parameters import declare
from .runner import run_node

NODE = "tracker_node"
OUTPUT_QOS = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)


class TrackerNode(Node):
    def __init__(self) -> None:
        super().__init__("exlow_pose_tracker")
        p = self.parameters = declare(self, NODE, on_change=self.on_parameters)
        self.tracker = PersonTracker(p["detector_model"] or default_detector(), p["image_size"], p["confidence"],
                                     p["iou"], p["tracker"], p["device"], p["max_persons"],
                                     p["report_new_tracks"], p["detector_backend"],
                                     p["detector_export_dir"] or None, p["max_upscale"], p["detector_precision"],
                                     tiny_detector(p["tiny_detector_model"]), p["tiny_min_upscale"],
                                     tile_size=p["tile_size"])
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
        self.faults = FaultLog(self.get_logger())
        self.guard = StreamGuard(on_restart=[self.tracker.reset])  # new ids, no motion across streams
        self.create_timer(1.0, self.publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))  # bag ends too
        self.get_logger().info(f"tracking persons with {Path(p['detector_model'] or default_detector()).name} at "
                               f"imgsz {p['image_size']} on {self.tracker.backend} ({self.tracker.backend_note}), "
                               f"max_upscale {p['max_upscale']} "
                               f"({p['tracker']}); tiny-people detector: {self.tiny_note()}")

    def tiny_note(self) -> str:
        second = self.tracker.tiny_detector
        if second is None:
            return "off"
        return (f"{second.path.name} on {second.backend} on frames enlarged >= "
                f"{self.tracker.tiny_min_upscale:g}x")

    def on_parameters(self, names: list[str]) -> None:
        """Apply a `ros2 param set` of a dynamic parameter: PersonTracker reads these at every frame, so the
        next frame runs with the new values (callbacks share one thread: no frame is half-way through)."""
        p = self.parameters
        self.tracker.confidence, self.tracker.iou = p["confidence"], p["iou"]
        self.tracker.max_persons = p["max_persons"]
        self.get_logger().info("now " + ", ".join(f"{name}={p[name]}" for name in names))

    def on_image(self, message: Image) -> None:
        try:
            # The pixel limit is checked on the header fields before image_to_numpy copies anything.
            pixels = image_to_numpy(message, self.parameters["max_image_pixels"])
            bgr = to_bgr8(pixels, message.encoding)
        except ImageConversionError as error:
            self.faults.report(error.kind, f"image stamped {stamp_key(message.header)} dropped: {error}")
            return
        self.process(message.header, bgr)

    def on_compressed(self, message: CompressedImage) -> None:
        try:
            bgr = decode_compressed(message.data, message.format, self.parameters["max_image_pixels"])
        except ImageConversionError as error:
            self.faults.report(error.kind, f"image stamped {stamp_key(message.header)} dropped: {error}")
            return
        self.process(message.header, bgr)

    def process(self, header: Header, bgr: np.ndarray) -> None:
        height, width = bgr.shape[:2]
        stamp = stamp_key(header)
        if report_stream_check(self.faults, self.guard.check(stamp, (width, height)), stamp, (width, height),
                               "image", "tracking starts again"):
            return
        started = time.monotonic()
        tracked_boxes = self.tracker.track(bgr)
        detected = time.monotonic()
        if self.tracker.found > len(tracked_boxes):
            self.faults.report("too many persons", f"{self.tracker.found} persons tracked in the image stamped "
                               f"{stamp}; max_persons={self.tracker.max_persons} keeps the highest scores", "warning")
        persons = []
        for tracked in tracked_boxes:
            try:
                check_box(tracked.track_id, tracked.box, (width, height))
                region = square_region(tracked.box)
            except InputError as error:
                self.faults.report(error.kind, f"track skipped: {error}")
                continue
            persons.append(tracked_person_message(tracked, region, rgb_crop(bgr, region), header))
        self.publisher.publish(TrackedPersonArray(header=header, image_width=width, image_height=height,
                                                  persons=persons))
        self.persons_published += len(persons)
        self.inputs.add()
        self.detector_ms.add((detected - started) * 1000.0)
        self.crop_publish_ms.add((time.monotonic() - detected) * 1000.0)

    def publish_diagnostics(self) -> None:
        self.diagnostics.publish(status(self, "tracker", {
            "input rate (Hz)": f"{self.inputs.rate():.2f}", "detector (ms)": f"{self.detector_ms.mean():.1f}",
            "detector backend": self.tracker.backend,
            "tiny-people detector": self.tiny_note(),
            "crop and publish (ms)": f"{self.crop_publish_ms.mean():.2f}",
            "persons published": self.persons_published, **self.faults.values()},
            stale_after=5.0, idle=self.inputs.idle_seconds()))


def main(argv: list[str] | None = None) -> int:
    return run_node(NODE, __doc__.strip().splitlines()[0], TrackerNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
