"""The synthetic ex-low renderer: exact ground truth on the drawn body, the crop convention, depth
order, visibility masks, background plates, and a small end-to-end build.

Motion comes from a hand-made walking figure, backgrounds from flat colours or generated images, so
the tests need neither the CMU data nor the videos.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.crop import cut_crop, normalise_keypoints, square_region
from exlow_pose_ros.core.keypoints import COCO17_NAMES, NUM_KEYPOINTS
from exlow_pose_training.dataset_format import WINDOW_LENGTH, ExLowDataset
from exlow_pose_training.motion.cameras import PinholeCamera, look_at
from exlow_pose_training.motion.clip import CLIP_POINT_NAMES, MotionClip3D
from exlow_pose_training.synthetic import backgrounds, build
from exlow_pose_training.synthetic.body import Appearance, BodyShape, build_body
from exlow_pose_training.synthetic.render import NO_EFFECTS, Occluder, render_frame

BACKGROUND = (0.0, 210.0, 0.0)  # no body colour below has more than 100 green
SHAPE = BodyShape(scale=1.0, girth=1.0, belly=1.0, hips=1.0, shoulders=1.0, limbs=1.0, head=1.0)
LOOK = Appearance(skin=(220, 90, 70), hair=(30, 20, 20), hair_style="short", top=(40, 60, 200), sleeves="long",
                  bottom=(120, 40, 140), lower="trousers", hem=0.0, shoes=(20, 20, 20), carried="none",
                  carried_colour=(0, 0, 0), carried_side=1, carried_size=1.0, shading=0.0)
FACE = {"nose", "left_eye", "right_eye", "left_ear", "right_ear"}


def walking_clip(name: str = "walker_01", subject: str = "walker_a", frames: int = 90, fps: float = 30.0,
                 heading: float = 0.0) -> MotionClip3D:
    """A stick-figure walk along `heading` (rad from +x), left side on the walker's left (z up)."""
    t = np.arange(frames) / fps
    phase = 2 * np.pi * 0.9 * t
    p: dict[str, np.ndarray] = {}
    zeros = np.zeros_like(t)

    def at(base: np.ndarray, x=0.0, y=0.0, z=0.0) -> np.ndarray:
        return base + np.stack([zeros + x, zeros + y, zeros + z], axis=1)

    pelvis = np.stack([1.3 * t, zeros, 0.95 + 0.02 * np.cos(2 * phase)], axis=1)
    p["pelvis"] = pelvis
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip = at(pelvis, y=0.09 * sign, z=-0.02)
        thigh = 0.4 * np.sin(phase) * sign
        bend = 0.25 * (1 + np.sin(phase + sign * np.pi / 2))
        knee = hip + 0.43 * np.stack([np.sin(thigh), zeros, -np.cos(thigh)], axis=1)
        ankle = knee + 0.42 * np.stack([np.sin(thigh - bend), zeros, -np.cos(thigh - bend)], axis=1)
        p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"] = hip, knee, ankle
        p[f"{side}_toe"] = at(ankle, x=0.15, z=-0.06)
        shoulder = at(pelvis, y=0.18 * sign, z=0.49)
        swing = -0.3 * np.sin(phase) * sign
        elbow = shoulder + 0.29 * np.stack([np.sin(swing), zeros, -np.cos(swing)], axis=1)
        wrist = elbow + 0.26 * np.stack([np.sin(swing + 0.2), zeros, -np.cos(swing + 0.2)], axis=1)
        p[f"{side}_shoulder"], p[f"{side}_elbow"], p[f"{side}_wrist"] = shoulder, elbow, wrist
        p[f"{side}_hand"] = wrist + 0.08 * np.stack([np.sin(swing + 0.2), zeros, -np.cos(swing + 0.2)], axis=1)
    p["neck"] = at(pelvis, z=0.52)
    ears = at(pelvis, z=0.52 + 0.185)
    p["head_top"] = at(ears, z=0.115)
    p["left_ear"], p["right_ear"] = at(ears, y=0.075), at(ears, y=-0.075)
    p["left_eye"], p["right_eye"] = at(ears, x=0.085, y=0.032, z=0.005), at(ears, x=0.085, y=-0.032, z=0.005)
    p["nose"] = at(ears, x=0.105, z=-0.03)
    points = np.stack([p[name] for name in CLIP_POINT_NAMES], axis=1)
    c, s = math.cos(heading), math.sin(heading)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return MotionClip3D(name=name, subject=subject, fps=fps, points=(points @ rotation.T).astype(np.float32))


