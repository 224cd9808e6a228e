"""The person tracker on real frames, in-process: one detector forward per frame, Ultralytics' ByteTrack on its
boxes, and persons reported from the first frame their track appears in, under the id the track keeps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.person_tracker import PersonTracker

from conftest import DETECTOR, VTEST

pytestmark = pytest.mark.skipif(not (VTEST.exists() and DETECTOR.exists()),
                                reason="assets missing: run scripts/setup.sh")


def frames(first: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VTEST))
    for _ in range(first):
        capture.grab()
    return [capture.read()[1] for _ in range(count)]


def test_new_tracks_are_reported_at_once_and_keep_their_id_once_confirmed():
    clip = frames(200, 12)
    eager, confirmed_only = PersonTracker(DETECTOR), PersonTracker(DETECTOR, report_new_tracks=False)
    first_seen: dict[int, int] = {}
    eager_ids, confirmed_ids = [], []
    for index, bgr in enumerate(clip):
        eager_people, confirmed_people = eager.track(bgr), confirmed_only.track(bgr)
        eager_ids.append({p.track_id for p in eager_people})
        confirmed_ids.append({p.track_id for p in confirmed_people})
        for person in eager_people:
            first_seen.setdefault(person.track_id, index)
            assert person.keypoints is not None and person.keypoints.shape == (17, 3)
            box = np.array(person.box)
            inside = (person.keypoints[:, 0] > box[0] - 20) & (person.keypoints[:, 0] < box[2] + 20)
            assert inside.mean() > 0.8, "the keypoints must be this person's own detection"
        # Every person the detector found is reported (none is hidden waiting for confirmation).
        assert eager.detections.tracked.all() and len(eager_people) == len(eager.detections.scores)
        # Both trackers saw the same detections, so the eager one reports a superset under the same ids.
        assert confirmed_ids[-1] <= eager_ids[-1]
    assert sum(map(len, eager_ids)) > sum(map(len, confirmed_ids)), "no track was new in these frames"
    # A track first reported in frame k > 0 and seen again in k + 1 is confirmed there: under the same id.
    kept = [(t, k) for t, k in first_seen.items() if 0 < k < len(clip) - 1 and t in eager_ids[k + 1]]
    assert kept, first_seen
    assert all(t in confirmed_ids[k + 1] and t not in confirmed_ids[k] for t, k in kept)
    eager.reset()
    assert eager.track(clip[0]) and min(p.track_id for p in eager.track(clip[1])) >= 1


def test_a_tiny_people_detector_runs_only_on_enlarged_frames_and_adds_the_persons_it_alone_finds(monkeypatch):
    """tiny_model_path: a second detector on frames the tracker enlarges >= tiny_min_upscale times; the same
    weights twice must give the single detector's persons (each pair keeps one), a frame at its full size must
    not run it, and a person only the second detector finds is tracked."""
    bgr = frames(200, 1)[0]
    small = cv2.resize(bgr, (96, 72), interpolation=cv2.INTER_AREA)  # enlarged 8x at max_upscale 8
    single = PersonTracker(DETECTOR, max_upscale=8)
    double = PersonTracker(DETECTOR, max_upscale=8, tiny_model_path=DETECTOR)
    calls = []
    detect = double.tiny_detector.detect
    monkeypatch.setattr(double.tiny_detector, "detect", lambda *a, **k: calls.append(1) or detect(*a, **k))
    found = {}
    for name, frame in (("small", small), ("full", bgr)):  # vtest at imgsz 1280: enlarged 1.67x, below 2
        found[name] = {tuple(np.round(p.box, 3)) for p in single.track(frame)}
        assert {tuple(np.round(p.box, 3)) for p in double.track(frame)} == found[name] and found[name]
    assert len(calls) == 1, "the tiny-people detector runs on the enlarged frame only"
    # The second detector alone sees someone: that person is tracked, with its keypoints.
    from ultralytics.engine.results import Results

    extra = np.array([[5.0, 5.0, 15.0, 35.0, 0.6, 0.0]])
    points = np.concatenate([np.tile([[10.0, 20.0]], (17, 1)), np.full((17, 1), 0.9)], axis=1)[None]
    fake = Results(small, path="", names={0: "person"}, boxes=extra, keypoints=points)
    monkeypatch.setattr(double.tiny_detector, "detect", lambda *a, **k: fake)
    double.reset()
    people = double.track(small)
    assert any(np.allclose(p.box, extra[0, :4]) and np.allclose(p.keypoints, points[0]) for p in people)
    assert len(people) == len(found["small"]) + 1


def test_a_source_whose_frame_size_keeps_changing_does_not_grow_the_tracker_without_bound():
    """A moving region of interest gives every frame another size; the per-size detector plans must stay
    bounded, and a size seen again gets the same input shape as the first time."""
    from exlow_pose_ros.core.person_tracker import MAX_PLANS

    tracker = PersonTracker(DETECTOR)
    first = tracker.input_shape(640, 480)
    for width in range(100, 100 + 3 * MAX_PLANS):
        tracker.input_shape(width, 200)
    assert len(tracker.detector._plans) <= MAX_PLANS
    assert tracker.input_shape(640, 480) == first
