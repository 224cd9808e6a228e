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
from exlow_pose_training.motion.cameras import PinholeCamera, look_at, project
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


# --- issue 11: the widened renderer (preset "wide") ------------------------------------------------------


def _posed_clip(name: str, kind: str, frames: int = 120) -> MotionClip3D:
    """The walking figure, turned into a pose class for all its frames: arms up, bent over, or seated."""
    points = walking_clip(name, "poser", frames=frames).points.astype(np.float64).copy()
    index = {n: i for i, n in enumerate(CLIP_POINT_NAMES)}
    if kind == "arms_up":
        for side in ("left", "right"):
            shoulder = points[:, index[f"{side}_shoulder"]]
            points[:, index[f"{side}_elbow"]] = shoulder + [0.0, 0.0, 0.29]
            points[:, index[f"{side}_wrist"]] = shoulder + [0.0, 0.0, 0.55]
            points[:, index[f"{side}_hand"]] = shoulder + [0.0, 0.0, 0.63]
    elif kind == "bent":  # the upper body turned 60 deg forward about the pelvis
        pelvis = points[:, index["pelvis"]].copy()
        c, s = math.cos(math.radians(60)), math.sin(math.radians(60))
        turn = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        for n in CLIP_POINT_NAMES:
            if not any(n.endswith(x) for x in ("hip", "knee", "ankle", "toe", "pelvis")):
                points[:, index[n]] = (points[:, index[n]] - pelvis) @ turn.T + pelvis
    elif kind == "low":  # thighs level: seated
        for side in ("left", "right"):
            hip = points[:, index[f"{side}_hip"]]
            points[:, index[f"{side}_knee"]] = hip + [0.43, 0.0, 0.0]
            points[:, index[f"{side}_ankle"]] = hip + [0.43, 0.0, -0.42]
            points[:, index[f"{side}_toe"]] = hip + [0.58, 0.0, -0.48]
    return MotionClip3D(name=name, subject="poser", fps=30.0, points=points.astype(np.float32))


@pytest.mark.parametrize("kind", ["upright", "arms_up", "bent", "low"])
def test_pose_classes_of_hand_made_poses(kind: str) -> None:
    clip = walking_clip() if kind == "upright" else _posed_clip("p", kind)
    classes = build.pose_classes(clip.points.astype(np.float64))
    assert np.all(classes == build.POSE_CLASSES.index(kind))


def test_pose_mix_oversamples_rare_poses_and_the_stretch_holds_the_anchor() -> None:
    # 9 of 10 frames walk; the mix asks for raised arms half the time.
    clips = [walking_clip("walk", "poser", frames=900), _posed_clip("arms", "arms_up", frames=100)]
    variety = build.Variety(pose_mix={"upright": 0.5, "arms_up": 0.5}, preset="test")
    rng = np.random.default_rng(0)
    picks = [build.pick_clip(rng, clips, variety) for _ in range(400)]
    arms = np.mean([cls == "arms_up" for _, _, cls in picks])
    assert 0.4 < arms < 0.6
    assert all((clip.name == "arms") == (cls == "arms_up") for clip, _, cls in picks)
    # Version 1 picks by duration: raised arms about one track in ten.
    old = [build.pick_clip(rng, clips, build.PRESETS["v1"])[0].name for _ in range(400)]
    assert np.mean([name == "arms" for name in old]) < 0.2
    for clip, anchor, _ in picks[:50]:
        points, motion = build.segment(rng, clip, anchor)
        span = (len(points) - 1) / motion["fps"]
        assert motion["start_s"] - 1e-3 <= anchor / clip.fps <= motion["start_s"] + span + 1e-3


def test_shoulder_drop_moves_only_the_shoulders_down_the_torso() -> None:
    points = walking_clip().points.astype(np.float64)
    dropped = build.drop_shoulders(points, 0.09)
    index = {n: i for i, n in enumerate(CLIP_POINT_NAMES)}
    moved = np.linalg.norm(dropped - points, axis=-1)
    for name in CLIP_POINT_NAMES:
        expected = 0.09 if name.endswith("_shoulder") else 0.0
        np.testing.assert_allclose(moved[:, index[name]], expected, atol=1e-9, err_msg=name)
    assert np.all(dropped[:, index["left_shoulder"], 2] < points[:, index["left_shoulder"], 2] - 0.08)


