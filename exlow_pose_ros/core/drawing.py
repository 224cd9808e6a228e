"""Skeletons and tracked boxes drawn onto BGR images: the pose node's annotated image and exlow_pose_video.

Limbs follow COCO17_LIMBS; the person's left side is drawn in LEFT_COLOUR, the right side in RIGHT_COLOUR,
limbs across the body (shoulders, hips, eyes) in CENTRE_COLOUR. Line thickness and keypoint radius grow
with the person's box height, so a 20 px person gets hairlines and a 300 px person a readable skeleton.
Boxes and id labels take a per-track colour. Keypoints that are not finite are not drawn.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from .keypoints import COCO17_LIMBS, COCO17_NAMES

# BGR. Blue-ish left / orange right: distinct from each other, from white and from most backgrounds.
LEFT_COLOUR = (255, 160, 0)
RIGHT_COLOUR = (0, 140, 255)
CENTRE_COLOUR = (255, 255, 255)

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel keypoints matter when a whole person is 20 px tall
_SCALE = 1 << _SHIFT
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# cv2 takes int32 (fixed-point) coordinates: farther points are clamped to this many px (they are off-image
# anyway), so a foreign tracker's absurd but finite box cannot raise OverflowError while drawing.
_LIMIT = 1e7


class _Boxed(Protocol):
    track_id: int
    box: Sequence[float]


class _Skeleton(_Boxed, Protocol):
    keypoints: Any  # (17, 2) or (17, 3) pixels


def _side(index: int) -> int:
    name = COCO17_NAMES[index]
    return 1 if name.startswith("left_") else -1 if name.startswith("right_") else 0


def _limb_colour(a: int, b: int) -> tuple[int, int, int]:
    sides = {_side(a), _side(b)} - {0}
    if sides == {1}:
        return LEFT_COLOUR
    if sides == {-1}:
        return RIGHT_COLOUR
    return CENTRE_COLOUR


KEYPOINT_COLOURS: tuple[tuple[int, int, int], ...] = tuple(
    LEFT_COLOUR if _side(i) == 1 else RIGHT_COLOUR if _side(i) == -1 else CENTRE_COLOUR
    for i in range(len(COCO17_NAMES)))
LIMB_COLOURS: tuple[tuple[int, int, int], ...] = tuple(_limb_colour(a, b) for a, b in COCO17_LIMBS)


def _hue(bgr: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(bgr[2] / 255, bgr[1] / 255, bgr[0] / 255)[0]


# Track colours keep clear of the limb hues, so a box never looks like part of a skeleton side.
_LIMB_HUES = sorted(_hue(c) for c in (LEFT_COLOUR, RIGHT_COLOUR))
_HUE_GAP = 35 / 360


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per track id (golden-ratio hue steps keep neighbouring ids apart)."""
    low, high = _LIMB_HUES
    # The two hue arcs between the limb hues, each shrunk by the gap at both ends, laid end to end.
    arcs = [(low + _HUE_GAP, high - _HUE_GAP), (high + _HUE_GAP, low + 1 - _HUE_GAP)]
    position = (int(track_id) * 0.618033988749895) % 1.0 * sum(b - a for a, b in arcs)
    first = arcs[0][1] - arcs[0][0]
    hue = arcs[0][0] + position if position < first else arcs[1][0] + position - first
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.85, 1.0)
    return round(b * 255), round(g * 255), round(r * 255)


def limb_thickness(box_height: float) -> int:
    """Line thickness in px for a person `box_height` px tall: 1 px up to ~90 px, at most 6 px."""
    return int(np.clip(round(box_height / 60.0), 1, 6))


def keypoint_radius(box_height: float) -> float:
    """Keypoint dot radius in px: a bit wider than the limbs so joints stay visible."""
    return float(np.clip(box_height / 45.0, 1.0, 8.0))


def _clamp(value: float) -> float:
    return min(max(float(value), -_LIMIT), _LIMIT)


def _fixed(point: np.ndarray) -> tuple[int, int]:
    # Pixel centres sit at +0.5 in the continuous convention (crop.py); cv2 draws on integer centres.
    return round((_clamp(point[0]) - 0.5) * _SCALE), round((_clamp(point[1]) - 0.5) * _SCALE)


def _draw_box(image: np.ndarray, track_id: int, box: Sequence[float], outline: bool, label: bool) -> None:
    colour = track_colour(track_id)
    x_min, y_min, x_max, y_max = (_clamp(v) for v in box)
    # Box lines and labels follow the image size (not the person's): same look for every person in a frame,
    # readable on full-HD frames, small enough on 640 x 480 ones.
    size = min(image.shape[:2])
    if outline:
        cv2.rectangle(image, _fixed(np.array([x_min + 0.5, y_min + 0.5])),
                      _fixed(np.array([x_max - 0.5, y_max - 0.5])), colour, max(1, round(size / 600)), cv2.LINE_8,
                      _SHIFT)
    if not label:
        return
    text = str(track_id)
    scale = min(max(size / 1650, 0.35), 1.5)
    weight = 1 if scale < 0.8 else 2
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, weight)
    pad = max(1, round(3 * scale))
    # Label above the box, or inside its top when the box touches the image top.
    left = min(max(round(x_min), 0), max(0, image.shape[1] - width - 2 * pad))
    top = round(y_min) - height - baseline - 2 * pad
    if top < 0:
        top = round(y_min) + 1
    cv2.rectangle(image, (left, top), (left + width + 2 * pad, top + height + baseline + 2 * pad), colour, cv2.FILLED)
    luma = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    text_colour = (0, 0, 0) if luma > 110 else (255, 255, 255)  # readable on dark blues and purples too
    cv2.putText(image, text, (left + pad, top + pad + height), _FONT, scale, text_colour, weight, cv2.LINE_AA)


def draw_skeletons(bgr: np.ndarray, skeletons: Sequence[_Skeleton], draw_boxes: bool = True,
                   draw_ids: bool = True) -> np.ndarray:
    """A copy of `bgr` with each skeleton (track_id, box, keypoints (17, 2|3) px) drawn on it."""
    image = bgr.copy()
    for skeleton in skeletons:
        _draw_box(image, skeleton.track_id, skeleton.box, draw_boxes, draw_ids)
        points = np.asarray(skeleton.keypoints, dtype=np.float64)[:, :2]
        valid = np.isfinite(points).all(axis=1)
        height = max(float(skeleton.box[3]) - float(skeleton.box[1]), 1.0)
        thickness, radius = limb_thickness(height), keypoint_radius(height)
        for (a, b), colour in zip(COCO17_LIMBS, LIMB_COLOURS, strict=True):
            if valid[a] and valid[b]:
                cv2.line(image, _fixed(points[a]), _fixed(points[b]), colour, thickness, cv2.LINE_AA, _SHIFT)
        for index in np.flatnonzero(valid):
            # Dots go on top of the limbs; filled, no outline, so they cover as little of the person as possible.
            cv2.circle(image, _fixed(points[index]), round(radius * _SCALE), KEYPOINT_COLOURS[index], cv2.FILLED,
                       cv2.LINE_AA, _SHIFT)
    return image


def draw_tracked_boxes(bgr: np.ndarray, boxes: Sequence[_Boxed], draw_ids: bool = True) -> np.ndarray:
    """A copy of `bgr` with tracked boxes (track_id, box) that have no skeleton yet: box and id only."""
    image = bgr.copy()
    for tracked in boxes:
        _draw_box(image, tracked.track_id, tracked.box, True, draw_ids)
    return image
