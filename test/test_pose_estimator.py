"""The core's per-frame machinery in process, without ROS: the stream guard, the max_tracks rule and FrameStream's
one-output-per-frame bookkeeping (what the pose node and the offline CLI both rely on)."""

from __future__ import annotations

import numpy as np
import pytest

from exlow_pose_ros.core.backends import create_backend
from exlow_pose_ros.core.crop import square_region
from exlow_pose_ros.core.pose_estimator import FrameStream, PersonObservation, PoseEstimator, persons_within
from exlow_pose_ros.core.stream_guard import IDLE_PERIODS, StreamGuard, StreamIdle

from robustness_support import pose_model


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return create_backend("onnxruntime", pose_model(tmp_path_factory), threads=1)


def observation(track: int, frame: int, score: float = 0.8) -> PersonObservation:
    box = (10.0 + 30 * (track % 8), 20.0, 22.0 + 30 * (track % 8), 52.0)
    points = np.zeros((17, 3), np.float32)
    points[:, 0], points[:, 1], points[:, 2] = box[0] + 6 + frame, 36.0, 0.9  # moves 1 px per frame
    return PersonObservation(track, box, score, square_region(box), np.zeros((16, 16, 3), np.uint8), frame, points)


def test_the_stream_guard_drops_late_frames_and_restarts_once_per_jump():
    restarts = []
    guard = StreamGuard(on_restart=[lambda: restarts.append(guard.last)])
    assert guard.check((10, 0), (640, 480)).verdict == "next"
    late = guard.check((10, 0), (640, 480))
    assert (late.verdict, late.previous) == ("late", (10, 0))
    assert guard.check((9, 500_000_000)).verdict == "late"  # 0.5 s back: a late frame, not a new stream
    resized = guard.check((10, 100_000_000), (320, 240))
    assert resized.verdict == "next" and resized.resized_from == (640, 480)
    restart = guard.check((2, 0), (320, 240))
    assert restart.verdict == "restart" and restarts == [(2, 0)] and restart.resized_from is None
    assert guard.check((2, 100_000_000)).verdict == "next" and len(restarts) == 1


def test_over_the_limit_the_lowest_scores_are_dropped_in_their_order():
    persons = [observation(track, 0, score) for track, score in ((5, 0.9), (3, 0.2), (8, 0.5), (1, 0.5))]
    kept = persons_within(persons, 2)
    assert [p.track_id for p in kept] == [5, 1]  # 0.9, then the tie at 0.5 goes to the lower id
    assert persons_within(persons, 4) is persons


def test_a_frame_over_max_tracks_keeps_its_best_persons_and_finishes_the_ended_runs(backend):
    estimator = PoseEstimator(backend, "centre", max_tracks=3, keypoint_source="detector")
    stream = FrameStream(estimator)
    out = stream.push(0, [observation(t, 0) for t in (1, 2, 3)])
    out += stream.push(1, [observation(t, 1, score=0.1 * t) for t in (4, 5, 6, 7)])  # 4 new, only 3 fit
    out += stream.flush()
    assert [f.stamp for f in out] == [0, 1]
    assert [s.track_id for s in out[0].skeletons] == [1, 2, 3]  # ended by their gap, described
    assert [s.track_id for s in out[1].skeletons] == [5, 6, 7] and estimator.dropped_persons == 1
    assert estimator.active_tracks == 0


def test_frame_stream_gives_every_frame_once_in_order_with_all_its_skeletons(backend):
    stream = FrameStream(PoseEstimator(backend, "centre", keypoint_source="detector"))
    tracks = [[1], [1, 2], [1, 2], [2], [], [2, 3], [3], [3], [3], [1, 3]]
    out = []
    for frame, present in enumerate(tracks):
        done = stream.push(frame, [observation(t, frame) for t in present], payload=f"frame {frame}")
        assert all(f.stamp <= frame for f in done)
        assert len(stream) <= 3, "at most the centre mode's delay (2 frames) plus this one wait"
        out += done
    out += stream.flush()
    assert [f.stamp for f in out] == list(range(len(tracks)))
    assert [f.payload for f in out] == [f"frame {i}" for i in range(len(tracks))]
    assert [[s.track_id for s in f.skeletons] for f in out] == tracks
    assert all(s.stamp == f.stamp for f in out for s in f.skeletons)
    assert stream.orphans == 0 and len(stream) == 0


def test_an_empty_frame_after_every_run_ended_is_released_at_once(backend):
    stream = FrameStream(PoseEstimator(backend, "centre", keypoint_source="detector"))
    assert stream.push(0, [observation(1, 0)]) == []  # frame 0 waits for frames 1 and 2 of track 1
    done = stream.push(1, [])  # track 1's run ended: frames 0 and 1 are complete now
    assert [(f.stamp, [s.track_id for s in f.skeletons]) for f in done] == [(0, [1]), (1, [])]


def test_latest_mode_releases_each_frame_as_it_comes(backend):
    stream = FrameStream(PoseEstimator(backend, "latest", keypoint_source="detector"))
    for frame in range(4):
        done = stream.push(frame, [observation(7, frame)])
        assert [f.stamp for f in done] == [frame] and [s.track_id for s in done[0].skeletons] == [7]


def test_a_slow_stream_is_not_taken_for_a_stopped_one():
    """flush_timeout 1 s behind a tracker that sends a frame every 2 s: between its frames the stream must not
    count as stopped (every track would restart at each frame); 3 periods after its last frame it has stopped.
    A fast stream stops after the timeout itself, and one frame alone (no period known yet) too."""
    slow = StreamIdle()
    for k in range(6):
        slow.frame(2.0 * k)
        assert slow.stopped(2.0 * k + 1.9, timeout=1.0) == (k == 0)  # after one frame no period is known yet
    assert not slow.stopped(10.0 + IDLE_PERIODS * 2.0 - 0.1, timeout=1.0)
    assert slow.stopped(10.0 + IDLE_PERIODS * 2.0, timeout=1.0)

    fast = StreamIdle()
    for k in range(30):
        fast.frame(k / 30)
    assert not fast.stopped(29 / 30 + 0.99, timeout=1.0) and fast.stopped(29 / 30 + 1.0, timeout=1.0)
    fast.frame(60.0)  # one long pause does not make the stream count as slow (the median period)
    assert fast.idle_after(1.0) == 1.0

    single = StreamIdle()
    assert not single.stopped(100.0, timeout=1.0)  # nothing came: nothing to flush
    single.frame(0.0)
    assert single.stopped(1.0, timeout=1.0)