def test_wide_views_cover_every_side_high_and_close_cameras() -> None:
    clip = walking_clip(frames=60)
    variety = build.PRESETS["wide"]
    rng = np.random.default_rng(1)
    infos = [build.sample_track_camera(rng, clip.points.astype(np.float64), (1280, 720), variety).info
             for _ in range(600)]
    view = np.array([i["view_deg"] for i in infos])
    # Yaw uniform over 360 deg: front (<45), side and back (>135) views in their shares 1/4, 1/2, 1/4.
    assert 0.17 < np.mean(view < 45) < 0.33 and 0.17 < np.mean(view > 135) < 0.33
    assert 0.4 < np.mean((view >= 45) & (view <= 135)) < 0.6
    profiles = np.array([i["profile"] for i in infos])
    elevation = np.array([i["elevation_deg"] for i in infos])
    assert set(profiles) == set(build.VIEWS)
    high = elevation[profiles == "high"]
    assert high.min() > 20 and high.max() > 55  # steep surveillance views
    assert elevation[profiles == "robot"].min() < 5  # and nearly level ones
    close = np.array([i["person_px"] for i in infos])[profiles == "handheld"]
    assert np.median(close) > 100  # close handheld: people far larger than the ex-low range's middle
    upper = np.mean([i["upper_body"] for i in infos])
    assert 0.06 < upper < 0.2
    # Version 1 keeps its two profiles and draws nothing new.
    old = build.sample_track_camera(np.random.default_rng(1), clip.points.astype(np.float64), (1280, 720)).info
    assert old["profile"] in ("surveillance", "robot") and not old["upper_body"]


def test_upper_body_framing_puts_the_legs_below_the_frame() -> None:
    clip = walking_clip(frames=2)  # the person stays where the camera aims
    body = build_body(clip.points, SHAPE, LOOK)
    variety = build.Variety(views={"handheld": 1.0}, p_upper_body=1.0, preset="test")
    ankles = [COCO17_NAMES.index("left_ankle"), COCO17_NAMES.index("right_ankle")]
    hidden = 0
    for seed in range(10):
        camera = build.sample_track_camera(np.random.default_rng(seed), body.points, (1280, 720), variety)
        frame = render_frame(body, 0, camera.cameras[0], FlatBackground(), NO_EFFECTS, np.random.default_rng(0),
                             clean=True)
        if frame is None:
            continue
        assert frame.mask[COCO17_NAMES.index("nose")] or frame.pixels[0, 0] < 0 or frame.pixels[0, 0] >= 1280
        hidden += int(not frame.mask[ankles].any())
        pelvis = project(camera.cameras[0], body.points[0, CLIP_POINT_NAMES.index("pelvis")])[0]
        assert pelvis[1] > 0.85 * camera.cameras[0].height  # the hips at the bottom edge
    assert hidden >= 5  # the legs leave the frame unless the person is small


def test_desk_hides_the_legs_of_a_seated_person() -> None:
    clip = _posed_clip("seated", "low", frames=10)
    body = build_body(clip.points, SHAPE, LOOK)
    pelvis = body.points[0, CLIP_POINT_NAMES.index("pelvis")].astype(float)
    # Facing +x; the camera in front of the person, a little above.
    camera = camera_at(pelvis + [6.0, 0.0, 0.8], pelvis)
    desk = build.sample_desk(np.random.default_rng(0), body.points, camera)
    frame = render_clean(body, 0, camera, occluder=desk)
    names = ("left_ankle", "right_ankle")
    assert not any(frame.mask[COCO17_NAMES.index(n)] for n in names)
    assert all(frame.mask[COCO17_NAMES.index(n)] for n in ("nose", "left_shoulder", "right_shoulder"))
    assert frame.box[3] < render_clean(body, 0, camera).box[3] - 5  # the box ends at the desk top


def test_another_person_in_front_hides_joints_behind_them() -> None:
    from exlow_pose_training.synthetic.render import PersonOccluder

    clip = walking_clip(frames=30)
    body = build_body(clip.points, SHAPE, LOOK)
    t = 10
    pelvis = body.points[t, CLIP_POINT_NAMES.index("pelvis")].astype(float)
    camera = camera_at(pelvis + [0.0, 10.0, 0.3], pelvis)
    # The same figure, 4 m nearer the camera and straight in its line of sight.
    other = build_body(clip.points + np.array([0.0, 4.0, 0.0], np.float32), SHAPE, LOOK)
    occluder = PersonOccluder(other)
    hidden = render_clean(body, t, camera, occluder=occluder)
    assert hidden.mask.sum() < 0.5 * NUM_KEYPOINTS
    assert hidden.visible_fraction < 0.5
    # The occluder moves with its own clip: frame by frame its polygons change.
    first, later = occluder.polygons(camera, 0), occluder.polygons(camera, 20)
    assert len(first) == len(later) and not np.allclose(first[0][0], later[0][0])


