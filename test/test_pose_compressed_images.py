"""The pose node behind a camera that publishes only compressed images (compressed_input): every frame is drawn
on its own decoded source image, and a source image that does not decode is reported while the node goes on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
from test_pose_stream import pose_node_harness

from robustness_support import header, person, person_array

PERIOD = 100_000_000  # ns


@pytest.fixture(scope="module")
def compressed_node(tmp_path_factory):
    with pose_node_harness(tmp_path_factory, "pose_compressed", {"output_mode": "latest", "compressed_input": True},
                           compressed=True) as harness:
        yield harness


def test_frames_are_drawn_on_their_compressed_source_images(compressed_node):
    harness = compressed_node
    stamps = [5_000_000_000_000 + k * PERIOD for k in range(4)]
    for k, stamp in enumerate(stamps):
        picture = np.full((120, 160, 3), 30 + 50 * k, np.uint8)  # each frame its own grey: which image was drawn
        data = cv2.imencode(".png", picture)[1].tobytes() if k != 2 else b"\x89PNG not really"
        harness.compressed.publish(CompressedImage(header=header(stamp), format="png", data=data))
        harness.ros.spin_until(lambda: False, 0.1)
        harness.persons.publish(person_array(stamp, [person(4, (20.0, 10.0, 32.0, 42.0))]))
    harness.wait_for_arrays(len(stamps))
    good = [s for k, s in enumerate(stamps) if k != 2]
    assert harness.ros.spin_until(lambda: set(good) <= set(harness.jpegs), 10), sorted(harness.jpegs)
    for k, stamp in enumerate(stamps):
        if k == 2:
            continue
        drawn = cv2.imdecode(np.frombuffer(bytes(harness.jpegs[stamp].data), np.uint8), cv2.IMREAD_COLOR)
        assert drawn.shape == (120, 160, 3)
        assert abs(float(np.median(drawn)) - (30 + 50 * k)) < 4, "drawn on another frame's image"
    harness.wait_faults("undecodable", 1)
    assert stamps[2] not in harness.jpegs
