"""Frames of a video file for the video source node: reading with OpenCV, capture stamps, the publish rate
and the pipeline acknowledgement window. No ROS here, so all of it is testable without a graph.

Frame indices are positions in the file (0 = first frame). A frame that fails to decode still consumes its
index, so the frames after it keep their true index and stamp (OpenCV's own position counter does not: it
counts decoded frames only).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ENCODINGS = ("bgr8", "rgb8")


class VideoSourceError(ValueError):
    """The video source cannot start; the message names the offending file or value."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float  # the file's frame rate (or the override), > 0
    frame_count: int  # as the container reports it; 0 when unknown (it may be approximate)
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    index: int  # position in the file
    image: np.ndarray | None  # BGR (height, width, 3) uint8, or None: this frame failed to decode


def publish_rate(rate: str, file_fps: float) -> float | None:
    """Frames per second to publish at for the `rate` parameter: 'file' (the file's fps), 'max' (None: as fast
    as possible) or a positive number."""
    text = rate.strip().lower()
    problem = f"rate {rate!r} must be 'file', 'max' or a positive number of frames per second"
    if text == "file":
        return file_fps
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise VideoSourceError(problem) from None
    if not math.isfinite(value) or value <= 0:
        raise VideoSourceError(problem)
    return value


class VideoReader:
    """Sequential frames of one video file from `start_frame` on, with decode failures reported, not fatal."""

    def __init__(self, path: str | Path, start_frame: int = 0, fps: float = 0.0,
                 max_consecutive_failures: int = 25) -> None:
        self.path = Path(path).expanduser()
        if not str(path):
            raise VideoSourceError("video_path is empty: set it to an mp4/avi file (-p video_path:=/path/video.mp4)")
        if not self.path.is_file():
            raise FileNotFoundError(f"video_path {str(self.path)!r} does not exist or is not a file")
        self.start_frame = start_frame
        self.max_consecutive_failures = max_consecutive_failures
        self._capture: cv2.VideoCapture | None = None
        self._open()
        assert self._capture is not None
        file_fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        chosen_fps = fps if fps > 0 else file_fps
        if not math.isfinite(chosen_fps) or chosen_fps <= 0:
            self.close()
            raise VideoSourceError(f"{self.path} reports no frame rate ({file_fps!r}); set video_fps")
        self.info = VideoInfo(
            self.path, chosen_fps, max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if self.info.frame_count and start_frame >= self.info.frame_count:
            self.close()
            raise VideoSourceError(
                f"start_frame {start_frame} is past the end of {self.path} ({self.info.frame_count} frames)")
        self.rewind()

    def _open(self) -> None:
        self.close()
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise VideoSourceError(f"OpenCV cannot open {self.path} as a video (not a video, or an unsupported codec)")
        self._capture = capture

    def rewind(self) -> None:
        """Back to `start_frame`. Reopens the file and skips frames one by one: seeking is not frame-exact for
        every codec, sequential grabbing is."""
        self._open()
        assert self._capture is not None
        self._next_index = 0
        self._consecutive_failures = 0
        while self._next_index < self.start_frame:
            if self._capture.grab():
                self._consecutive_failures = 0
            elif not self._failure_is_mid_file():
                raise VideoSourceError(f"start_frame {self.start_frame} is past the end of {self.path} "
                                       f"(it ends after frame {self._next_index - 1})")
            self._next_index += 1

    def _failure_is_mid_file(self) -> bool:
        """After a failed read: a frame that did not decode (True) or the end of the file (False)."""
        self._consecutive_failures += 1
        if self._consecutive_failures > self.max_consecutive_failures:
            return False
        # Without a frame count a failure cannot be told from the end: take it as the end.
        return self._next_index < self.info.frame_count

    @property
    def position(self) -> int:
        """Index of the frame the next read() returns (after the end: the number of frames read through)."""
        return self._next_index

    def read(self) -> Frame | None:
        """The next frame (its image None if it failed to decode), or None at the end of the file."""
        if self._capture is None:
            return None
        ok, image = self._capture.read()
        index = self._next_index
        if ok and image is not None:
            self._next_index += 1
            self._consecutive_failures = 0
            return Frame(index, image)
        if self._failure_is_mid_file():
            self._next_index += 1
            return Frame(index, None)
        return None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def to_encoding(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """OpenCV's BGR frame as the pixels of `encoding` (bgr8 or rgb8)."""
    if encoding == "bgr8":
        return bgr
    if encoding == "rgb8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise VideoSourceError(f"encoding {encoding!r} must be one of {list(ENCODINGS)}")


def video_stamp_ns(start_ns: int, frame_number: int, fps: float) -> int:
    """Capture time of the frame `frame_number` frames after the first published one: start + n / fps."""
    return start_ns + round(frame_number * 1e9 / fps)


class AckWindow:
    """Frames published and not yet acknowledged by the pipeline. An ack with stamp S acknowledges every frame
    stamped at or before S, so a lost or reordered ack cannot stall the source."""

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size = max(1, size)
        self.timeout_s = timeout_s
        self.pending: deque[tuple[int, float]] = deque()  # (stamp ns, monotonic time sent)
        self.acknowledged = 0
        self.timed_out = 0

    def full(self) -> bool:
        return len(self.pending) >= self.size

    def sent(self, stamp_ns: int, now: float) -> None:
        self.pending.append((stamp_ns, now))

    def ack(self, stamp_ns: int) -> int:
        """Acknowledge up to `stamp_ns`; returns how many pending frames that acknowledged."""
        count = 0
        while self.pending and self.pending[0][0] <= stamp_ns:
            self.pending.popleft()
            count += 1
        self.acknowledged += count
        return count

    def expire(self, now: float) -> list[int]:
        """Give up on frames sent more than `timeout_s` ago; returns their stamps."""
        expired = []
        while self.pending and now - self.pending[0][1] > self.timeout_s:
            expired.append(self.pending.popleft()[0])
        self.timed_out += len(expired)
        return expired
