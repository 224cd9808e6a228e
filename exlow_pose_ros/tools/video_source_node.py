"""exlow_pose_video_source: publishes the frames of a video file as sensor_msgs/Image on `image_raw`, with
`image_raw/compressed` (JPEG) and `camera_info` (a nominal pinhole: a video file carries no calibration).

Pacing is one frame per timer tick (rcl timers do not drift); with `pipeline_ack_topic` a frame is only
published while fewer than `max_unacked_frames` frames wait for the pipeline's ack. Reading and stamping
live in exlow_pose_ros.tools.video_source.
"""

from __future__ import annotations

import time

import cv2
import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from ..nodes.image_conversion import numpy_to_image
from ..nodes.parameters import declare
from ..nodes.runner import run_node
from .video_source import AckWindow, VideoReader, VideoSourceError, publish_rate, to_encoding, video_stamp_ns

NODE_NAME = "video_source_node"
DESCRIPTION = ("Publishes the frames of a video file (OpenCV) as sensor_msgs/Image on image_raw, paced at the "
               "file's rate, a given rate or as fast as the pipeline acknowledges.")
ACK_POLL_PERIOD_S = 0.01  # with rate max and acks, frames go out from the ack callback; the timer only checks timeouts
WAIT_POLL_PERIOD_S = 0.05

WAITING, PUBLISHING, DRAINING, DONE = "waiting", "publishing", "draining", "done"  # states, in this order


def stamp_to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def nominal_camera_info(header: Header, width: int, height: int, focal_length: float) -> CameraInfo:
    """A distortion-free pinhole with the principal point at the image centre and fx = fy = focal_length px (0:
    the image width, about 53 degrees across). Not a calibration: it lets RViz's Camera display and the pose
    node's markers agree on where each pixel's ray goes."""
    f = focal_length or float(width)
    cx, cy = width / 2.0, height / 2.0
    return CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


class VideoSourceNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare(self, NODE_NAME)
        self._reader = VideoReader(p["video_path"], start_frame=p["start_frame"], fps=p["video_fps"])
        self.info = self._reader.info
        self._rate = publish_rate(p["rate"], self.info.fps)
        reliability = ReliabilityPolicy.RELIABLE if p["reliable"] else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos_depth"], reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        self._publisher = self.create_publisher(Image, "image_raw", qos)
        self._compressed = self.create_publisher(CompressedImage, "image_raw/compressed", qos) \
            if p["publish_compressed"] else None
        self._camera_info = self.create_publisher(CameraInfo, "camera_info", qos)

        self._acks: AckWindow | None = None
        if p["pipeline_ack_topic"]:
            self._acks = AckWindow(p["max_unacked_frames"], p["ack_timeout"])
            ack_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(Header, p["pipeline_ack_topic"], self._on_ack, ack_qos)

        self._state = WAITING if p["wait_for_subscribers"] > 0 else PUBLISHING
        self._started = time.monotonic()
        self._start_ns: int | None = None  # stamp of the first published frame (stamp_source video)
        self._loop_offset = 0  # frames of the completed passes, so stamps keep increasing across loops
        self._published = 0
        self._published_this_pass = 0
        self._decode_failures = 0
        self._first_index: int | None = None  # lowest and highest file index published
        self._last_index: int | None = None
        self._last_stamp_ns: int | None = None
        self._passes = 1
        self._publish_began: float | None = None

        self._timer = None
        if self._state == WAITING:
            self._wait_timer = self.create_timer(WAIT_POLL_PERIOD_S, self._wait_for_subscribers)
        else:
            self._start_publishing()
        rate_text = "as fast as possible" if self._rate is None else f"{self._rate:g} frames/s"
        self.get_logger().info(
            f"publishing {self.info.path} ({self.info.width}x{self.info.height}, {self.info.fps:g} fps, "
            f"{self.info.frame_count or 'unknown number of'} frames) from frame {p['start_frame']} on "
            f"{self._publisher.topic_name} as {p['encoding']} ({'reliable' if p['reliable'] else 'best effort'}), "
            f"{rate_text}" + (f", acks on {p['pipeline_ack_topic']}" if self._acks else ""))

    # --- state machine, driven by the timer and the ack callback

    def _wait_for_subscribers(self) -> None:
        matched = self._publisher.get_subscription_count()
        if matched >= self.p["wait_for_subscribers"]:
            self.get_logger().info(f"{matched} subscriber(s) matched; publishing")
        elif time.monotonic() - self._started > self.p["wait_for_subscribers_timeout"]:
            self.get_logger().warning(
                f"only {matched} of wait_for_subscribers={self.p['wait_for_subscribers']} subscribers after "
                f"{self.p['wait_for_subscribers_timeout']:g} s; publishing anyway")
        else:
            return
        self._wait_timer.cancel()
        self._state = PUBLISHING
        self._start_publishing()
        self._tick()  # the first frame now, not one period later

    def _start_publishing(self) -> None:
        # rate max without acks: a zero-period timer (always ready), so other callbacks still run in between.
        period = (ACK_POLL_PERIOD_S if self._acks else 0.0) if self._rate is None else 1.0 / self._rate
        self._timer = self.create_timer(period, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._acks is not None:
            self._expire_acks(now)
        if self._state == PUBLISHING:
            if self._rate is None and self._acks is not None:
                self._publish_while_allowed()
            elif self._acks is None or not self._acks.full():
                self._publish_next()
        if self._state == DRAINING and (self._acks is None or not self._acks.pending):
            self._finish()

    def _expire_acks(self, now: float) -> None:
        assert self._acks is not None
        expired = self._acks.expire(now)
        if expired:
            self.get_logger().warning(
                f"no ack on {self.p['pipeline_ack_topic']} within ack_timeout={self.p['ack_timeout']:g} s for "
                f"{len(expired)} frame(s) (first stamped {expired[0] / 1e9:.9f}); going on",
                throttle_duration_sec=5.0)

    def _on_ack(self, header: Header) -> None:
        assert self._acks is not None
        stamp_ns = stamp_to_ns(header.stamp)
        if self._last_stamp_ns is None or stamp_ns > self._last_stamp_ns:
            self.get_logger().error(
                f"ack on {self.p['pipeline_ack_topic']} for stamp {stamp_ns / 1e9:.9f}, which no published frame "
                f"has (last published {self._last_stamp_ns}); is another source acknowledged on this topic?",
                throttle_duration_sec=5.0)
            return
        self._acks.ack(stamp_ns)
        if self._state == PUBLISHING and self._rate is None:
            self._publish_while_allowed()
        elif self._state == DRAINING and not self._acks.pending:
            self._finish()

    def _publish_while_allowed(self) -> None:
        assert self._acks is not None
        while self._state == PUBLISHING and not self._acks.full() and self._publish_next():
            pass

    # --- frames

    def _next_frame(self):
        """The next decodable frame, looping when asked; None at the end."""
        while True:
            frame = self._reader.read()
            if frame is None:
                if not (self.p["loop"] and self._published_this_pass > 0):
                    return None
                self._loop_offset += self._reader.position - self.p["start_frame"]
                self._published_this_pass = 0
                self._passes += 1
                try:
                    self._reader.rewind()
                except (VideoSourceError, OSError) as error:  # the file changed under us: end here
                    self.get_logger().error(f"cannot loop: {error}")
                    return None
                continue
            if frame.image is None:
                self._decode_failures += 1
                self.get_logger().error(
                    f"frame {frame.index} of {self.info.path} failed to decode; skipped "
                    f"({self._decode_failures} so far)", throttle_duration_sec=5.0)
                continue
            return frame

    def _publish_next(self) -> bool:
        """Publish one frame; False (and the end handled) when there is none left."""
        if self.p["max_frames"] and self._published >= self.p["max_frames"]:
            self._end()
            return False
        frame = self._next_frame()
        if frame is None:
            self._end()
            return False
        if self.p["stamp_source"] == "video":
            if self._start_ns is None:
                start_time = self.p["start_time"]
                self._start_ns = round(start_time * 1e9) if start_time >= 0 else self.get_clock().now().nanoseconds
            number = frame.index - self.p["start_frame"] + self._loop_offset
            stamp_ns = video_stamp_ns(self._start_ns, number, self.info.fps)
        else:
            stamp_ns = self.get_clock().now().nanoseconds
        header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=self.p["frame_id"])
        message = numpy_to_image(to_encoding(frame.image, self.p["encoding"]), self.p["encoding"], header)
        self._publisher.publish(message)
        if self._compressed is not None:
            ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.p["jpeg_quality"]])
            if ok:
                self._compressed.publish(CompressedImage(header=header, format="jpeg", data=jpeg.tobytes()))
        self._camera_info.publish(nominal_camera_info(header, self.info.width, self.info.height,
                                                      self.p["focal_length"]))
        now = time.monotonic()
        if self._acks is not None:
            self._acks.sent(stamp_ns, now)
        if self._publish_began is None:
            self._publish_began = now
        self._published += 1
        self._published_this_pass += 1
        self._first_index = frame.index if self._first_index is None else min(self._first_index, frame.index)
        self._last_index = frame.index if self._last_index is None else max(self._last_index, frame.index)
        self._last_stamp_ns = stamp_ns
        return True

    def _end(self) -> None:
        """No more frames: wait for outstanding acks (DRAINING), then finish."""
        self._state = DRAINING
        if self._acks is None or not self._acks.pending:
            self._finish()

    def _finish(self) -> None:
        self._state = DONE
        if self._timer is not None:
            self._timer.cancel()
        self._reader.close()
        elapsed = time.monotonic() - (self._publish_began or time.monotonic())
        frames = (f"frames {self._first_index}-{self._last_index}" if self._published else "no frames")
        loops = f" over {self._passes} passes" if self._passes > 1 else ""
        acks = (f"; acks: {self._acks.acknowledged} acknowledged, {self._acks.timed_out} timed out"
                if self._acks is not None else "")
        rate = f" ({(self._published - 1) / elapsed:.1f} frames/s)" if elapsed > 0 and self._published > 1 else ""
        self.get_logger().info(
            f"end of video {self.info.path}: published {self._published} images ({frames}{loops}), "
            f"{self._decode_failures} failed to decode, in {elapsed:.2f} s{rate}{acks}; "
            + ("exiting (exit_at_end)" if self.p["exit_at_end"] else "staying alive (exit_at_end false)"))
        if self.p["exit_at_end"]:
            # A reliable subscriber still owed the last frames gets them before the process goes: on every
            # topic (a recorder under load once lost the last camera_info when only the images were awaited).
            for publisher in (self._publisher, self._compressed, self._camera_info):
                if publisher is not None:
                    publisher.wait_for_all_acked(Duration(seconds=5.0))
            rclpy.shutdown(context=self.context)  # rclpy.spin returns; run_node cleans up and returns 0

    def close(self) -> None:
        # Called after the context is shut down (SIGINT, SIGTERM, exit_at_end): no ROS calls here.
        self._reader.close()


def main() -> int:
    return run_node(NODE_NAME, DESCRIPTION, VideoSourceNode)


if __name__ == "__main__":
    raise SystemExit(main())
