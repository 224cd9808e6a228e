"""Shared by the test_robustness_* files: nodes run as processes whose log is read while they run, an
untrained pose model exported once per test session, and builders of (bad) input messages."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from exlow_pose_msgs.msg import PixelBox, TrackedPerson, TrackedPersonArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from exlow_pose_ros.core.crop import cut_crop, square_region
from exlow_pose_ros.nodes.image_conversion import numpy_to_image

# Every node log line and Python's output arrive at once, in order (no buffering in between).
NODE_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
            "RCUTILS_COLORIZED_OUTPUT": "0"}


def ros_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f"'{v}'" for v in value) + "]"
    return str(value)


# The video source and the recorder are tools (exlow_pose_ros/tools); the tracker and pose nodes are nodes.
TOOL_NODES = ("video_source_node", "bag_recorder_node")


def node_module(module: str) -> str:
    """The importable module of a node process: exlow_pose_ros.nodes.<module> or exlow_pose_ros.tools.<module>."""
    return f"exlow_pose_ros.{'tools' if module in TOOL_NODES else 'nodes'}.{module}"


def node_command(module: str, params: dict, namespace: str | None = None, node_name: str | None = None) -> list[str]:
    """The command line that runs exlow_pose_ros.nodes.<module> with these parameters and remappings."""
    command = [sys.executable, "-m", node_module(module), "--ros-args"]
    if namespace:
        command += ["-r", f"__ns:={namespace}"]
    if node_name:
        command += ["-r", f"__node:={node_name}"]
    for name, value in params.items():
        command += ["-p", f"{name}:={ros_value(value)}"]
    return command


class NodeProcess:
    """An exlow_pose node as a process; a thread collects its output lines so a test can wait for one."""

    def __init__(self, module: str, params: dict, cwd: Path, namespace: str | None = None,
                 env: dict[str, str] | None = None, node_name: str | None = None) -> None:
        command = node_command(module, params, namespace, node_name)
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=env or NODE_ENV)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def mark(self) -> int:
        """A position in the log; `since(mark)` gives what came after it."""
        return len(self.lines)

    def since(self, mark: int = 0) -> str:
        return "\n".join(self.lines[mark:])

    def check(self) -> None:
        """Raise (with the log) if the process has ended: for spin_until's `check`."""
        if self.process.poll() is not None:
            self._reader.join(5)
            raise AssertionError(f"node exited with {self.process.returncode}:\n{self.since()}")

    def find(self, pattern: str, mark: int = 0) -> str | None:
        """The first log line after `mark` that matches the regular expression `pattern`."""
        return next((line for line in self.lines[mark:] if re.search(pattern, line)), None)

    def stop(self, stop_signal: int = signal.SIGINT, timeout: float = 20) -> tuple[int, str]:
        """Send `stop_signal`, wait for the exit; (return code, whole log). Kills after `timeout` s."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        self._end(timeout)
        return self.process.returncode, self.since()

    def wait(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the process to end by itself; (return code, whole log)."""
        if not self._end(timeout):
            raise AssertionError(f"node did not exit within {timeout} s:\n{self.since()}")
        return self.process.returncode, self.since()

    def _end(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the exit, killing the process after that; False if it had to be killed."""
        try:
            self.process.wait(timeout)
            exited = True
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            exited = False
        self._reader.join(5)
        return exited


class WatchedNode:
    """A node process under test as the tests see it over DDS: its /diagnostics (hardware_id = its node name),
    the faults it counts there, and its parameter services. Each DDS test module's harness builds on it."""

    def __init__(self, ros, node: NodeProcess, name: str, namespace: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.parameter_client import AsyncParameterClient

        self.ros, self.node, self.name = ros, node, name
        self.diagnostics: dict[str, str] = {}
        self.parameter_client = AsyncParameterClient(ros.node, f"{namespace}/{name}")
        ros.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, message) -> None:
        for status in message.status:
            if status.hardware_id == self.name:
                self.diagnostics = {v.key: v.value for v in status.values}

    def faults(self, kind: str) -> int:
        """How many inputs of this kind of fault the node has counted (diagnostics "bad input: <kind>")."""
        return int(self.diagnostics.get(f"bad input: {kind}", 0))

    def wait_faults(self, kind: str, at_least: int, timeout: float = 5) -> None:
        assert self.ros.spin_until(lambda: self.faults(kind) >= at_least, timeout, self.node.check), \
            f"{self.name}: diagnostics count {self.faults(kind)} faults of kind {kind!r}, expected {at_least}: " \
            f"{self.diagnostics}"

    def wait_diagnostics(self, values: dict[str, str], timeout: float = 10) -> None:
        """Until the node's diagnostics show these values."""
        assert self.ros.spin_until(lambda: all(self.diagnostics.get(k) == v for k, v in values.items()), timeout,
                                   self.node.check), f"{self.name}: diagnostics {self.diagnostics}, expected {values}"

    def _call(self, future):
        assert self.ros.spin_until(future.done, 10, self.node.check), f"{self.name}: no parameter service answer"
        return future.result()

    def set_parameter(self, name: str, value):
        """`ros2 param set` over the node's set_parameters service: the node's SetParametersResult."""
        from rclpy.parameter import Parameter

        ready = self.ros.spin_until(self.parameter_client.services_are_ready, 10, self.node.check)
        assert ready, f"{self.name}: parameter services not found"
        return self._call(self.parameter_client.set_parameters([Parameter(name, value=value)])).results[0]

    def get_parameters(self, *names: str) -> dict:
        from rclpy.parameter import parameter_value_to_python

        values = self._call(self.parameter_client.get_parameters(list(names))).values
        return {name: parameter_value_to_python(value) for name, value in zip(names, values, strict=True)}


def wait_for_line(ros, node: NodeProcess, pattern: str, mark: int, timeout: float = 10) -> str:
    """Spin `ros` until the node logs a line matching `pattern` after `mark`; the line."""
    found = ros.spin_until(lambda: node.find(pattern, mark) is not None, timeout, node.check)
    assert found, f"no log line matching {pattern!r} within {timeout} s; log since:\n{node.since(mark)}"
    return node.find(pattern, mark)


def pose_model(tmp_path_factory) -> Path:
    """An untrained PTEN exported to ONNX once per session (the export takes seconds)."""
    from exlow_pose_training.export import export_onnx
    from exlow_pose_training.models import build_model

    path = tmp_path_factory.getbasetemp() / "robustness_pten.onnx"
    if not path.is_file():
        export_onnx(build_model("pten").eval(), path, "pten")
    return path


def header(stamp_ns: int, frame_id: str = "camera_optical_frame") -> Header:
    message = Header(frame_id=frame_id)
    message.stamp.sec, message.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return message


def stamp_ns(message_header: Header) -> int:
    return message_header.stamp.sec * 1_000_000_000 + message_header.stamp.nanosec


def pixel_box(box) -> PixelBox:
    return PixelBox(x_min=float(box[0]), y_min=float(box[1]), x_max=float(box[2]), y_max=float(box[3]))


def person(track_id: int, box=(100.0, 60.0, 112.0, 92.0), frame: np.ndarray | None = None, score: float = 0.8,
           crop_region=None, crop: Image | None = None) -> TrackedPerson:
    """A tracked person as our tracker publishes it (crop cut from `frame` or a grey image), with any field
    replaceable by a bad value."""
    region = square_region(box) if crop_region is None and np.isfinite(box).all() and box[2] >= box[0] \
        and box[3] >= box[1] else None
    if crop is None:
        pixels = cut_crop(frame, region) if frame is not None and region is not None else \
            np.full((16, 16, 3), 90 + track_id % 100, np.uint8)
        crop = numpy_to_image(pixels, "rgb8")
    if crop_region is None:
        crop_region = region.box if region is not None else box
    return TrackedPerson(track_id=track_id, box=pixel_box(box), score=float(score), crop_region=pixel_box(crop_region),
                         crop=crop)


def person_array(stamp: int, persons: list[TrackedPerson], width: int = 320, height: int = 240) -> TrackedPersonArray:
    message_header = header(stamp)
    for p in persons:
        p.crop.header = message_header
    return TrackedPersonArray(header=message_header, image_width=width, image_height=height, persons=persons)


def raw_image(width: int, height: int, encoding: str, step: int, data: bytes, stamp: int) -> Image:
    """An Image with exactly these fields, consistent or not."""
    from array import array

    image = Image(header=header(stamp), height=height, width=width, encoding=encoding, step=step)
    image.data = array("B", data)
    return image


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
