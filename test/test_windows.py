"""Sliding windows (exlow_pose_ros.core.windows): indices, edge padding, streaming delay, eviction."""

from __future__ import annotations

import numpy as np
import pytest

from exlow_pose_ros.core.windows import TrackWindows, sequence_windows, window_indices


def test_centre_window_is_two_frames_each_side_and_edge_padded():
    assert window_indices(10, 0, 99, "centre").tolist() == [8, 9, 10, 11, 12]
    assert window_indices(0, 0, 99, "centre").tolist() == [0, 0, 0, 1, 2]
    assert window_indices(99, 0, 99, "centre").tolist() == [97, 98, 99, 99, 99]


def test_latest_window_ends_at_the_target():
    assert window_indices(10, 0, 99, "latest").tolist() == [6, 7, 8, 9, 10]
    assert window_indices(1, 0, 99, "latest").tolist() == [0, 0, 0, 0, 1]


def test_every_frame_of_a_sequence_gets_one_window_with_itself_at_the_output_index():
    for mode, output_index in (("centre", 2), ("latest", 4)):
        windows = sequence_windows(7, mode)
        assert windows.shape == (7, 5)
        assert windows[:, output_index].tolist() == list(range(7))
        assert windows.min() == 0 and windows.max() == 6
    assert sequence_windows(0).shape == (0, 5)


def test_streaming_centre_mode_answers_two_frames_late_with_padded_start():
    buffers = TrackWindows("centre")
    answers = [buffers.update(7, f"f{i}", sequence=i) for i in range(7)]
    assert answers[0] is None and answers[1] is None
    assert answers[2] == ["f0", "f0", "f0", "f1", "f2"]  # describes f0
    assert answers[3] == ["f0", "f0", "f1", "f2", "f3"]  # describes f1
    assert answers[6] == ["f2", "f3", "f4", "f5", "f6"]  # describes f4: a full window


def test_streaming_latest_mode_answers_at_once():
    buffers = TrackWindows("latest")
    assert buffers.update(1, "a", 0) == ["a"] * 5
    assert buffers.update(1, "b", 1) == ["a", "a", "a", "a", "b"]


def test_tracks_are_independent_and_stale_ones_are_evicted():
    buffers = TrackWindows("latest", max_missing=3)
    buffers.update(1, "a0", 0)
    for sequence in range(1, 6):
        buffers.update(2, f"b{sequence}", sequence)
    assert buffers.update(2, "b6", 6)[-2:] == ["b5", "b6"]
    assert buffers.evict(6) == [1] and len(buffers) == 1
    # A returning id after eviction starts a fresh, edge-padded history.
    assert buffers.update(1, "a7", 7) == ["a7"] * 5


def test_track_count_is_bounded_and_dropped_runs_are_finished_first():
    buffers = TrackWindows("centre", max_tracks=10)
    for track in range(50):
        buffers.update(track, (track, 0), 0)
    finished = buffers.limit()
    assert len(buffers) == 10 and buffers.overflowed == 40
    # The 40 least recently seen tracks are dropped, each with the skeleton its one frame is owed.
    assert sorted(window[2][0] for window in finished) == list(range(40))
    assert all(window == [window[0]] * 5 for window in finished)
    assert sorted(item[0] for item in buffers.pending()) == list(range(40, 50))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="output mode"):
        TrackWindows("middle")
    assert np.array_equal(window_indices(3, 3, 3, "centre"), [3] * 5)