class FlatBackground:
    """Stands in for backgrounds.BackgroundView: every pixel the same colour."""

    def __init__(self, colour=BACKGROUND) -> None:
        self.colour = np.asarray(colour, np.float32)

    def patch(self, x: int, y: int, width: int, height: int, shift=(0.0, 0.0)) -> np.ndarray:
        return np.broadcast_to(self.colour, (height, width, 3)).copy()


def camera_at(position, target, size=(640, 480), focal=600.0) -> PinholeCamera:
    rotation = look_at(np.asarray(position, float), np.asarray(target, float))
    return PinholeCamera(width=size[0], height=size[1], fx=focal, fy=focal, cx=size[0] / 2, cy=size[1] / 2,
                         rotation=rotation, translation=-rotation @ np.asarray(position, float))


def render_clean(body, t, camera, **kwargs):
    frame = render_frame(body, t, camera, FlatBackground(), NO_EFFECTS, np.random.default_rng(0), clean=True,
                         **kwargs)
    assert frame is not None
    return frame


def body_pixels(frame) -> np.ndarray:
    """Pixels of the returned patch whose colour is not the flat background's (any coverage at all)."""
    return np.abs(frame.image.astype(int) - np.array(BACKGROUND, int)).max(axis=2) > 1


def pinhole(camera: PinholeCamera, points: np.ndarray) -> np.ndarray:
    """Projection written out independently of motion.cameras.project: K (R X + t)."""
    matrix = np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1.0]])
    homogeneous = (matrix @ (camera.rotation @ points.T + camera.translation[:, None])).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


@pytest.mark.parametrize("person_px", [120.0, 18.0])
def test_joints_land_on_the_body_and_the_box_is_its_silhouette(person_px: float) -> None:
    clip = walking_clip()
    body = build_body(clip.points, SHAPE, LOOK)
    t = 20
    pelvis = body.points[t, CLIP_POINT_NAMES.index("pelvis")].astype(float)
    distance = 600.0 * 1.8 / person_px
    camera = camera_at(pelvis + [distance * 0.8, distance * 0.6, 2.0], pelvis)
    frame = render_clean(body, t, camera)
    drawn = body_pixels(frame)
    x0, y0 = frame.origin
    height = frame.box[3] - frame.box[1]
    assert 0.8 * person_px < height < 1.2 * person_px

    # The box is the bounding box of the drawn pixels: a partially covered pixel counts.
    rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    assert (x0 + cols[0], y0 + rows[0]) == (math.floor(frame.box[0]), math.floor(frame.box[1]))
    assert (x0 + cols[-1] + 1, y0 + rows[-1] + 1) == (math.ceil(frame.box[2]), math.ceil(frame.box[3]))

    # Every joint lies on a drawn pixel; face points (on the head's surface) within one pixel of one.
    assert frame.mask.all()
    body_rows, body_cols = np.nonzero(drawn)
    for index, name in enumerate(COCO17_NAMES):
        x, y = frame.pixels[index]
        col, row = math.floor(x) - x0, math.floor(y) - y0
        if name in FACE:
            nearest = np.min(np.hypot(body_cols - col, body_rows - row))
            assert nearest <= 1.0, name
        else:
            assert drawn[row, col], f"{name} at {(x, y)} is not on the body"


def test_crop_and_keypoints_follow_the_crop_convention() -> None:
    clip = walking_clip()
    body = build_body(clip.points, SHAPE, LOOK)
    t = 5
    pelvis = body.points[t, CLIP_POINT_NAMES.index("pelvis")].astype(float)
    # The person stands at the right border, so the crop square leaves the frame.
    camera = camera_at(pelvis + [0.0, 14.0, 1.5], pelvis + [7.0, 0.0, 0.0])
    frame = render_clean(body, t, camera)
    assert frame.box[0] < camera.width < frame.region.x0 + frame.region.side

    expected_pixels = pinhole(camera, body.points[t, :NUM_KEYPOINTS].astype(float))
    np.testing.assert_allclose(frame.pixels, expected_pixels, atol=1e-3)
    region = square_region(frame.box)
    assert frame.region == region
    np.testing.assert_allclose(frame.keypoints, normalise_keypoints(expected_pixels, region), atol=1e-5)

    # The crop equals cutting the whole frame (patch pasted on the flat background) by the convention.
    whole = np.empty((camera.height, camera.width, 3), np.uint8)
    whole[:] = np.array(BACKGROUND, np.uint8)
    x0, y0 = frame.origin
    whole[y0:y0 + frame.image.shape[0], x0:x0 + frame.image.shape[1]] = frame.image
    np.testing.assert_array_equal(frame.crop, cut_crop(whole, region))
    assert (frame.crop[:, -1] == 0).all()  # the right column of the square lies outside the frame: black


