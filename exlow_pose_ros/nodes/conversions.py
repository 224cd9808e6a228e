"""exlow_pose_msgs <-> the pure-Python pipeline types. Checks foreign input: a tracker other than ours can
publish TrackedPersonArray, so every value is validated and a bad person raises ValueError naming it."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from exlow_pose_msgs.msg import (
    Keypoint2D,
    PixelBox,
    Skeleton2D,
    Skeleton2DArray,
    TrackedPerson,
    TrackedPersonArray,
)
from std_msgs.msg import Header

from ..core.crop import CROP_SIZE, SquareRegion, square_region
from ..core.keypoints import NUM_KEYPOINTS
from ..core.person_tracker import TrackedBox
from ..core.pose_estimator import PersonObservation, SkeletonEstimate
from .image_conversion import ImageConversionError, image_to_numpy, numpy_to_image


def pixel_box(box: tuple[float, float, float, float]) -> PixelBox:
    return PixelBox(x_min=float(box[0]), y_min=float(box[1]), x_max=float(box[2]), y_max=float(box[3]))


def tracked_person_message(tracked: TrackedBox, region: SquareRegion, crop_rgb: np.ndarray,
                           header: Header) -> TrackedPerson:
    keypoints = [] if tracked.keypoints is None else [
        Keypoint2D(x=float(x), y=float(y), score=float(np.clip(c, 0.0, 1.0))) for x, y, c in tracked.keypoints]
    return TrackedPerson(track_id=tracked.track_id, box=pixel_box(tracked.box), score=float(tracked.score),
                         crop_region=pixel_box(region.box), crop=numpy_to_image(crop_rgb, "rgb8", header),
                         detector_keypoints=keypoints)


class InputError(ValueError):
    """Foreign or broken input that is dropped; the text names the offending value and `kind` the class of
    fault (nodes rate-limit their reports per kind and count each kind in their diagnostics)."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


# A foreign tracker may round the crop square differently (half to even, floor): one pixel either way is fine.
CROP_REGION_TOLERANCE_PX = 1.0


def check_box(track: int, box: tuple[float, float, float, float], frame_size: tuple[int, int] | None = None
              ) -> None:
    """Raise InputError unless `box` (x_min, y_min, x_max, y_max) is finite, has an area and, when the frame
    size (width, height) is known, overlaps the frame. Boxes partly outside are fine: people at the border."""
    if not all(math.isfinite(v) for v in box):
        raise InputError("non-finite", f"track {track}: non-finite value in box {box}")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise InputError("degenerate box", f"track {track}: box {box} has no area (x_max <= x_min or "
                         "y_max <= y_min)")
    if frame_size is not None:
        width, height = frame_size
        if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            raise InputError("outside frame", f"track {track}: box {box} lies wholly outside the {width}x{height} "
                             "frame")


def observation_from_message(person: TrackedPerson, header: Header,
                             frame_size: tuple[int, int] | None = None) -> PersonObservation:
    """Validate one tracked person of a frame of `frame_size` (width, height; None when unknown); raises
    InputError with the offending value."""
    track = person.track_id
    box = (person.box.x_min, person.box.y_min, person.box.x_max, person.box.y_max)
    region_box = (person.crop_region.x_min, person.crop_region.y_min, person.crop_region.x_max,
                  person.crop_region.y_max)
    if not all(math.isfinite(v) for v in (*box, *region_box, person.score)):
        raise InputError("non-finite", f"track {track}: non-finite value in box {box}, crop_region {region_box} "
                         f"or score {person.score}")
    if track < 0:
        raise InputError("track id", f"track id {track} is negative; TrackedPerson.msg asks for ids >= 0")
    check_box(track, box, frame_size)
    side = region_box[2] - region_box[0]
    if side <= 0 or abs((region_box[3] - region_box[1]) - side) > 1e-3:
        raise InputError("crop region", f"track {track}: crop_region {region_box} is not a square with positive "
                         "side")
    # Poses map back to pixels through the region, and the model learnt the crop convention's framing: a
    # region of another size or place would put every keypoint somewhere else.
    expected = square_region(box).box
    tolerance = CROP_REGION_TOLERANCE_PX + 1e-6 * max(abs(v) for v in (*region_box, *expected))  # float32 wire
    if max(abs(a - b) for a, b in zip(region_box, expected, strict=True)) > tolerance:
        raise InputError("crop region", f"track {track}: crop_region {region_box} is not the crop convention's "
                         f"square {expected} for box {box} (README, \"Crop convention\")")
    if person.crop.encoding not in ("rgb8", "bgr8") or (person.crop.width, person.crop.height) != (CROP_SIZE,
                                                                                                   CROP_SIZE):
        raise InputError("crop", f"track {track}: crop is {person.crop.width}x{person.crop.height} "
                         f"{person.crop.encoding!r}, expected {CROP_SIZE}x{CROP_SIZE} 'rgb8' (or 'bgr8')")
    try:
        crop = image_to_numpy(person.crop)
    except ImageConversionError as error:
        raise InputError("crop", f"track {track}: crop {error}") from None
    if person.crop.encoding == "bgr8":  # a foreign tracker's OpenCV order: the model reads RGB
        crop = np.ascontiguousarray(crop[..., ::-1])
    region = SquareRegion(round(region_box[0]), round(region_box[1]), max(1, round(side)))
    return PersonObservation(int(track), box, float(person.score), region, crop, header,
                             detector_keypoints_from_message(person))