def test_frame_plates_paint_over_the_known_people(tmp_path) -> None:
    video = tmp_path / "handheld.avi"
    _synthetic_video(video)  # a red square walks; a cyan one stands in the val block (RGB)
    boxes = {}
    val_start, val_stop = backgrounds.block_bounds(60)["val"]
    for index in range(60):
        x = 4 + index * (96 - 16) // 60
        boxes[index] = [np.array([x, 20, x + 8, 40], np.float32)]
        if val_start <= index < val_stop:
            boxes[index].append(np.array([60, 30, 68, 50], np.float32))
    plates = backgrounds.load_frame_plates(video, (0, None), boxes, tmp_path / "cache")
    assert {p.split for p in plates} == {"train", "val", "test"}
    for plate in plates:
        first, end = backgrounds.block_bounds(60)[plate.split]
        assert first <= plate.frames[0] < end
        red = (plate.image[..., 0] > 180) & (plate.image[..., 1] < 60)
        cyan = (plate.image[..., 1] > 180) & (plate.image[..., 2] > 180) & (plate.image[..., 0] < 60)
        assert not red.any() and not cyan.any(), plate.frames
    cached = backgrounds.load_frame_plates(video, (0, None), boxes, tmp_path / "cache")
    assert [p.frames for p in cached] == [p.frames for p in plates]


def test_backgrounds_never_come_from_an_unseen_scene(tmp_path) -> None:
    from exlow_pose_training.dataset_format import DatasetWriter
    from exlow_pose_training.scenes import SceneClip, SceneRegistry, load_registry

    # The project's registry: the default plates are training scenes only.
    registry = load_registry()
    unseen = build.unseen_videos(registry)
    assert unseen and not unseen & {v.name for v in registry.background_videos()}

    fixed, moving, test_video = tmp_path / "fixed.avi", tmp_path / "moving.avi", tmp_path / "unseen.avi"
    for path in (fixed, moving, test_video):
        _synthetic_video(path)
    clips = [SceneClip("fixed", fixed, "train", 640, "x", background=True),
             SceneClip("moving", moving, "train", 640, "x"),
             SceneClip("unseen", test_video, "test", 640, "x")]
    fake = SceneRegistry(clips, [16.0], [16.0], 40)
    writer = DatasetWriter(tmp_path / "boxes", "teacher", "test", {})
    count = 60
    for clip in clips:  # person boxes for every clip, the unseen one too: it must still be left out
        source = writer.add_source(clip.clip_name, "train")
        writer.add_track(source, {
            "keypoints": np.zeros((count, 17, 2), np.float32), "mask": np.ones((count, 17), bool),
            "box": np.tile(np.array([[4, 20, 20, 40]], np.float32), (count, 1)),
            "region": np.tile([0, 0, 16], (count, 1)), "score": np.ones(count), "frame": np.arange(count),
            "crops": np.zeros((count, 16, 16, 3), np.uint8)})
    writer.close()
    plates, used = build.background_plates(fake, "all-train", [fixed], tmp_path / "boxes", tmp_path / "cache")
    assert {p.video for p in plates} == {"fixed.avi", "moving.avi"}
    assert not any("unseen" in u["video"] for u in used)
    with pytest.raises(ValueError, match="unseen"):
        build.background_plates(fake, "fixed", [test_video], None, tmp_path / "cache")


def test_wide_build_writes_a_valid_dataset_and_counts_what_it_shows(tmp_path) -> None:
    clips = [walking_clip("walk_a1", "walker_a", frames=240, heading=0.4),
             _posed_clip("arms_a", "arms_up", frames=120), _posed_clip("low_a", "low", frames=120),
             walking_clip("walk_b1", "walker_b", frames=240, heading=-1.0)]
    clips[1] = MotionClip3D("arms_a", "walker_a", 30.0, clips[1].points)
    clips[2] = MotionClip3D("low_a", "walker_a", 30.0, clips[2].points)
    splits = {"walker_a": "train", "walker_b": "val"}
    manifest = build.build(tmp_path / "wide", clips, _plates(), windows=300, seed=5, workers=1,
                           subject_splits=splits, fractions={"train": 0.9, "val": 0.1, "test": 0.0},
                           progress=False, variety=build.PRESETS["wide"])
    assert manifest["splits"]["train"]["windows"] >= 270
    provenance = manifest["provenance"]
    assert provenance["variety"]["preset"] == "wide"
    shown = provenance["kept_tracks_show"]["train"]
    tracks = provenance["track_stats"]["train"]["tracks_kept"]
    assert sum(shown["profile"].values()) == tracks
    assert shown["pose_class"].get("arms_up", 0) + shown["pose_class"].get("low", 0) > 0.15 * tracks
    data = ExLowDataset(tmp_path / "wide").split("train").arrays
    assert data["crops"].std() > 5 and np.abs(data["keypoints"][data["mask"]]).max() < 1.3