@pytest.mark.parametrize("near", ["left", "right"])
def test_near_limbs_cover_far_limbs(near: str) -> None:
    clip = walking_clip()
    body = build_body(clip.points, SHAPE, LOOK)
    t = 0  # mid-stance: legs and arms straight down, near and far limbs overlap seen from the side
    pelvis = body.points[t, CLIP_POINT_NAMES.index("pelvis")].astype(float)
    side = 1.0 if near == "left" else -1.0  # the walker's left is +y
    camera = camera_at(pelvis + [0.0, side * 9.0, 0.3], pelvis)
    frame = render_clean(body, t, camera, labels=True)
    far = "right" if near == "left" else "left"
    x0, y0 = frame.origin

    def part_at(joint: str) -> str:
        x, y = frame.pixels[COCO17_NAMES.index(joint)]
        label = frame.labels[math.floor((y - y0) * frame.scale), math.floor((x - x0) * frame.scale)]
        assert label > 0
        return body.parts[label - 1].name

    for joint in ("elbow", "wrist", "knee"):  # at t = 0 these coincide left and right (ankles do not)
        assert part_at(f"{far}_{joint}").startswith(near), joint
        assert part_at(f"{near}_{joint}").startswith(near), joint


def test_masks_are_false_outside_the_frame_and_behind_an_occluder() -> None:
    clip = walking_clip()
    body = build_body(clip.points, SHAPE, LOOK)
    t = 10
    pelvis = body.points[t, CLIP_POINT_NAMES.index("pelvis")].astype(float)
    # Level camera; the pelvis near the bottom edge, so the legs leave the frame.
    camera = camera_at(pelvis + [10.0, 0.0, 0.0], pelvis + [0.0, 0.0, 3.8])
    frame = render_clean(body, t, camera)
    x, y = frame.pixels[:, 0], frame.pixels[:, 1]
    inside = (x >= 0) & (x < camera.width) & (y >= 0) & (y < camera.height)
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(frame.mask, inside)
    assert not frame.mask[COCO17_NAMES.index("left_ankle")] and frame.mask[COCO17_NAMES.index("nose")]
    assert frame.box[3] == camera.height  # the visible silhouette is clipped by the frame
    assert 0.3 < frame.visible_fraction < 0.9  # part of the body is below the frame

    # A post halfway to the person covers a vertical band through the body.
    camera = camera_at(pelvis + [10.0, 0.0, 0.5], pelvis)
    base = pelvis * [1, 1, 0] + [5.0, 0.05, 0.0]
    corners = np.array([base + [dx, dy, z] for dx in (-0.05, 0.05) for dy in (-0.05, 0.05) for z in (0.0, 3.0)])
    frame = render_clean(body, t, camera, occluder=Occluder("post", ((corners, (90.0, 90.0, 90.0)),)))
    post = pinhole(camera, corners)[:, 0]
    x = frame.pixels[:, 0]
    behind, clear = (x > post.min() + 1) & (x < post.max() - 1), (x < post.min() - 1) | (x > post.max() + 1)
    assert behind.any() and clear.any()
    assert not frame.mask[behind].any()
    assert frame.mask[clear].all()
    unoccluded = render_clean(body, t, camera)
    np.testing.assert_allclose(frame.box[[0, 2]], unoccluded.box[[0, 2]])  # both sides of the post still show


def _synthetic_video(path, frames: int = 60) -> tuple[np.ndarray, tuple[int, int]]:
    """A static gradient scene; a square walks across, and another stands still in the val block only."""
    height, width = 64, 96
    yy, xx = np.mgrid[0:height, 0:width]
    scene = np.stack([60 + xx, 80 + yy, 200 - xx], axis=2).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    val_start, val_stop = backgrounds.block_bounds(frames)["val"]
    for index in range(frames):
        frame = scene.copy()
        x = 4 + index * (width - 16) // frames
        frame[20:40, x:x + 8] = (10, 10, 240)
        if val_start <= index < val_stop:
            frame[30:50, 60:68] = (240, 240, 20)
        writer.write(frame)
    writer.release()
    return cv2.cvtColor(scene, cv2.COLOR_BGR2RGB), (val_start, val_stop)


