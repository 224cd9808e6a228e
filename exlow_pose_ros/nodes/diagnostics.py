"""A small periodic diagnostics publisher (diagnostic_updater is not on PyPI): rates, latencies, counts."""

from __future__ import annotations

import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class RateWindow:
    """Events per second and mean of a value over the last `seconds`."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self.events: deque[tuple[float, float]] = deque()

    def add(self, value: float = 0.0) -> None:
        now = time.monotonic()
        self.events.append((now, value))
        while self.events and now - self.events[0][0] > self.seconds:
            self.events.popleft()

    def rate(self) -> float:
        if len(self.events) < 2:
            return 0.0
        span = self.events[-1][0] - self.events[0][0]
        return (len(self.events) - 1) / span if span > 0 else 0.0

    def mean(self) -> float:
        return sum(v for _, v in self.events) / len(self.events) if self.events else 0.0

    def idle_seconds(self) -> float:
        return time.monotonic() - self.events[-1][0] if self.events else float("inf")


def status(node, name: str, values: dict[str, object], stale_after: float, idle: float) -> DiagnosticArray:
    level, message = (DiagnosticStatus.OK, "running") if idle <= stale_after else (
        DiagnosticStatus.WARN, f"no input for {idle:.0f} s" if idle != float("inf") else "no input yet")
    array = DiagnosticArray()
    array.header.stamp = node.get_clock().now().to_msg()
    pairs = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    array.status = [DiagnosticStatus(level=level, name=f"{node.get_name()}: {name}", hardware_id=node.get_name(),
                                     message=message, values=pairs)]
    return array
