"""Tiled detection (exlow_pose_ros.core.tiles): the tiles cover the frame, tile detections land in frame pixels
once each, and on a real frame the tiles find tiny people the full-frame pass misses."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.tiles import TILE_OVERLAP, detect_tiled, tile_origins

from conftest import DETECTOR, VTEST


@pytest.mark.parametrize("width,height,tile", [(1280, 720, 320), (1000, 333, 256), (321, 100, 320)])
def test_tiles_cover_the_frame_with_the_overlap_and_stay_inside_it(width, height, tile):
    origins = tile_origins(width, height, tile)
    covered = np.zeros((height, width), bool)
    for x0, y0 in origins:
        assert 0 <= x0 <= max(0, width - tile) and 0 <= y0 <= max(0, height - tile)
        covered[y0:y0 + tile, x0:x0 + tile] = True
    assert covered.all()
    for axis in (0, 1):
        starts = sorted({origin[axis] for origin in origins})
        assert all(b - a <= tile * (1 - TILE_OVERLAP) for a, b in itertools.pairwise(starts))
    assert tile_origins(300, 200, 320) == [] and tile_origins(1280, 720, 0) == []


def white_blobs(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in detector: every white rectangle is a person, with all 17 keypoints at its centre."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 128).astype(np.uint8))
    boxes = np.array([(x, y, x + w, y + h, 0.9, 0) for x, y, w, h, _ in stats[1:count]], np.float64).reshape(-1, 6)
    points = np.zeros((len(boxes), 17, 3), np.float32)
    points[..., 0] = ((boxes[:, 0] + boxes[:, 2]) / 2)[:, None]
    points[..., 1] = ((boxes[:, 1] + boxes[:, 3]) / 2)[:, None]
    points[..., 2] = 0.8
    return boxes, points


def test_tile_detections_land_in_frame_pixels_once_each():
    frame = np.zeros((720, 1280, 3), np.uint8)
    small = [(50, 60), (235, 300), (470, 250), (1250, 690), (700, 395)]  # some across the tiles' inner edges
    for x, y in small:
        frame[y:y + 24, x:x + 9] = 255
    frame[100:400, 900:1000] = 255  # a large person: taller than the overlap, so only the full frame's
    full = white_blobs(np.where(np.arange(1280)[None, :, None] >= 900, frame, 0))  # the full pass: the large one
    boxes, points = detect_tiled(white_blobs, frame, 320, *full)
    assert len(boxes) == len(small) + 1
    expected = sorted([(x, y, min(x + 9, 1280), min(y + 24, 720)) for x, y in small] + [(900, 100, 1000, 400)])
    assert sorted(tuple(int(v) for v in box[:4]) for box in boxes) == expected
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    assert np.allclose(points[:, 0, :2], centres)


@pytest.mark.skipif(not (VTEST.exists() and DETECTOR.exists()), reason="needs scripts/setup.sh's assets")
def test_tiles_find_tiny_people_in_a_full_size_frame_that_the_full_frame_pass_misses():
    from exlow_pose_ros.core.person_tracker import PersonTracker

    capture = cv2.VideoCapture(str(VTEST))
    for _ in range(151):
        ok, frame = capture.read()
    assert ok
    # vtest's pedestrians (about 80 px tall) shrunk to about 32 px, on a camera-sized frame of its road colour.
    small = cv2.resize(frame, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    canvas = np.empty((360, 640, 3), np.uint8)
    canvas[:] = small.reshape(-1, 3).mean(0)
    canvas[97:97 + small.shape[0], 211:211 + small.shape[1]] = small
    plain = PersonTracker(DETECTOR, 640, max_upscale=8.0)
    tiled = PersonTracker(DETECTOR, 640, max_upscale=8.0, tile_size=160)
    plain.track(canvas)
    tiled.track(canvas)
    found = tiled.detections.boxes
    # At 640 the full-frame pass sees them at their own size; the 160 px tiles enlarge them 4x.
    assert len(found) >= len(plain.detections.boxes) + 3, (len(plain.detections.boxes), len(found))
    # Every person the tiles found lies on the shrunk frame, about the size of a shrunk pedestrian.
    assert (found[:, 0] >= 211 - 2).all() and (found[:, 2] <= 211 + small.shape[1] + 2).all()
    heights = found[:, 3] - found[:, 1]
    assert ((heights > 8) & (heights < 45)).all(), heights