def test_background_plates_remove_people_and_are_cached(tmp_path) -> None:
    video = tmp_path / "street.avi"
    scene, val_block = _synthetic_video(video)
    plates = backgrounds.load_plates([video], tmp_path / "cache")
    assert sorted(p.split for p in plates) == ["test", "train", "val"]
    for plate in plates:
        error = np.abs(plate.image.astype(int) - scene.astype(int)).max(axis=2)
        assert np.percentile(error, 99) < 30, plate.split  # no walker, no stander left
    assert next(p for p in plates if p.split == "val").frames == val_block
    cached = backgrounds.load_plates([video], tmp_path / "cache")
    for made, loaded in zip(plates, cached, strict=True):
        np.testing.assert_array_equal(made.image, loaded.image)


def _plates() -> list[backgrounds.Plate]:
    rng = np.random.default_rng(7)
    plates = []
    for split in ("train", "val"):
        image = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
        plates.append(backgrounds.Plate(f"noise_{split}", split, (0, 1), image, 0.0))
    return plates


def test_small_build_writes_a_valid_dataset(tmp_path) -> None:
    clips = [walking_clip("walk_a1", "walker_a", frames=240, heading=0.4),
             walking_clip("walk_a2", "walker_a", frames=240, heading=2.0),
             walking_clip("walk_b1", "walker_b", frames=240, heading=-1.0)]
    splits = {"walker_a": "train", "walker_b": "val"}
    fractions = {"train": 0.75, "val": 0.25, "test": 0.0}
    manifest = build.build(tmp_path / "one", clips, _plates(), windows=80, seed=3, workers=1, subject_splits=splits,
                           fractions=fractions, progress=False)
    assert manifest["splits"]["train"]["windows"] >= 60 and manifest["splits"]["val"]["windows"] >= 20
    assert manifest["splits"]["test"]["windows"] == 0

    dataset = ExLowDataset(tmp_path / "one")
    assert dataset.kind == "synthetic"
    for split, subject in (("train", "walker_a"), ("val", "walker_b")):
        data = dataset.split(split)
        assert len(data) == manifest["splits"][split]["windows"]
        for index in range(len(data)):
            window = data.window(index)
            assert len(set(window["track"])) == 1
            np.testing.assert_array_equal(np.diff(window["frame"]), 1)
        sources = {int(s) for s in data.arrays["source"]}
        assert {dataset.manifest["sources"][s]["subject"] for s in sources} == {subject}
        assert {dataset.manifest["sources"][s]["split"] for s in sources} == {split}
        arrays = data.arrays
        assert arrays["crops"].dtype == np.uint8 and arrays["crops"].shape[1:] == (16, 16, 3)
        assert arrays["crops"].std() > 5  # not blank
        # Labelled keypoints are inside or near their square, boxes inside their squares.
        assert np.abs(arrays["keypoints"][arrays["mask"]]).max() < 1.2
        assert arrays["mask"].mean() > 0.8
        x0, y0, side = arrays["region"].T
        box = arrays["box"]
        assert (box[:, 0] >= x0).all() and (box[:, 2] <= x0 + side).all()
        assert (box[:, 1] >= y0).all() and (box[:, 3] <= y0 + side).all()
        assert (arrays["score"] == 1).all()
    provenance = dataset.manifest["provenance"]
    assert provenance["seed"] == 3 and provenance["generator_version"] == build.GENERATOR_VERSION
    assert {b["video"] for b in provenance["backgrounds"]} == {"noise_train", "noise_val"}

    # Same seed, two worker processes: the same dataset.
    build.build(tmp_path / "two", clips, _plates(), windows=80, seed=3, workers=2, subject_splits=splits,
                fractions=fractions, progress=False)
    again = ExLowDataset(tmp_path / "two")
    for split in ("train", "val"):
        first, second = dataset.split(split).arrays, again.split(split).arrays
        for name in first:
            np.testing.assert_array_equal(first[name], second[name], err_msg=f"{split} {name}")
    assert WINDOW_LENGTH == 5
