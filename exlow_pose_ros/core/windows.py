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

from collections import deque
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
    """Per-track frame histories for streaming input: only the live runs, those in the latest frame.

    Call `update(track_id, item, sequence)` once per input frame per tracked person, in frame order;
    it returns the window (5 items, oldest first) whose output describes a frame, or None while the
    mode still needs frames. Then `close_gaps(sequence)` ends the runs of the tracks missing from that frame
    and forgets them, so the histories held are at most the persons of one frame.
    """

    def __init__(self, mode: OutputMode = "centre") -> None:
        if mode not in OUTPUT_INDEX:
            raise ValueError(f"output mode must be one of {list(OUTPUT_INDEX)}, not {mode!r}")
        self.mode = mode
        self._tracks: dict[int, TrackHistory[T]] = {}

    def __len__(self) -> int:
        """Live runs."""
        return len(self._tracks)

    def update(self, track_id: int, item: T, sequence: int) -> list[T] | None:
        history = self._tracks.setdefault(track_id, TrackHistory())
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

    def _finish_run(self, track_id: int) -> list[list[T]]:
        """The windows (edge padded at the run's end) of the frames of this track's run that the mode has not
        described yet; the track is forgotten (its id, if it comes back, starts a new run)."""
        history = self._tracks.pop(track_id)
        newest, oldest_kept = history.seen - 1, history.seen - len(history.frames)
        return [[history.frames[i - oldest_kept] for i in window_indices(target, 0, newest, self.mode)]
                for target in range(max(0, history.seen - OUTPUT_DELAY[self.mode]), history.seen)]

    def close_gaps(self, sequence: int) -> list[list[T]]:
        """After frame `sequence`'s updates: the runs of tracks missing from it have ended; their owed frames are
        described now (as training windows never cross a gap)."""
        return [w for t, h in list(self._tracks.items()) if h.last_update < sequence for w in self._finish_run(t)]

    def finish_all(self) -> list[list[T]]:
        """Every run ended (the end of a stream): the windows of all owed frames."""
        return [w for track_id in list(self._tracks) for w in self._finish_run(track_id)]

    def pending(self) -> list[T]:
        """The frames of live runs that still wait for a window (the mode's output delay)."""
        return [h.frames[-1 - i] for h in self._tracks.values() for i in range(min(OUTPUT_DELAY[self.mode], h.seen))]
