"""exlow_pose_demo's progress report (exlow_pose_ros.tools.demo.Progress) where stderr is not a terminal."""

from __future__ import annotations

import io
import re

from exlow_pose_ros.tools.demo import Progress


def test_off_a_terminal_progress_is_plain_lines_of_frames_rate_eta_and_persons():
    stream = io.StringIO()  # not a terminal: lines, no redrawn bar
    progress = Progress(10, stream, line_period=0.0)
    progress.update(0, 0, 0)  # nothing done yet (nodes starting): nothing to say
    progress.update(3, 12, 4)
    progress.update(3, 12, 4)  # no new frame: no repeated line
    progress.update(10, 40, 5)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert re.fullmatch(r"exlow_pose_demo: 3/10 frames \[\d\d:\d\d<.+, .+frame/s\], person-frames 12, tracks 4",
                        lines[0]), lines[0]
    assert lines[1].startswith("exlow_pose_demo: 10/10 frames") and "person-frames 40, tracks 5" in lines[1]


def test_off_a_terminal_lines_come_at_most_once_a_period_but_always_at_the_end():
    stream = io.StringIO()
    progress = Progress(100, stream, line_period=3600.0)
    for done in range(1, 101):
        progress.update(done, done, 1)
    assert [line.split(" frames")[0] for line in stream.getvalue().splitlines()] == \
        ["exlow_pose_demo: 1/100", "exlow_pose_demo: 100/100"]
