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
