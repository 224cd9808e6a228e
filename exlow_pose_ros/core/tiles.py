"""Tiled detection: the detector also runs on overlapping square tiles of the frame, each enlarged on its own.

Why: the detector finds a person only when it sees them enlarged. People 12-32 px tall in a full-size camera
frame (1280x720 at imgsz 1280) are seen at about their own size, and YOLO11n-pose finds 0-11 % of them; the
same people in a frame enlarged up to 8x are found 79-96 % of the time (README "Results", "Read this first").
Tiles of `tile_size` pixels, each run at the detector's input size (max_upscale caps the enlargement as for a
small frame), give that enlargement for the price of one detector pass per tile (SAHI-style slicing).

A person cut by a tile's inner edge is found whole in a neighbouring tile, since tiles overlap by a quarter of
their side; so a tile's detections that touch an inner edge are dropped, and only people at most that overlap
tall are taken from tiles. Bigger people come from the full-frame pass, which always runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .detection_merge import MERGE_IOU, merge_detections

TILE_OVERLAP = 0.25  # of the tile side: people up to this tall lie wholly inside some tile
EDGE_MARGIN_PX = 1.0  # a box this close to a tile's inner edge was cut by it

Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def tile_origins(width: int, height: int, tile: int, overlap: float = TILE_OVERLAP) -> list[tuple[int, int]]:
    """Top-left corners (x0, y0) of `tile` x `tile` squares covering a width x height frame, neighbours
    overlapping by at least `overlap` x tile; the last row and column are moved in to end at the frame's edge.
    Empty when the frame fits in one tile (the full-frame pass already sees it as a tile would)."""
    if tile <= 0 or (width <= tile and height <= tile):
        return []
    step = max(1, int(tile * (1.0 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        count = math.ceil((length - tile) / step) + 1
        return sorted({min(k * step, length - tile) for k in range(count)})

    return [(x0, y0) for y0 in starts(height) for x0 in starts(width)]


def _whole_in_tile(boxes: np.ndarray, x0: int, y0: int, tile_w: int, tile_h: int, width: int, height: int,
                   max_height: float) -> np.ndarray:
    """Which tile detections (frame pixels) neither touch an inner edge of the tile nor exceed max_height."""
    left, top, right, bottom = x0, y0, x0 + tile_w, y0 + tile_h
    keep = (boxes[:, 3] - boxes[:, 1]) <= max_height
    if left > 0:
        keep &= boxes[:, 0] > left + EDGE_MARGIN_PX
    if top > 0:
        keep &= boxes[:, 1] > top + EDGE_MARGIN_PX
    if right < width:
        keep &= boxes[:, 2] < right - EDGE_MARGIN_PX
    if bottom < height:
        keep &= boxes[:, 3] < bottom - EDGE_MARGIN_PX
    return keep


def detect_tiled(detect: Detect, bgr: np.ndarray, tile: int, boxes: np.ndarray, keypoints: np.ndarray,
                 overlap: float = TILE_OVERLAP) -> tuple[np.ndarray, np.ndarray]:
    """The full frame's detections (boxes (N, 6: x_min, y_min, x_max, y_max, score, class), keypoints (N, 17, 3))
    merged with `detect` run on every tile of the frame: tile detections are moved to frame pixels, those cut by
    a tile's inner edge or taller than the overlap dropped, and the rest merged one tile at a time
    (detection_merge: a person found twice keeps the detection with the more confident keypoints)."""
    height, width = bgr.shape[:2]
    tile_w, tile_h = min(tile, width), min(tile, height)
    for x0, y0 in tile_origins(width, height, tile, overlap):
        found, points = detect(np.ascontiguousarray(bgr[y0:y0 + tile_h, x0:x0 + tile_w]))
        if points is None or len(found) == 0:
            continue
        found = np.array(found, np.float64, copy=True).reshape(-1, 6)
        points = np.array(points, np.float32, copy=True)
        found[:, [0, 2]] += x0
        found[:, [1, 3]] += y0
        points[..., 0] += x0
        points[..., 1] += y0
        keep = _whole_in_tile(found, x0, y0, tile_w, tile_h, width, height, overlap * tile)
        if keep.any():
            boxes, keypoints = merge_detections(boxes, keypoints, found[keep], points[keep], MERGE_IOU)
    return boxes, keypoints
