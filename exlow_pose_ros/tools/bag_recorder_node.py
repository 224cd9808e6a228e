"""exlow_pose_recorder: records topics into a rosbag2 bag (MCAP by default) without rosbag2.

Subscribes raw (serialized CDR bytes) to every listed topic and writes the bytes as received through
exlow_pose_ros.tools.bag_io (the rosbags package): nothing is deserialised, so any message type whose Python
class is installed can be recorded, and what is in the bag is exactly what was on the wire.

QoS: per topic, reliable when every publisher found offers reliable, best effort otherwise (as ros2 bag
record does): a reliable subscription would not match a best-effort publisher (the video source's default
sensor-data images), and a best-effort one would get only best-effort delivery from a reliable publisher
(large images then get lost). So a topic is subscribed once its first publisher is seen (polled), and its
publishers' QoS is stored in the bag. Durability is transient local only when every publisher offers it
(to catch latched messages).
"""

from __future__ import annotations

import importlib
import struct
import time
from datetime import datetime

import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import WriterError
from std_msgs.msg import Header

from ..nodes.parameters import declare
from ..nodes.runner import run_node
from .bag_io import BagError, BagWriter, MessageTypes, cdr_header, parse_topic_entry

NODE_NAME = "bag_recorder_node"
DESCRIPTION = ("Records topics into a rosbag2 bag (MCAP or sqlite3) with the rosbags package, storing each "
               "message's serialized bytes as received; optionally acknowledges recorded frames for the video "
               "source.")
DISCOVERY_POLL_S = 0.1
PENDING_POLL_S = 0.1


def _qos_time(duration: Duration) -> QosTime:
    sec, nsec = divmod(duration.nanoseconds, 1_000_000_000)
    return QosTime(sec, nsec)


