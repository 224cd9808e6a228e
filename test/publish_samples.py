"""Publishes ros_samples for every exlow_pose_msgs type, latched, then spins until shut down.

Run as a separate process by test_messages_over_dds.py: exit status 0 means it shut down cleanly on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros_samples import interface_types, samples, topic_for


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args()

    qos = QoSProfile(depth=args.count, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    rclpy.init()
    node = rclpy.create_node("exlow_sample_publisher")
    publishers = []
    for message_type in interface_types("exlow_pose_msgs"):
        publisher = node.create_publisher(message_type, topic_for(message_type, args.prefix), qos)
        for message in samples(message_type, args.seed, args.count):
            publisher.publish(message)
        publishers.append(publisher)
    print("published", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
