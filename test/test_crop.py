"""The crop convention (exlow_pose_ros.core.crop), checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from exlow_pose_ros.core.crop import (
    CROP_SIZE,
    SquareRegion,
    cut_crop,
    denormalise_keypoints,
    normalise_keypoints,
    square_region,
)
from exlow_pose_ros.core.keypoints import COCO17_FLIP_PERMUTATION, COCO17_NAMES


def test_square_is_centred_on_the_box_with_margin_and_snapped_to_pixels():
    # Box 40 wide, 100 tall, centre (120, 250): side = round(1.1 * 100) = 110, x0 = round(120 - 55) = 65.
    assert square_region((100, 200, 140, 300)) == SquareRegion(65, 195, 110)
    # Halves round up (not to even): side 1.1 * 15 = 16.5 -> 17; x0 = 17.5 - 8.5 = 9; y0 = 15 - 8.5 = 6.5 -> 7
    # (Python's round would give 16 and 6).
    assert square_region((10, 10, 25, 20)) == SquareRegion(9, 7, 17)
    assert square_region((0, 0, 10, 10), margin=0.0).box == (0.0, 0.0, 10.0, 10.0)


def test_degenerate_box_gets_a_one_pixel_square_and_bad_boxes_are_refused():
    assert square_region((5.2, 7.9, 5.2, 7.9)).side == 1
    with pytest.raises(ValueError, match="non-finite"):
        square_region((0, 0, np.nan, 10))
    with pytest.raises(ValueError, match="max < min"):
        square_region((10, 0, 5, 10))


def test_crop_of_a_square_that_is_already_16_pixels_is_the_pixels_themselves():
    image = np.arange(40 * 50 * 3, dtype=np.uint32).reshape(40, 50, 3).astype(np.uint8)
    region = SquareRegion(7, 11, CROP_SIZE)
    np.testing.assert_array_equal(cut_crop(image, region), image[11:27, 7:23])


def test_area_interpolation_averages_whole_blocks():
    # A 32x32 square of 2x2 blocks; area resizing to 16x16 must give each block's mean exactly.
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 64, size=(16, 16, 3)).astype(np.uint8) * 4
    image = np.zeros((100, 100, 3), np.uint8)
    image[20:52, 30:62] = np.kron(blocks, np.ones((2, 2, 1), np.uint8))
    image[20:52, 30:62][::2, ::2] += 2  # one pixel of four is brighter by 2: block mean +0.5
    crop = cut_crop(image, SquareRegion(30, 20, 32))
    assert np.all(np.abs(crop.astype(int) - blocks.astype(int)) <= 1)


def test_outside_the_image_is_black_and_inside_is_kept():
    image = np.full((20, 20, 3), 200, np.uint8)
    crop = cut_crop(image, SquareRegion(-16, -16, 32))  # image covers the bottom-right quarter
    assert crop.shape == (16, 16, 3)
    assert np.all(crop[:8, :] == 0) and np.all(crop[:, :8] == 0)
    assert np.all(crop[8:, 8:] == 200)
    assert np.all(cut_crop(image, SquareRegion(100, 100, 10)) == 0)


def test_single_channel_and_tiny_regions_work():
    image = np.full((30, 30), 77, np.uint8)
    assert cut_crop(image, SquareRegion(3, 3, 4)).shape == (16, 16)
    assert np.all(cut_crop(image, SquareRegion(3, 3, 4)) == 77)


def test_keypoints_map_to_minus_one_and_one_at_the_square_edges_and_back():
    region = SquareRegion(10, 20, 40)
    pixels = np.array([[10.0, 20.0], [50.0, 60.0], [30.0, 40.0], [20.0, 50.0]])
    expected = np.array([[-1, -1], [1, 1], [0, 0], [-0.5, 0.5]], np.float32)
    np.testing.assert_allclose(normalise_keypoints(pixels, region), expected)
    rng = np.random.default_rng(1)
    points = rng.uniform(-100, 400, size=(5, 17, 2))
    np.testing.assert_allclose(denormalise_keypoints(normalise_keypoints(points, region), region), points, atol=1e-3)


def test_flip_permutation_swaps_left_and_right_and_keeps_the_centre():
    for index, partner in enumerate(COCO17_FLIP_PERMUTATION):
        name, mirrored = COCO17_NAMES[index], COCO17_NAMES[partner]
        if name == "nose":
            assert partner == index
        else:
            assert {name.split("_", 1)[0], mirrored.split("_", 1)[0]} == {"left", "right"}
            assert name.split("_", 1)[1] == mirrored.split("_", 1)[1]
    assert all(COCO17_FLIP_PERMUTATION[p] == i for i, p in enumerate(COCO17_FLIP_PERMUTATION))