def offered_qos(profile: QoSProfile) -> Qos:
    """A publisher's QoS as rosbag2 stores it (offered_qos_profiles), so `ros2 bag play` offers the same.
    The policy enums of rclpy and rosbags have the same values."""
    return Qos(QosHistory(int(profile.history)), profile.depth, QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), _qos_time(profile.deadline), _qos_time(profile.lifespan),
               QosLiveliness(int(profile.liveliness)), _qos_time(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


def message_class(msgtype: str) -> type:
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise BagError(f"message type {msgtype!r} is not installed here (no Python class {package}.msg.{name}); "
                       "install its package to record it") from None


class BagRecorderNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare(self, NODE_NAME)
        entries = [parse_topic_entry(entry) for entry in (p["topics"] or [])]
        if not entries:
            raise BagError("topics is empty: list the topics to record, e.g. -p topics:='[image_raw, skeletons]' "
                           "or topic:package/msg/Type entries (or leave it out: the default set)")
        wanted: dict[str, str | None] = {}
        for topic, msgtype in entries:
            wanted[self.resolve_topic_name(topic)] = msgtype
        types = self._discover_types(wanted, p["discovery_timeout"])

        self._types = MessageTypes()
        classes = {topic: message_class(msgtype) for topic, msgtype in types.items()}
        self._header_topics = {topic for topic, msgtype in types.items() if self._types.has_header(msgtype)}
        self._ack_source = self.resolve_topic_name(p["ack_source_topic"]) if p["ack_source_topic"] else None
        self._ack_publisher = None
        if p["ack_topic"]:
            if self._ack_source not in types:
                raise BagError(f"ack_source_topic {p['ack_source_topic']!r} must be one of the recorded topics "
                               f"{sorted(types)}")
            if self._ack_source not in self._header_topics:
                raise BagError(f"ack_source_topic {self._ack_source} has type {types[self._ack_source]}, which does "
                               "not start with a std_msgs/Header to acknowledge")
            self._ack_publisher = self.create_publisher(
                Header, p["ack_topic"], QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

        output = p["output"] or f"exlow_pose_{datetime.now():%Y%m%d_%H%M%S}"
        self._bag = BagWriter(output, p["storage"], p["overwrite"], types=self._types)
        self._total = 0
        self._write_errors = 0
        # With reliability auto a topic is subscribed once a publisher is seen, so the QoS can match it.
        self._classes = classes
        self._pending: dict[str, str] = {}
        for topic, msgtype in types.items():
            if p["reliability"] != "auto" or self.get_publishers_info_by_topic(topic):
                self._subscribe(topic, msgtype)
            else:
                self._pending[topic] = msgtype
        if self._pending:
            self.get_logger().info(f"waiting for publishers of {', '.join(self._pending)}")
            self._pending_timer = self.create_timer(PENDING_POLL_S, self._subscribe_when_published)
        if p["max_duration"] > 0:
            self._limit_timer = self.create_timer(p["max_duration"], lambda: self._stop("max_duration reached"))
        self.get_logger().info(f"recording {len(types)} topic(s) into {self._bag.path} ({p['storage']}): "
                               + ", ".join(f"{t} ({m})" for t, m in types.items()))

    def _discover_types(self, wanted: dict[str, str | None], timeout: float) -> dict[str, str]:
        """Types of the topics given without one, from the ROS graph, waiting at most `timeout` seconds. The
        graph is filled by the middleware's own threads, so polling without spinning sees it."""
        deadline = time.monotonic() + timeout
        while True:
            graph = dict(self.get_topic_names_and_types())
            missing = [topic for topic, msgtype in wanted.items() if msgtype is None and not graph.get(topic)]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(DISCOVERY_POLL_S)
        if missing:
            raise BagError(f"no publisher of {', '.join(missing)} appeared within discovery_timeout="
                           f"{timeout:g} s; start the publishers first or give the types as topic:package/msg/Type")
        types = {}
        for topic, msgtype in wanted.items():
            if msgtype is None:
                found = graph[topic]
                if len(found) > 1:
                    raise BagError(f"topic {topic} carries several types {found}; name one as {topic}:TYPE")
                msgtype = found[0]
            types[topic] = msgtype
        return types

    def _subscribe_when_published(self) -> None:
        for topic, msgtype in list(self._pending.items()):
            if self.get_publishers_info_by_topic(topic):
                del self._pending[topic]
                self._subscribe(topic, msgtype)
        if not self._pending:
            self._pending_timer.cancel()

    def _subscribe(self, topic: str, msgtype: str) -> None:
        publishers = self.get_publishers_info_by_topic(topic)
        mode = self.p["reliability"]
        if mode == "auto":
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in publishers)
        else:
            reliable = mode == "reliable"
        latched = bool(publishers) and all(
            i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in publishers)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.p["qos_depth"],
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        self._bag.add_topic(topic, msgtype, [offered_qos(i.qos_profile) for i in publishers])
        ours = self._types.definition(msgtype)[1]
        for other in {str(i.topic_type_hash) for i in publishers} - {ours}:
            if other.startswith("RIHS01_"):  # a publisher built from another definition of the type
                self.get_logger().warning(f"{topic}: a publisher's {msgtype} has type hash {other}, the installed "
                                          f"definition written into the bag {ours}; the bag may not decode")

        def incompatible(event, topic: str = topic) -> None:
            self.get_logger().error(
                f"a publisher of {topic} has QoS incompatible with this recorder's ({event.last_policy_kind}); its "
                "messages are not recorded (set reliability:=best_effort to match best-effort publishers)",
                throttle_duration_sec=5.0)

        self.create_subscription(self._classes[topic], topic, lambda data, topic=topic: self._on_message(topic, data),
                                 qos, raw=True,
                                 event_callbacks=SubscriptionEventCallbacks(incompatible_qos=incompatible))
        self.get_logger().info(f"{topic}: {'reliable' if reliable else 'best effort'}"
                               f"{', transient local' if latched else ''}, {len(publishers)} publisher(s) now")

    def _on_message(self, topic: str, data: bytes) -> None:
        if not self._bag.is_open:
            return
        receive_ns = self.get_clock().now().nanoseconds
        header = None
        if topic in self._header_topics:
            try:
                header = cdr_header(data)
            except BagError as error:
                self.get_logger().error(f"{topic}: cannot read the header of a {len(data)}-byte message ({error}); "
                                        "recording it at its receive time", throttle_duration_sec=5.0)
        stamp = receive_ns
        if header is not None and self.p["timestamp"] == "header":
            header_ns = header[0] * 1_000_000_000 + header[1]
            if header_ns >= 0:
                stamp = header_ns
            else:  # a bag timestamp is unsigned
                self.get_logger().error(f"{topic}: header stamp sec={header[0]} nanosec={header[1]} is before 1970; "
                                        "recording the message at its receive time", throttle_duration_sec=5.0)
        try:
            self._bag.write(topic, stamp, data)
        except (WriterError, OSError, ValueError, struct.error) as error:
            self._write_errors += 1
            self.get_logger().error(f"{topic}: writing to {self._bag.path} failed ({error}); message lost "
                                    f"({self._write_errors} so far)", throttle_duration_sec=5.0)
            return
        self._total += 1
        if self._ack_publisher is not None and topic == self._ack_source and header is not None:
            sec, nanosec, frame_id = header
            self._ack_publisher.publish(Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id))
        if self.p["max_messages"] and self._total >= self.p["max_messages"]:
            self._stop("max_messages reached")

    def _stop(self, reason: str) -> None:
        """A recording limit: finish the bag and end the process (status 0)."""
        if self._bag.is_open:
            self.get_logger().info(f"{reason}; stopping")
            self.close()
            rclpy.shutdown(context=self.context)

    def close(self) -> None:
        """Finish the bag (index, summary, metadata.yaml) so it reads back complete; logs the counts. Called
        after the context is shut down (SIGINT, SIGTERM, a limit): no ROS calls but logging here."""
        if not self._bag.is_open:
            return
        for topic, msgtype in self._pending.items():  # never published: still listed in the bag, with 0 messages
            self._bag.add_topic(topic, msgtype)
        self._pending.clear()
        self._bag.close()
        bag = self._bag
        span = (bag.last_ns - bag.first_ns) / 1e9 if bag.first_ns is not None else 0.0
        counts = ", ".join(f"{topic} {count}" for topic, count in bag.counts.items())
        errors = f", {self._write_errors} write errors" if self._write_errors else ""
        # After SIGINT/SIGTERM the node's logger cannot reach /rosout any more (and says so): log beside it.
        logger = self.get_logger() if self.context.ok() else rclpy.logging.get_logger(f"{self.get_name()}.final")
        logger.info(f"bag {bag.path} closed: {self._total} messages over {span:.2f} s{errors}; {counts}")


def main() -> int:
    return run_node(NODE_NAME, DESCRIPTION, BagRecorderNode)


if __name__ == "__main__":
    raise SystemExit(main())
