"""The crop convention: person box -> square pixel region -> 16x16 crop, and keypoints between
image pixels and [-1, 1] crop coordinates.

This is the one implementation used by the dataset generators, the ROS nodes and the offline
tools; the README ("Crop convention") states it in words. In short:

1. Centre = centre of the person box; wanted side = (1 + margin) * max(box width, box height).
2. The square is snapped to whole pixels, rounding halves up (round(t) = floor(t + 0.5)):
   side = max(1, round(wanted side)), x0 = round(cx - side / 2), y0 = round(cy - side / 2).
   It covers pixel columns x0 .. x0+side-1 and rows y0 .. y0+side-1, i.e. [x0, x0 + side] x
   [y0, y0 + side] in continuous pixel coordinates. Snapping makes the recorded region exactly
   the pixels that were averaged, which matters when a whole person is 16 px tall.
3. Pixels of the square outside the image are black (0).
4. The square is resized to 16 x 16 with area interpolation (cv2.INTER_AREA).
5. Crop coordinates: u = 2 (x - x0) / side - 1, v = 2 (y - y0) / side - 1, so the square spans
   [-1, 1] on both axes, (-1, -1) its top-left corner; x, y are continuous pixel coordinates
   (origin at the top-left corner of the top-left pixel, see exlow_pose_msgs/PixelBox.msg).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 16
CROP_MARGIN = 0.1
FILL_VALUE = 0


@dataclass(frozen=True)
class SquareRegion:
    """A square of whole pixels in an image: columns x0 .. x0+side-1, rows y0 .. y0+side-1."""

    x0: int
    y0: int
    side: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in continuous pixel coordinates."""
        return float(self.x0), float(self.y0), float(self.x0 + self.side), float(self.y0 + self.side)


def square_region(box: tuple[float, float, float, float] | np.ndarray, margin: float = CROP_MARGIN) -> SquareRegion:
    """The crop square for a person box (x_min, y_min, x_max, y_max) in pixels."""
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x_min, y_min, x_max, y_max)):
        raise ValueError(f"person box has a non-finite coordinate: {(x_min, y_min, x_max, y_max)}")
    if x_max < x_min or y_max < y_min:
        raise ValueError(f"person box has max < min: {(x_min, y_min, x_max, y_max)}")
    side = max(1, _round_half_up((1.0 + margin) * max(x_max - x_min, y_max - y_min)))
    x0 = _round_half_up((x_min + x_max) / 2 - side / 2)
    y0 = _round_half_up((y_min + y_max) / 2 - side / 2)
    return SquareRegion(x0, y0, side)


def _round_half_up(value: float) -> int:
    # Not Python's round(): halves to even is awkward to reproduce in C++ / CUDA pre-processing.
    return math.floor(value + 0.5)


def cut_crop(image: np.ndarray, region: SquareRegion, size: int = CROP_SIZE) -> np.ndarray:
    """The `size` x `size` crop of `image` (H x W or H x W x C, any channel order) over `region`."""
    height, width = image.shape[:2]
    square = np.full((region.side, region.side, *image.shape[2:]), FILL_VALUE, dtype=image.dtype)
    # Intersection of the square with the image, in image and in square coordinates.
    left, top = max(region.x0, 0), max(region.y0, 0)
    right, bottom = min(region.x0 + region.side, width), min(region.y0 + region.side, height)
    if right > left and bottom > top:
        square[top - region.y0:bottom - region.y0, left - region.x0:right - region.x0] = image[top:bottom, left:right]
    if region.side == size:
        return square
    resized = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    return resized.reshape(size, size, *image.shape[2:])


def rgb_crop(bgr: np.ndarray, region: SquareRegion) -> np.ndarray:
    """The RGB 16x16 crop (what the model reads) of a BGR frame (what OpenCV and the detector use): cut from the
    BGR frame and only the crop flipped, not the whole frame. Area resizing works per channel, so this is
    bit-identical to cutting from an RGB copy of the frame, and far cheaper."""
    return np.ascontiguousarray(cut_crop(bgr, region)[..., ::-1])


def normalise_keypoints(xy: np.ndarray, region: SquareRegion) -> np.ndarray:
    """Pixel coordinates (..., 2) -> crop coordinates in [-1, 1] over `region` (float32)."""
    origin = np.array([region.x0, region.y0], dtype=np.float64)
    return (2.0 * (np.asarray(xy, dtype=np.float64) - origin) / region.side - 1.0).astype(np.float32)


def denormalise_keypoints(uv: np.ndarray, region: SquareRegion) -> np.ndarray:
    """Crop coordinates (..., 2) over `region` -> pixel coordinates (float32)."""
    origin = np.array([region.x0, region.y0], dtype=np.float64)
    return ((np.asarray(uv, dtype=np.float64) + 1.0) * region.side / 2.0 + origin).astype(np.float32)
