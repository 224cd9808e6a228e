"""Validation of foreign input and the fault log, in process (the DDS tests in test_robustness_pose.py send the
same faults to a running node): what is refused, with which kind, and that one bad person never costs the rest."""

from __future__ import annotations

import math

import numpy as np
import pytest
from exlow_pose_msgs.msg import Keypoint2D

from exlow_pose_ros.core.crop import square_region
from exlow_pose_ros.core.stream_guard import StreamGuard
from exlow_pose_ros.nodes.conversions import InputError, observation_from_message, observations_from_message
from exlow_pose_ros.nodes.diagnostics import FaultLog, report_stream_check
from exlow_pose_ros.nodes.image_conversion import numpy_to_image

from robustness_support import header, person, person_array

BOX = (100.0, 60.0, 112.0, 92.0)


def refused_kind(tracked, frame_size=(320, 240)) -> str:
    with pytest.raises(InputError) as caught:
        observation_from_message(tracked, header(1), frame_size)
    return caught.value.kind


def test_a_good_person_becomes_an_observation_through_its_crop_region():
    observation = observation_from_message(person(4, BOX), header(5), (320, 240))
    assert observation.track_id == 4 and observation.region == square_region(BOX)
    assert observation.crop.shape == (16, 16, 3) and observation.detector_keypoints is None


@pytest.mark.parametrize("change,kind", [
    (lambda p: setattr(p, "track_id", -3), "track id"),
    (lambda p: setattr(p.box, "x_min", math.nan), "non-finite"),
    (lambda p: setattr(p.box, "x_max", p.box.x_min), "degenerate box"),
    (lambda p: (setattr(p.box, "x_min", 400.0), setattr(p.box, "x_max", 420.0)), "outside frame"),
    (lambda p: setattr(p.crop_region, "x_max", p.crop_region.x_max + 5), "crop region"),  # not square
    (lambda p: (setattr(p.crop_region, "x_min", p.crop_region.x_min - 40),
                setattr(p.crop_region, "y_min", p.crop_region.y_min - 40)), "crop region"),  # 3x the square
    (lambda p: setattr(p, "crop", numpy_to_image(np.zeros((32, 32, 3), np.uint8), "rgb8")), "crop"),
    (lambda p: setattr(p, "detector_keypoints", [Keypoint2D(x=1.0, y=1.0, score=2.0)] * 17), "detector keypoints"),
    (lambda p: setattr(p, "detector_keypoints", [Keypoint2D(x=1.0, y=1.0, score=0.5)] * 5), "detector keypoints"),
])
def test_each_fault_is_refused_with_its_kind(change, kind):
    tracked = person(9, BOX)
    change(tracked)
    assert refused_kind(tracked) == kind


def test_a_crop_region_off_by_rounding_is_accepted():
    tracked = person(9, BOX)
    tracked.crop_region.x_min += 1.0
    tracked.crop_region.x_max += 1.0  # a foreign tracker rounding the other way
    assert observation_from_message(tracked, header(1), (320, 240)).region.x0 == square_region(BOX).x0 + 1


def test_one_bad_person_never_costs_the_others_and_a_repeated_id_keeps_the_first():
    bad = person(2, BOX)
    bad.track_id = -1
    message = person_array(7, [person(1, BOX), bad, person(3, BOX), person(3, (10.0, 10.0, 20.0, 40.0))])
    observations, errors = observations_from_message(message)
    assert [o.track_id for o in observations] == [1, 3] and observations[1].box == BOX
    assert sorted(e.kind for e in errors) == ["duplicate track", "track id"]


class Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def error(self, text: str) -> None:
        self.lines.append(("error", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))


def test_the_fault_log_rate_limits_per_kind_and_counts_everything():
    logger = Logger()
    log = FaultLog(logger, period=60.0)
    for number in range(5):
        log.report("crop", f"crop fault {number}")
    log.report("stamp order", "late frame", "warning")
    assert logger.lines == [("error", "crop fault 0"), ("warning", "late frame")]  # one flood hides no other kind
    assert log.values() == {"bad input: crop": 5, "bad input: stamp order": 1}
    log.period = 0.0
    log.report("crop", "crop fault 5")
    assert logger.lines[-1] == ("error", "crop fault 5 (4 more of this kind since the last report)")


def test_an_unstamped_stream_is_told_why_its_frames_are_dropped():
    logger, guard = Logger(), StreamGuard()
    log = FaultLog(logger, period=0.0)
    dropped = [report_stream_check(log, guard.check(stamp, (64, 48)), stamp, (64, 48), "image", "")
               for stamp in ((0, 0), (0, 0), (5, 0), (5, 0))]
    assert dropped == [False, True, False, True]
    (_, unstamped), (_, repeated) = logger.lines
    assert "not after the previous (0, 0)" in unstamped and "header.stamp unset" in unstamped, unstamped
    assert "header.stamp" not in repeated  # a stamped stream repeating one frame is not told it is unstamped
