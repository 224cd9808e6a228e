"""Sliding 5-frame windows over a track's frames: one implementation for the pose node and offline tools.

Output modes:
- "centre" (the paper, seed 000 Sec. 3.5): the pose of frame c comes from the window c-2 .. c+2, so it is
  known two frames after c was captured. Stride 1: every frame gets its own window.
- "latest" (zero delay): the pose of frame t comes from the window t-4 .. t, read at its last index.

At a run's start and end the missing frames are edge padded: the window repeats the first (last) frame, so
every frame of a track gets a pose. A run ends where the track misses a frame: its owed frames are described
then, and the track starts a new run, so a window never splices frames across a gap (nor do training windows).
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
    mode still needs frames. `limit()` keeps at most `max_tracks` histories and `evict(sequence)` drops
    tracks unseen for more than `max_missing` frames.
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
        newest = history.seen - 1
        target = newest - OUTPUT_DELAY[self.mode]
        if target < 0:
            return None
        oldest_kept = history.seen - len(history.frames)
        indices = window_indices(target, 0, newest, self.mode) - oldest_kept
        return [history.frames[i] for i in indices]

    def finish_run(self, track_id: int) -> list[list[T]]:
        """The windows (edge padded at the run's end) of the frames of this track's current run that the mode has
        not described yet; the track then starts a new run (a later frame never shares a window with these)."""
        history = self._tracks.get(track_id)
        if history is None or history.seen == 0:
            return []
        newest, oldest_kept = history.seen - 1, history.seen - len(history.frames)
        windows = [[history.frames[i - oldest_kept] for i in window_indices(target, 0, newest, self.mode)]
                   for target in range(max(0, history.seen - OUTPUT_DELAY[self.mode]), history.seen)]
        history.frames.clear()
        history.seen = 0
        return windows

    def close_gaps(self, sequence: int) -> list[list[T]]:
        """After frame `sequence`'s updates: the runs of tracks seen in the frame before but not in this one have
        ended; their owed frames are described now (as training windows never cross a gap)."""
        return [w for t, h in list(self._tracks.items()) if h.last_update == sequence - 1 and h.seen
                for w in self.finish_run(t)]

    def finish_all(self) -> list[list[T]]:
        """finish_run for every track (the end of a stream)."""
        return [w for track_id in list(self._tracks) for w in self.finish_run(track_id)]

    def pending(self) -> list[T]:
        """The frames of live runs that still wait for a window (the mode's output delay)."""
        return [h.frames[-1 - i] for h in self._tracks.values() for i in range(min(OUTPUT_DELAY[self.mode], h.seen))]

    def limit(self) -> list[list[T]]:
        """Bound memory whatever the tracker sends: over max_tracks histories, the least recently seen are dropped,
        their runs finished first (returned), so no frame they brought loses its skeleton. A caller that feeds at
        most max_tracks persons per frame never loses a track of the current frame."""
        windows = []
        while len(self._tracks) > self.max_tracks:
            oldest = next(iter(self._tracks))
            windows += self.finish_run(oldest)
            del self._tracks[oldest]
            self.overflowed += 1
        return windows

    def evict(self, sequence: int) -> list[int]:
        """Drop tracks whose last frame is more than max_missing frames before `sequence`."""
        stale = [t for t, h in self._tracks.items() if sequence - h.last_update > self.max_missing]
        for track_id in stale:
            del self._tracks[track_id]
        return stale