def detector_keypoints_from_message(person: TrackedPerson) -> np.ndarray | None:
    """(17, 3) pixels and confidence, or None when the tracker sent none. A malformed set (wrong count,
    non-finite values, confidence outside [0, 1]) raises InputError: fused into the pose it would mislead it."""
    points = person.detector_keypoints
    if len(points) == 0:
        return None
    values = np.array([(p.x, p.y, p.score) for p in points], dtype=np.float32)
    if len(points) != NUM_KEYPOINTS or not np.isfinite(values).all() or (values[:, 2] < 0).any() \
            or (values[:, 2] > 1).any():
        raise InputError("detector keypoints", f"track {person.track_id}: detector_keypoints must be "
                         f"{NUM_KEYPOINTS} finite points with confidence in [0, 1], got {len(points)}")
    return values


def observations_from_message(message: TrackedPersonArray) -> tuple[list[PersonObservation], list[InputError]]:
    """The valid persons of one frame, and an InputError for each one dropped. A frame size of 0 means unknown
    (a foreign tracker may leave it unset); a track id given twice keeps its first valid person, since one
    history per id cannot take two crops of one frame."""
    frame_size = (message.image_width, message.image_height) if message.image_width and message.image_height \
        else None
    observations: list[PersonObservation] = []
    errors: list[InputError] = []
    seen: set[int] = set()
    for person in message.persons:
        if person.track_id in seen:
            errors.append(InputError("duplicate track", f"track {person.track_id} appears twice in the frame "
                                     f"stamped {stamp_key(message.header)}; the second is dropped"))
            continue
        try:
            observations.append(observation_from_message(person, message.header, frame_size))
        except InputError as error:
            errors.append(error)
            continue
        seen.add(person.track_id)
    return observations, errors


def skeleton_message(estimate: SkeletonEstimate, layout: str = Skeleton2D.LAYOUT_COCO17) -> Skeleton2D:
    """estimate.stamp is the described frame's std_msgs/Header."""
    header: Header = estimate.stamp
    score = float(np.clip(estimate.score, 0.0, 1.0))
    # Per joint: the model's own confidence where it gives one, else the person's detector score.
    joint_scores = np.full(len(estimate.keypoints), score) if estimate.confidence is None else \
        np.clip(np.nan_to_num(estimate.confidence), 0.0, 1.0)
    keypoints = [Keypoint2D(x=float(x), y=float(y), score=float(c)) if math.isfinite(x) and math.isfinite(y)
                 else Keypoint2D(x=0.0, y=0.0, score=0.0) for (x, y), c in zip(estimate.keypoints, joint_scores,
                                                                                 strict=True)]
    return Skeleton2D(track_id=estimate.track_id, stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec),
                      box=pixel_box(estimate.box), layout=layout, keypoints=keypoints, score=score)


def skeleton_array(header: Header, width: int, height: int, estimates: list[SkeletonEstimate]) -> Skeleton2DArray:
    return Skeleton2DArray(header=header, image_width=width, image_height=height,
                           skeletons=[skeleton_message(e) for e in estimates])


def stamp_key(header: Header) -> tuple[int, int]:
    return int(header.stamp.sec), int(header.stamp.nanosec)
