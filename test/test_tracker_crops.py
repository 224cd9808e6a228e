"""The tracker's rgb8 crops: cut from the BGR frame with only the 16x16 crop flipped to RGB, bit-identical to
the former way (the whole frame converted BGR->RGB, then the crop cut), on a real frame of vtest.avi."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.crop import SquareRegion, cut_crop, rgb_crop, square_region

from conftest import VTEST

pytestmark = pytest.mark.skipif(not VTEST.is_file(), reason="assets missing: run setup.sh")


def test_crops_from_the_bgr_frame_equal_crops_from_an_rgb_copy():
    capture = cv2.VideoCapture(str(VTEST))
    for _ in range(50):
        ok, bgr = capture.read()
        assert ok
    capture.release()
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    height, width = bgr.shape[:2]
    rng = np.random.default_rng(4)
    regions = [square_region(box) for box in [(669, 256, 714, 371), (505, 216, 540, 306), (373, 179, 401, 258)]]
    # Sides below, at and above 16 (enlarged, copied and area-averaged), partly or wholly outside the frame.
    regions += [SquareRegion(int(rng.integers(-60, width)), int(rng.integers(-60, height)), int(side))
                for side in rng.integers(1, 200, 300)]
    regions += [SquareRegion(0, 0, 16), SquareRegion(width - 5, height - 5, 16), SquareRegion(-3, -3, 1000)]
    for region in regions:
        crop = rgb_crop(bgr, region)
        assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8 and crop.flags.c_contiguous
        np.testing.assert_array_equal(crop, cut_crop(rgb, region), err_msg=str(region))
