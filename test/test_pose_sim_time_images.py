"""The pose node on a bag played with use_sim_time, behind a camera faster than its tracker: the last frames
still go out when the input stops (its timers run on the wall clock, not on a /clock that stopped), and every
frame is drawn on its own source image although dozens of newer images came in before it was complete."""

from __future__ import annotations

import numpy as np
import pytest
from test_pose_stream import pose_node_harness

from exlow_pose_ros.nodes.image_conversion import numpy_to_image

from robustness_support import header, person, person_array, stamp_ns

CAMERA_IMAGES_PER_TRACKED_FRAME = 36  # a 30 fps camera in front of a ~1 Hz tracker (the old store kept 30)
CAMERA_PERIOD = 33_000_000  # ns


@pytest.fixture(scope="module")
def sim_time_node(tmp_path_factory):
    # use_sim_time and no /clock publisher: ROS time stands still, as after a bag's end.
    with pose_node_harness(tmp_path_factory, "pose_sim_time",
                           {"output_mode": "centre", "flush_timeout": 0.5, "use_sim_time": True}) as harness:
        yield harness


def test_last_frames_flushed_without_a_clock_and_every_frame_drawn_on_its_own_image(sim_time_node):
    harness = sim_time_node
    tracked = [1_000_000_000_000 + k * CAMERA_IMAGES_PER_TRACKED_FRAME * CAMERA_PERIOD for k in range(5)]
    small = np.full((60, 80, 3), 40, np.uint8)  # small images: DDS carries 180 of them quickly
    for stamp in tracked:
        for index in range(CAMERA_IMAGES_PER_TRACKED_FRAME):  # the tracker sees the first; the camera runs on
            harness.images.publish(numpy_to_image(small, "bgr8", header(stamp + index * CAMERA_PERIOD)))
            harness.ros.spin_until(lambda: False, 0.005)  # paced like a camera, not one burst past the queue
        harness.ros.spin_until(lambda: False, 0.2)  # the images arrive before the tracker's result, as live
        harness.persons.publish(person_array(stamp, [person(7, (20.0, 10.0, 32.0, 42.0))]))
    # In centre mode the last two frames are owed until flush_timeout passes without input.
    arrays = harness.wait_for_arrays(len(tracked), timeout=20)
    assert [stamp_ns(a.header) for a in arrays] == tracked
    assert all([s.track_id for s in a.skeletons] == [7] for a in arrays)
    assert harness.ros.spin_until(lambda: set(tracked) <= set(harness.jpegs), 10), \
        f"frames without an annotated image: {sorted(set(tracked) - set(harness.jpegs))}"
    # Done with: every frame drawn, the store holds only the images newer than the last tracked frame (the
    # tracker may still send them).
    harness.wait_diagnostics({"frames waiting": "0", "source images kept": str(CAMERA_IMAGES_PER_TRACKED_FRAME - 1)})
    assert harness.faults("missing source image") == 0
