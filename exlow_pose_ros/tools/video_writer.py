"""Annotated videos that web browsers play: the one place that picks the codec and opens cv2.VideoWriter.

Preference, each only where this OpenCV build can actually write it (probed once per process by writing one
frame of a tiny clip to a temporary file):

1. H.264 in .mp4 ('avc1', then 'H264', 'X264'): plays everywhere. OpenCV's PyPI wheels usually lack an H.264
   encoder (no libx264 or OpenH264 for licence reasons), so this often fails;
2. VP8, then VP9, in .webm ('VP80', 'VP90'): every current browser plays both, and the PyPI wheels bundle libvpx.
   VP8 first: with OpenCV's fixed encoder settings VP9 is about 5x slower (~0.5 s per 768x576 frame on one core
   against ~0.1 s), which would double the demo's run time;
3. MPEG-4 Part 2 ('mp4v') in .mp4 as the last resort, with a warning: most browsers do not play it.

The requested path keeps its name; its suffix becomes the container's (.mp4 or .webm), and
VideoOutput.note says so in one line for the caller's log.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Codec:
    fourcc: str
    suffix: str        # the container this codec is written in
    name: str          # for people
    browser: bool      # web browsers play it


CODECS = (
    Codec("avc1", ".mp4", "H.264", True),
    Codec("H264", ".mp4", "H.264", True),
    Codec("X264", ".mp4", "H.264", True),
    Codec("VP80", ".webm", "VP8", True),
    Codec("VP90", ".webm", "VP9", True),
    Codec("mp4v", ".mp4", "MPEG-4 Part 2", False),
)
PROBE_SIZE = (64, 48)  # width, height: even, as 4:2:0 encoders want


class VideoWriterError(RuntimeError):
    """No codec could open a writer for the path; the message names it."""


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """FFmpeg and OpenCV print every failed codec attempt (and harmless tag fallbacks) straight to file
    descriptor 2, bypassing sys.stderr; a probe's expected failures must not look like errors in the log."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open(path: Path, codec: Codec, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    with _native_stderr_silenced():
        return cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec.fourcc), fps, size)


@functools.cache
def codec_works(codec: Codec) -> bool:
    """Whether this OpenCV build writes the codec: the writer opens and one frame makes a non-empty file
    (some builds open a writer for a codec they then fail to encode)."""
    with tempfile.TemporaryDirectory(prefix="exlow_codec_probe_") as folder:
        path = Path(folder) / f"probe{codec.suffix}"
        writer = _open(path, codec, 10.0, PROBE_SIZE)
        opened = writer.isOpened()
        with _native_stderr_silenced():
            if opened:
                writer.write(np.zeros((PROBE_SIZE[1], PROBE_SIZE[0], 3), np.uint8))
            writer.release()
        return opened and path.is_file() and path.stat().st_size > 0


@dataclass
class VideoOutput:
    """An open annotated video: write BGR frames of the size it was opened with, then release()."""

    writer: cv2.VideoWriter
    path: Path        # the file written: the requested path with the codec's container suffix
    requested: Path
    codec: Codec

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)

    def release(self) -> None:
        self.writer.release()

    @property
    def note(self) -> str | None:
        """One log line when the video is not what was asked for (another suffix, or not browser-playable)."""
        if not self.codec.browser:
            return (f"warning: this OpenCV writes neither H.264 nor VP8/VP9; {self.path} is {self.codec.name} "
                    f"('{self.codec.fourcc}'), which most web browsers do not play")
        if self.path != self.requested:
            return (f"this OpenCV cannot write H.264; annotated video written as {self.codec.name} to {self.path} "
                    f"instead of {self.requested}")
        return None

    def describe(self) -> dict[str, str]:
        """For JSON outputs."""
        return {"path": str(self.path), "codec": self.codec.name, "fourcc": self.codec.fourcc}


def open_video_writer(path: Path, fps: float, size: tuple[int, int]) -> VideoOutput:
    """A writer for frames of size (width, height) at fps, in the most browser-friendly codec that works."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for codec in filter(codec_works, CODECS):  # lazily: the first that works ends the probing
        target = path.with_suffix(codec.suffix)
        writer = _open(target, codec, fps, size)
        if writer.isOpened():  # a probed codec can still refuse this size or rate; then the next one
            return VideoOutput(writer, target, path, codec)
        writer.release()
    raise VideoWriterError(f"OpenCV cannot write {path} with any of "
                           f"{', '.join(c.fourcc for c in CODECS)} ({size[0]}x{size[1]} at {fps:g} fps)")


def main() -> int:
    """`python -m exlow_pose_ros.tools.video_writer`: which codecs this OpenCV writes."""
    for codec in CODECS:
        print(f"{codec.fourcc} ({codec.name}, {codec.suffix}): {'yes' if codec_works(codec) else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
