"""exlow_pose_msgs <-> the pure-Python pipeline types. Checks foreign input: a tracker other than ours can
publish TrackedPersonArray, so every value is validated and a bad person raises ValueError naming it."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from exlow_pose_msgs.msg import Keypoint2D, PixelBox, Skeleton2D, Skeleton2DArray, TrackedPerson
from std_msgs.msg import Header

from .crop import CROP_SIZE, SquareRegion
from .image_conversion import image_to_numpy, numpy_to_image
from .person_tracker import TrackedBox
from .pose_estimator import PersonObservation, SkeletonEstimate


def pixel_box(box: tuple[float, float, float, float]) -> PixelBox:
    return PixelBox(x_min=float(box[0]), y_min=float(box[1]), x_max=float(box[2]), y_max=float(box[3]))


def tracked_person_message(tracked: TrackedBox, region: SquareRegion, crop_rgb: np.ndarray,
                           header: Header) -> TrackedPerson:
    return TrackedPerson(track_id=tracked.track_id, box=pixel_box(tracked.box), score=float(tracked.score),
                         crop_region=pixel_box(region.box), crop=numpy_to_image(crop_rgb, "rgb8", header))


def observation_from_message(person: TrackedPerson, header: Header) -> PersonObservation:
    """Validate one tracked person; raises ValueError with the offending value."""
    box = (person.box.x_min, person.box.y_min, person.box.x_max, person.box.y_max)
    region_box = (person.crop_region.x_min, person.crop_region.y_min, person.crop_region.x_max,
                  person.crop_region.y_max)
    if not all(math.isfinite(v) for v in (*box, *region_box, person.score)):
        raise ValueError(f"track {person.track_id}: non-finite box, crop_region or score {box} {region_box}")
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"track {person.track_id}: box with max < min {box}")
    side = region_box[2] - region_box[0]
    if side <= 0 or abs((region_box[3] - region_box[1]) - side) > 1e-3:
        raise ValueError(f"track {person.track_id}: crop_region {region_box} is not a square with positive side")
    if person.crop.encoding != "rgb8" or (person.crop.width, person.crop.height) != (CROP_SIZE, CROP_SIZE):
        raise ValueError(f"track {person.track_id}: crop is {person.crop.width}x{person.crop.height} "
                         f"{person.crop.encoding!r}, expected {CROP_SIZE}x{CROP_SIZE} 'rgb8'")
    crop = image_to_numpy(person.crop)
    region = SquareRegion(round(region_box[0]), round(region_box[1]), max(1, round(side)))
    return PersonObservation(int(person.track_id), box, float(person.score), region, crop, header)


def skeleton_message(estimate: SkeletonEstimate, layout: str = Skeleton2D.LAYOUT_COCO17) -> Skeleton2D:
    """estimate.stamp is the described frame's std_msgs/Header."""
    header: Header = estimate.stamp
    score = float(np.clip(estimate.score, 0.0, 1.0))
    keypoints = [Keypoint2D(x=float(x), y=float(y), score=score) if math.isfinite(x) and math.isfinite(y)
                 else Keypoint2D(x=0.0, y=0.0, score=0.0) for x, y in estimate.keypoints]
    return Skeleton2D(track_id=estimate.track_id, stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec),
                      box=pixel_box(estimate.box), layout=layout, keypoints=keypoints, score=score)


def skeleton_array(header: Header, width: int, height: int, estimates: list[SkeletonEstimate]) -> Skeleton2DArray:
    return Skeleton2DArray(header=header, image_width=width, image_height=height,
                           skeletons=[skeleton_message(e) for e in estimates])


def stamp_key(header: Header) -> tuple[int, int]:
    return int(header.stamp.sec), int(header.stamp.nanosec)
