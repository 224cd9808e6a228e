"""Test-wide settings: each test run talks DDS in its own domain, on this machine only."""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

# Set before anything imports rclpy; child processes inherit it. EXLOW_TEST_DOMAIN_ID pins it.
os.environ["ROS_DOMAIN_ID"] = os.environ.get("EXLOW_TEST_DOMAIN_ID") or str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = Path(__file__).resolve().parent
# Real inputs unpacked by scripts/setup.sh: OpenCV's vtest.avi and the YOLO11n-pose weights.
VTEST = REPO / "assets" / "videos" / "vtest.avi"
DETECTOR = REPO / "assets" / "models" / "yolo11n-pose.pt"
sys.path.insert(0, str(TEST_DIR))


def console_scripts_in_setup_py() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return dict(tuple(part.strip() for part in entry.split("=")) for entry in entries)
    raise AssertionError("setup.py declares no console_scripts")


class RosTestNode:
    """A node in its own rclpy context, with an executor to spin it."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done, timeout: float, check=lambda: None) -> bool:
        """Spin until `done()` is true (True) or `timeout` seconds pass (False); `check()` may raise."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            check()
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def ros(request):
    """A fresh rclpy context and node for one test, shut down afterwards."""
    name = "test_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:48]
    test_node = RosTestNode(name)
    try:
        yield test_node
    finally:
        test_node.close()
