"""Sliding 5-frame windows over a track's frames: one implementation for the pose node and offline tools.

Output modes:
- "centre" (the paper, seed 000 Sec. 3.5): the pose of frame c comes from the window c-2 .. c+2, so it is
  known two frames after c was captured. Stride 1: every frame gets its own window.
- "latest" (zero delay): the pose of frame t comes from the window t-4 .. t, read at its last index.

At a track's start (and, offline, its end) the missing frames are edge padded: the window repeats the
first (last) frame, so every frame of a track gets a pose.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np

WINDOW_LENGTH = 5
HALF_WINDOW = WINDOW_LENGTH // 2
OutputMode = Literal["centre", "latest"]
OUTPUT_INDEX: dict[str, int] = {"centre": HALF_WINDOW, "latest": WINDOW_LENGTH - 1}
# Frames between the newest input and the frame a mode's pose describes.
OUTPUT_DELAY: dict[str, int] = {"centre": HALF_WINDOW, "latest": 0}


def window_indices(target: int, first: int, last: int, mode: OutputMode) -> np.ndarray:
    """Frame numbers of the window whose output describes `target`, edge padded to [first, last]."""
    end = target + HALF_WINDOW if mode == "centre" else target
    return np.clip(np.arange(end - WINDOW_LENGTH + 1, end + 1), first, last)


def sequence_windows(length: int, mode: OutputMode = "centre") -> np.ndarray:
    """(length, 5) indices into a sequence of `length` frames: row t is the window describing frame t."""
    return np.stack([window_indices(t, 0, length - 1, mode) for t in range(length)]) if length else \
        np.zeros((0, WINDOW_LENGTH), dtype=np.int64)


T = TypeVar("T")


@dataclass
class TrackHistory(Generic[T]):
    """The last WINDOW_LENGTH frames of one track (any per-frame payload: crop, stamp, box ...)."""

    frames: deque = field(default_factory=lambda: deque(maxlen=WINDOW_LENGTH))
    seen: int = 0          # frames received in total
    last_update: int = 0   # sequence number of the input frame that last brought this track


class TrackWindows(Generic[T]):
    """Per-track frame histories for streaming input, with eviction of tracks no longer seen.

    Call `update(track_id, item, sequence)` once per input frame per tracked person, in frame order;
    it returns the window (5 items, oldest first) whose output describes a frame, or None while the
    mode still needs frames. `evict(sequence)` drops tracks unseen for more than `max_missing` frames.
    """

    def __init__(self, mode: OutputMode = "centre", max_missing: int = 15, max_tracks: int = 512) -> None:
        if mode not in OUTPUT_INDEX:
            raise ValueError(f"output mode must be one of {list(OUTPUT_INDEX)}, not {mode!r}")
        self.mode = mode
        self.max_missing = max_missing
        self.max_tracks = max_tracks
        self.overflowed = 0  # histories dropped because max_tracks was reached (not for being unseen)
        self._tracks: OrderedDict[int, TrackHistory[T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, track_id: int, item: T, sequence: int) -> list[T] | None:
        history = self._tracks.pop(track_id, None) or TrackHistory()
        self._tracks[track_id] = history  # most recently updated last
        history.frames.append(item)
        history.seen += 1
        history.last_update = sequence
        while len(self._tracks) > self.max_tracks:  # a bound on memory whatever the tracker does
            self._tracks.popitem(last=False)
            self.overflowed += 1
        newest = history.seen - 1
        target = newest - OUTPUT_DELAY[self.mode]
        if target < 0:
            return None
        oldest_kept = history.seen - len(history.frames)
        indices = window_indices(target, 0, newest, self.mode) - oldest_kept
        return [history.frames[i] for i in indices]

    def evict(self, sequence: int) -> list[int]:
        """Drop tracks whose last frame is more than max_missing frames before `sequence`."""
        stale = [t for t, h in self._tracks.items() if sequence - h.last_update > self.max_missing]
        for track_id in stale:
            del self._tracks[track_id]
        return stale
