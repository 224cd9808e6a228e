"""A small periodic diagnostics publisher (diagnostic_updater is not on PyPI): rates, latencies, counts."""

from __future__ import annotations

import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ..core.stream_guard import FrameCheck


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


class FaultLog:
    """Rate-limited reports of bad input, per kind of fault, with a count of every fault for /diagnostics.

    rclpy's throttle_duration_sec limits per call site, so one flood (say, a foreign tracker's wrong-size
    crops) would hide the first report of every other fault passing through the same handler; here each
    kind gets its own period. Kinds are fixed strings chosen by the code, never taken from input.
    """

    def __init__(self, logger, period: float = 5.0) -> None:
        self.logger = logger
        self.period = period
        self.counts: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, kind: str, text: str, level: str = "error") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._last.get(kind, -self.period) < self.period:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        more = f" ({suppressed} more of this kind since the last report)" if suppressed else ""
        # One call per severity: rclpy refuses a call site that logs at more than one severity.
        if level == "warning":
            self.logger.warning(f"{text}{more}")
        else:
            self.logger.error(f"{text}{more}")
        self._last[kind] = now

    def values(self) -> dict[str, int]:
        """Diagnostics entries: 'bad input: <kind>' -> count since start."""
        return {f"bad input: {kind}": count for kind, count in sorted(self.counts.items())}


# A publisher that leaves header.stamp unset sends every frame at 0: all but the first would go silently.
UNSTAMPED_HINT = (" (every frame stamped 0: the publisher leaves header.stamp unset; the nodes need each frame's "
                  "capture time, so set the camera driver's or publisher's stamp)")


def report_stream_check(faults: FaultLog, check: FrameCheck, stamp: tuple[int, int], size: tuple[int, int],
                        subject: str, restart_effect: str) -> bool:
    """Report what a StreamGuard check found, as every node words it; True when the frame is to be dropped."""
    if check.verdict == "late":
        # Histories follow capture order: a repeated or older frame would corrupt them (and the tracker's motion).
        faults.report("stamp order", f"{subject} stamped {stamp} is not after the previous {check.previous}; dropped"
                      + (UNSTAMPED_HINT if stamp == check.previous == (0, 0) else ""))
        return True
    if check.verdict == "restart":
        faults.report("stream restart", f"stamps jumped back from {check.previous} to {stamp}: a new stream (a "
                      f"looped bag, a restarted camera); {restart_effect}", "warning")
    if check.resized_from is not None:
        faults.report("frame size", f"frame size changed from {check.resized_from[0]}x{check.resized_from[1]} "
                      f"to {size[0]}x{size[1]} at stamp {stamp}", "warning")
    return False


def status(node, name: str, values: dict[str, object], stale_after: float, idle: float) -> DiagnosticArray:
    level, message = (DiagnosticStatus.OK, "running") if idle <= stale_after else (
        DiagnosticStatus.WARN, f"no input for {idle:.0f} s" if idle != float("inf") else "no input yet")
    array = DiagnosticArray()
    array.header.stamp = node.get_clock().now().to_msg()
    pairs = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    array.status = [DiagnosticStatus(level=level, name=f"{node.get_name()}: {name}", hardware_id=node.get_name(),
                                     message=message, values=pairs)]
    return array
