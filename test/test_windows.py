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


def test_a_track_missing_from_a_frame_is_finished_and_forgotten():
    buffers = TrackWindows("centre")
    buffers.update(1, "a0", 0)
    buffers.update(2, "b0", 0)
    assert buffers.close_gaps(0) == [] and len(buffers) == 2
    buffers.update(2, "b1", 1)
    # Track 1 missed frame 1: its one frame is described now, edge padded, and only track 2 is still held.
    assert buffers.close_gaps(1) == [["a0"] * 5] and len(buffers) == 1
    assert sorted(buffers.pending()) == ["b0", "b1"]
    # A returning id starts a fresh, edge-padded run: nothing from before the gap enters its windows.
    buffers.update(1, "a2", 2)
    buffers.update(2, "b2", 2)
    assert buffers.update(1, "a3", 3) is None
    assert buffers.close_gaps(3) == [["b0", "b0", "b1", "b2", "b2"], ["b0", "b1", "b2", "b2", "b2"]]
    assert buffers.update(1, "a4", 4) == ["a2", "a2", "a2", "a3", "a4"] and buffers.close_gaps(4) == []
    assert len(buffers) == 1 and buffers.finish_all() == [["a2", "a2", "a3", "a4", "a4"],
                                                          ["a2", "a3", "a4", "a4", "a4"]]
    assert len(buffers) == 0


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="output mode"):
        TrackWindows("middle")
    assert np.array_equal(window_indices(3, 3, 3, "centre"), [3] * 5)
