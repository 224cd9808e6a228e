"""Skeletons as visualization_msgs: a MarkerArray in the camera's optical frame for RViz, and one ImageMarker
per frame in image pixels, which image viewers (Foxglove's image panel) draw over the picture.

Colours follow the annotated image (drawing.LIMB_COLOURS: the person's left blue, right orange). Marker ids
are positions in the frame's list, not track ids: every id is unique whatever ids a tracker sends, and each
array starts with DELETEALL so nothing of an earlier frame stays behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import ImageMarker, Marker, MarkerArray

from ..core.drawing import LIMB_COLOURS
from ..core.keypoints import COCO17_LIMBS
from ..core.pose_estimator import SkeletonEstimate

NAMESPACE = "exlow_pose"
LIFETIME = Duration(sec=0, nanosec=500_000_000)  # a skeleton vanishes if its track's next frame never comes
LIMB_RGBA = [ColorRGBA(r=b / 255, g=g / 255, b=r / 255, a=1.0) for b, g, r in LIMB_COLOURS]  # drawing is BGR


def pinhole(info: CameraInfo | None) -> tuple[float, float, float, float] | None:
    """(fx, fy, cx, cy) of a usable camera_info (K of a calibrated camera), else None."""
    if info is None or len(info.k) != 9 or info.k[0] <= 0 or info.k[4] <= 0:
        return None
    return float(info.k[0]), float(info.k[4]), float(info.k[2]), float(info.k[5])


def image_plane_points(pixels: np.ndarray, width: int, height: int, depth: float, metres_per_pixel: float,
                       camera: tuple[float, float, float, float] | None) -> np.ndarray:
    """Pixels (N, 2) -> points (N, 3) on the plane `depth` metres along the optical axis (REP 103: x right,
    y down, z forward). With the camera's pinhole (fx, fy, cx, cy) each point lies on its pixel's ray, so the
    markers cover the image in RViz's Camera display; without one the image centre is on the axis and a pixel
    is `metres_per_pixel` wide."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if camera is not None:
        fx, fy, cx, cy = camera
        # K counts pixel centres at whole numbers (OpenCV); our pixel coordinates put them at +0.5 (crop.py).
        x, y = (pixels[:, 0] - 0.5 - cx) / fx * depth, (pixels[:, 1] - 0.5 - cy) / fy * depth
    else:
        x, y = (pixels[:, 0] - width / 2) * metres_per_pixel, (pixels[:, 1] - height / 2) * metres_per_pixel
    return np.stack([x, y, np.full(len(pixels), depth)], axis=1)


def _limb_ends(estimate: SkeletonEstimate) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(limb index, start, end) of every limb whose two keypoints are finite."""
    points = np.asarray(estimate.keypoints, dtype=np.float64)[:, :2]
    return [(index, points[a], points[b]) for index, (a, b) in enumerate(COCO17_LIMBS)
            if np.isfinite(points[a]).all() and np.isfinite(points[b]).all()]


def skeleton_markers(header: Header, width: int, height: int, estimates: Sequence[SkeletonEstimate],
                     depth: float, metres_per_pixel: float, camera: CameraInfo | None = None) -> MarkerArray:
    """One LINE_LIST per skeleton, in header.frame_id (the camera's optical frame)."""
    markers = [Marker(header=header, ns=NAMESPACE, action=Marker.DELETEALL)]
    intrinsics = pinhole(camera)
    line_width = max(depth / intrinsics[0] if intrinsics else metres_per_pixel, 1e-6) * 2.0  # about 2 px
    for number, estimate in enumerate(estimates):
        limbs = _limb_ends(estimate)
        marker = Marker(header=header, ns=NAMESPACE, id=number, type=Marker.LINE_LIST, action=Marker.ADD,
                        lifetime=LIFETIME)
        marker.pose.orientation.w = 1.0
        marker.scale.x = line_width
        ends = np.array([end for _, start, stop in limbs for end in (start, stop)]).reshape(-1, 2)
        for x, y, z in image_plane_points(ends, width, height, depth, metres_per_pixel, intrinsics):
            marker.points.append(Point(x=float(x), y=float(y), z=float(z)))
        marker.colors = [LIMB_RGBA[index] for index, _, _ in limbs for _ in range(2)]
        markers.append(marker)
    return MarkerArray(markers=markers)


def skeleton_image_marker(header: Header, estimates: Sequence[SkeletonEstimate]) -> ImageMarker:
    """Every skeleton of the frame as one LINE_LIST in image pixels (one message per frame: viewers show the
    newest message of a topic)."""
    marker = ImageMarker(header=header, ns=NAMESPACE, id=0, type=ImageMarker.LINE_LIST, action=ImageMarker.ADD,
                         scale=2.0, lifetime=LIFETIME)
    for estimate in estimates:
        for index, start, stop in _limb_ends(estimate):
            marker.points += [Point(x=float(start[0]), y=float(start[1])), Point(x=float(stop[0]), y=float(stop[1]))]
            marker.outline_colors += [LIMB_RGBA[index]] * 2
    return marker
