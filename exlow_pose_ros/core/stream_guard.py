"""One guard for a stream of frames, used by every node that keeps state across frames: frames must come in
capture order; a stamp far behind the last one starts a new stream (a bag played in a loop, a restarted camera
or simulation), and whoever keeps state (the tracker, the pose windows) must start again; a change of frame size
is worth a warning. Stamps are (sec, nanosec) pairs, as std_msgs/Header carries them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stamp = tuple[int, int]
# A stamp this far behind the last one starts a new stream; anything less far behind is a late or repeated frame.
STREAM_RESTART_NS = 2_000_000_000
Verdict = Literal["next", "late", "restart"]


@dataclass(frozen=True)
class FrameCheck:
    verdict: Verdict                              # next: go on; late: drop the frame; restart: a new stream
    previous: Stamp | None                        # the stamp before this frame
    resized_from: tuple[int, int] | None = None   # the earlier (width, height), when this frame's differs


class StreamGuard:
    """`check(stamp, size)` for each frame, in arrival order. "late" (older than or equal to the last frame: it
    would corrupt every track's history) is to be dropped; "restart" runs every `on_restart` callback first."""

    def __init__(self, on_restart: list[Callable[[], None]] | None = None,
                 restart_after_ns: int = STREAM_RESTART_NS) -> None:
        self.on_restart = list(on_restart or [])
        self.restart_after_ns = restart_after_ns
        self.last: Stamp | None = None
        self.size: tuple[int, int] | None = None

    def check(self, stamp: Stamp, size: tuple[int, int] | None = None) -> FrameCheck:
        previous = self.last
        verdict = self._order(stamp)
        if verdict == "late":
            return FrameCheck("late", previous)
        if verdict == "restart":
            for callback in self.on_restart:
                callback()
        resized = self.size if size is not None and self.size is not None and size != self.size else None
        if size is not None:
            self.size = size
        return FrameCheck(verdict, previous, resized)

    def _order(self, stamp: Stamp) -> Verdict:
        if self.last is None or stamp > self.last:
            self.last = stamp
            return "next"
        behind = (self.last[0] - stamp[0]) * 1_000_000_000 + self.last[1] - stamp[1]
        if behind > self.restart_after_ns:
            self.last = stamp
            return "restart"
        return "late"


IDLE_PERIODS = 3  # a stream counts as stopped after this many of its own recent frame periods without a frame


class StreamIdle:
    """When a stream has stopped: no frame for `timeout` seconds and for IDLE_PERIODS of its recent frame periods
    (the median of the last few). Why both: a tracker slower than the timeout (two detectors on a CPU take
    0.5-0.6 s a frame; a Jetson under load more) is not a stopped stream, and flushing it between every pair of
    frames would restart every track at each frame, losing the window's smoothing without a word."""

    def __init__(self, history: int = 5) -> None:
        self._times: list[float] = []
        self.history = history

    def frame(self, now: float) -> None:
        self._times = (self._times + [now])[-(self.history + 1):]

    def idle_after(self, timeout: float) -> float:
        """Seconds without a frame after which the stream counts as stopped."""
        gaps = sorted(b - a for a, b in zip(self._times, self._times[1:], strict=False))
        return max(timeout, IDLE_PERIODS * gaps[len(gaps) // 2]) if gaps else timeout

    def stopped(self, now: float, timeout: float) -> bool:
        return bool(self._times) and now - self._times[-1] >= self.idle_after(timeout)
