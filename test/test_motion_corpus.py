"""The motion corpus: CMU forward kinematics and point mapping, Penn Action mapping, virtual-camera
projection and the `exlow-pose-data motion` dataset (a few short real clips, a few seconds)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from exlow_pose_ros.core.crop import SquareRegion, denormalise_keypoints
from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_training.dataset_format import SPLITS, WINDOW_LENGTH, ExLowDataset, window_starts
from exlow_pose_training.motion import cmu_mocap, corpus, penn_action
from exlow_pose_training.motion.cameras import PinholeCamera, look_at, sample_camera
from exlow_pose_training.motion.clip import CLIP_POINT_NAMES

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CMU = DATA / "cmu_mocap" / "subjects"
PENN = DATA / "penn_action_labels"
ASF = CMU / "02" / "02.asf"
AMC = CMU / "02" / "02_01.amc"  # 343 frames: the subject stands, then walks
pytestmark = pytest.mark.skipif(not (CMU.is_dir() and PENN.is_dir()), reason="shared data missing: ../shared/data")

P = CLIP_POINT_NAMES.index


def asf_value(bone: str, key: str) -> list[float]:
    """A bone's field straight from the ASF text (not through the parser under test)."""
    block = re.search(rf"name {bone}\s*\n(.*?)\n\s*end", ASF.read_text(), re.S).group(1)
    return [float(v) for v in re.search(rf"{key}\s+([-\d.e\s]+?)\s*(?:[A-Z]{{3}})?\s*\n", block).group(1).split()]


def metres(units: float) -> float:
    return units / 0.45 * 0.0254  # the data README's conversion


@pytest.fixture(scope="module")
def skeleton():
    return cmu_mocap.parse_asf(ASF)


@pytest.fixture(scope="module")
def motion(skeleton):
    return cmu_mocap.parse_amc(AMC, skeleton)


@pytest.fixture(scope="module")
def clip():
    return cmu_mocap.load_clip(ASF, AMC)


def rest_points(skeleton, motion, **angles) -> np.ndarray:
    """Clip points of the ASF rest pose (every dof 0), with some bones' dofs set (degrees)."""
    zero = {name: np.zeros((1, values.shape[1])) for name, values in motion.items()}
    for bone, values in angles.items():
        zero[bone][0] = values
    return cmu_mocap.clip_points(skeleton, zero)[0]


def left_of(points: np.ndarray) -> np.ndarray:
    """The subject's left as a horizontal unit vector: up x facing, facing from heels to toes."""
    feet = (points[P("left_toe")] + points[P("right_toe")] - points[P("left_ankle")] - points[P("right_ankle")])
    facing = np.array([feet[0], feet[1], 0.0]) / np.hypot(feet[0], feet[1])
    return np.cross([0.0, 0.0, 1.0], facing)


# --- CMU forward kinematics ---------------------------------------------------------------------------------------

def test_bone_lengths_stay_constant_and_match_the_asf(skeleton, motion, clip):
    positions, _ = cmu_mocap.forward_kinematics(skeleton, motion)
    for name in ("lfemur", "rtibia", "lhumerus", "rradius", "head", "lclavicle"):
        parent = skeleton.bones[name].parent
        length = np.linalg.norm(positions[name] - positions[parent], axis=1)
        expected = metres(asf_value(name, "length")[0])
        assert np.abs(length - expected).max() < 1e-6, name
    # The same on the mapped clip points (thigh, shin, upper arm over all 343 frames).
    for a, b, bone in (("left_hip", "left_knee", "lfemur"), ("right_knee", "right_ankle", "rtibia"),
                       ("left_shoulder", "left_elbow", "lhumerus"), ("right_elbow", "right_wrist", "rradius")):
        length = np.linalg.norm(clip.points[:, P(a)] - clip.points[:, P(b)], axis=1)
        assert np.abs(length - metres(asf_value(bone, "length")[0])).max() < 1e-4, (a, b)


def test_standing_height_and_z_up(clip):
    points = clip.points.astype(np.float64)
    standing = int(np.argmax(points[:, P("head_top"), 2]))
    ankles = points[standing, [P("left_ankle"), P("right_ankle")], 2].mean()
    # README: a standing subject's head end is ~1.56 m up; ankle joints are ~7 cm above the floor.
    assert 1.4 < points[standing, P("head_top"), 2] - ankles < 1.9
    assert 1.45 < points[standing, P("head_top"), 2] < 1.95
    # z up in every frame of the walk: head over neck over pelvis over knees over ankles.
    chain = [P("head_top"), P("neck"), P("pelvis"), P("left_knee"), P("left_ankle")]
    assert np.all(np.diff(points[:, chain, 2], axis=1) < 0)
    # Ground near z = 0: the lowest foot point reaches the floor, but does not go far below it.
    feet = points[:, [P("left_toe"), P("right_toe"), P("left_ankle"), P("right_ankle")], 2].min(axis=1)
    assert abs(np.percentile(feet, 5)) < 0.03 and feet.min() > -0.05
    assert 0.8 < np.median(points[:, P("pelvis"), 2]) < 1.2


def test_left_and_right_are_anatomical(skeleton, motion, clip):
    # ASF rest pose: the subject faces +z (feet point along +z) with y up, so its left is y x z = +x;
    # the left bones (lhumerus, lhipjoint) point along +x in the file.
    foot = np.array(asf_value("lfoot", "direction"))
    assert foot[2] > 0.9 and np.cross([0, 1, 0], [0, 0, 1])[0] == 1
    assert asf_value("lhumerus", "direction")[0] > 0.9 and asf_value("lhipjoint", "direction")[0] > 0.4
    rest = rest_points(skeleton, motion)
    left = left_of(rest)
    # T-pose: the left arm stretches out to the subject's left.
    arm = rest[P("left_wrist")] - rest[P("left_shoulder")]
    assert arm @ left / np.linalg.norm(arm) > 0.95
    for frame in (rest, clip.points[0].astype(np.float64), clip.points[-1].astype(np.float64)):
        left = left_of(frame)
        for part, min_gap in (("shoulder", 0.2), ("hip", 0.1), ("ear", 0.1), ("eye", 0.03)):
            assert (frame[P(f"left_{part}")] - frame[P(f"right_{part}")]) @ left > min_gap, part


def test_joints_bend_the_anatomical_way(skeleton, motion):
    # Single dofs on the rest pose (facing from the feet): elbows (radius rx > 0) and hips (femur rx < 0)
    # flex forwards, knees (tibia rx > 0) backwards. Catches a wrong axis (C) or Euler order.
    facing = np.cross(left_of(rest_points(skeleton, motion)), [0.0, 0.0, 1.0])
    for bones, (a, b), sign in (({"lradius": [90.0]}, ("left_elbow", "left_wrist"), 1),
                                ({"rradius": [90.0]}, ("right_elbow", "right_wrist"), 1),
                                ({"lfemur": [-60.0, 0.0, 0.0]}, ("left_hip", "left_knee"), 1),
                                ({"rfemur": [-60.0, 0.0, 0.0]}, ("right_hip", "right_knee"), 1),
                                ({"ltibia": [90.0]}, ("left_knee", "left_ankle"), -1)):
        points = rest_points(skeleton, motion, **bones)
        assert sign * (points[P(b)] - points[P(a)]) @ facing > 0.1, bones


def test_arms_hang_beside_the_body_while_walking(clip):
    # 02_01 is a walk: all three shoulder dofs are large (e.g. lhumerus -52, 32, 65 deg), so a wrong
    # Euler order swings the arms away from the body.
    points = clip.points.astype(np.float64)
    for side in ("left", "right"):
        assert np.mean(points[:, P(f"{side}_elbow"), 2] < points[:, P(f"{side}_shoulder"), 2] - 0.15) > 0.95
        assert np.mean(points[:, P(f"{side}_wrist"), 2] < points[:, P(f"{side}_elbow"), 2]) > 0.95
        reach = np.linalg.norm((points[:, P(f"{side}_wrist")] - points[:, P(f"{side}_hip")])[:, :2], axis=1)
        assert np.percentile(reach, 95) < 0.32, side


def test_face_points_turn_with_the_head(skeleton, motion, clip):
    before = rest_points(skeleton, motion)
    after = rest_points(skeleton, motion, head=[0.0, 40.0, 0.0])  # head dofs rx ry rz; ry turns about up
    nose_before = (before[P("nose")] - before[P("head_top")])[:2]
    nose_after = (after[P("nose")] - after[P("head_top")])[:2]
    sine = nose_before[0] * nose_after[1] - nose_before[1] * nose_after[0]
    turn = np.degrees(np.arctan2(sine, nose_before @ nose_after))
    assert turn == pytest.approx(40.0, abs=0.5)  # counter-clockwise seen from above: towards the subject's left
    assert (after[P("nose")] - before[P("nose")]) @ left_of(before) > 0.05
    for name in ("left_ear", "right_eye"):
        assert np.linalg.norm(after[P(name)] - before[P(name)]) > 0.04, name
    body = [P(n) for n in ("left_shoulder", "right_hip", "left_wrist", "neck")]
    np.testing.assert_allclose(after[body], before[body], atol=1e-9)
    # In motion, the face keeps its shape relative to the head top.
    points = clip.points.astype(np.float64)
    for name in ("nose", "left_ear", "right_eye"):
        assert np.ptp(np.linalg.norm(points[:, P(name)] - points[:, P("head_top")], axis=1)) < 1e-4
    # The nose is in front of the ears in the direction the feet point, while standing at the start.
    ears = (points[0, P("left_ear")] + points[0, P("right_ear")]) / 2
    facing = np.cross(left_of(points[0]), [0.0, 0.0, 1.0])
    assert (points[0, P("nose")] - ears) @ facing > 0.05


def test_resampling_and_subject_names(clip):
    resampled = cmu_mocap.load_clip(ASF, AMC, fps_out=30)
    assert resampled.fps == 30 and resampled.num_frames == (clip.num_frames - 1) // 4 + 1
    # 120 / 30 = 4: every 4th source frame, exactly.
    np.testing.assert_allclose(resampled.points, clip.points[::4], atol=1e-5)
    assert clip.name == "cmu_02_01" and clip.subject == "cmu_02" and clip.fps == 120
    assert clip.points.shape == (343, len(CLIP_POINT_NAMES), 3) and clip.points.dtype == np.float32


# --- projection ---------------------------------------------------------------------------------------------------

def manual_pixels(camera: PinholeCamera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = points @ camera.rotation.T + camera.translation
    return np.stack([camera.fx * cam[..., 0] / cam[..., 2] + camera.cx,
                     camera.fy * cam[..., 1] / cam[..., 2] + camera.cy], axis=-1), cam[..., 2]


def test_projected_keypoints_follow_the_crop_convention(clip):
    points = cmu_mocap.resample(clip.points.astype(np.float64), 120, 20)
    target = np.array([*points[:, P("pelvis"), :2].mean(axis=0), 1.0])
    inside_total = within = 0
    for seed in range(6):
        camera = sample_camera(np.random.default_rng(seed), target, ("surveillance", "robot")[seed % 2])
        track = corpus.project_track(points, camera)
        assert track is not None
        pixels, depth = manual_pixels(camera, points[track["frame"]])
        coco = pixels[:, :len(COCO17_NAMES)]
        in_image = ((coco[..., 0] >= 0) & (coco[..., 0] <= camera.width) & (coco[..., 1] >= 0)
                    & (coco[..., 1] <= camera.height))
        np.testing.assert_array_equal(track["mask"], in_image)
        assert np.all(depth > 0)
        np.testing.assert_allclose(track["box"][:, :2], pixels.min(axis=1), rtol=1e-5, atol=1e-2)
        for row in range(0, len(track["frame"]), 7):
            region = SquareRegion(*(int(v) for v in track["region"][row]))
            back = denormalise_keypoints(track["keypoints"][row], region)
            visible = track["mask"][row]
            np.testing.assert_allclose(back[visible], coco[row, visible], atol=1e-2)
        values = track["keypoints"][track["mask"]]
        inside_total += len(values)
        within += int(np.sum(np.all(np.abs(values) <= 1.0, axis=1)))
    assert within / inside_total > 0.99


def test_frames_with_points_behind_the_camera_are_left_out(clip):
    points = clip.points.astype(np.float64)
    # A camera standing where the subject walks, looking along the walk: the subject passes it.
    start, end = points[0, P("pelvis")], points[-1, P("pelvis")]
    position = (start + end) / 2
    position[2] = 1.0
    rotation = look_at(position, position + (end - start) * [1, 1, 0])
    camera = PinholeCamera(640, 480, 400.0, 400.0, 320.0, 240.0, rotation, -rotation @ position)
    _, depth = manual_pixels(camera, points)
    behind = (depth <= corpus.NEAR).any(axis=1)
    assert behind.any() and not behind.all()
    track = corpus.project_track(points, camera)
    assert not np.any(behind[track["frame"]])
    assert np.all(np.diff(track["frame"]) > 0)


# --- Penn Action ----------------------------------------------------------------------------------------------------

def raw(clip_id: str) -> dict:
    return scipy.io.loadmat(str(PENN / f"{clip_id}.mat"))


def test_penn_left_right_and_face():
    # Push-ups seen from the side: the side of the body towards the camera is the visible one, and the
    # head's side of the feet says which that is (head on the image right: the right side faces us).
    for clip_id in ("1377", "1378"):
        data = raw(clip_id)
        x, visible = data["x"].astype(float), data["visibility"].astype(bool)
        feet = visible[:, 11:13].any(axis=1) & visible[:, 0]
        head_right = np.median(x[feet, 0] - np.where(visible[feet, 11], x[feet, 11], x[feet, 12])) > 0
        clip = penn_action.load_penn_clip(PENN / f"{clip_id}.mat", "train")
        rate = clip.mask.mean(axis=0)
        near, far = ("right", "left") if head_right else ("left", "right")
        for part in ("shoulder", "hip", "knee"):
            assert rate[COCO17_NAMES.index(f"{near}_{part}")] > rate[COCO17_NAMES.index(f"{far}_{part}")] + 0.3
        assert not clip.mask[:, :5].any() and np.all(clip.keypoints[:, :5] == 0)  # face never labelled
    # Column by column: COCO left_shoulder is Penn's column 2 ("right shoulder") when the labels are
    # mirrored, its column 1 ("left shoulder") when taken literally.
    data = raw("0001")
    for mirrored, column in ((True, 2), (False, 1)):
        clip = penn_action.load_penn_clip(PENN / "0001.mat", "test", mirrored=mirrored)
        shown = clip.mask[:, COCO17_NAMES.index("left_shoulder")]
        np.testing.assert_allclose(clip.keypoints[shown, 5, 0], data["x"][clip.frame[shown], column], atol=1e-4)
        np.testing.assert_array_equal(shown, data["visibility"][clip.frame, column].astype(bool))


def test_penn_boxes_come_from_the_labels_or_the_joints():
    data = raw("0001")
    clip = penn_action.load_penn_clip(PENN / "0001.mat", "test")
    np.testing.assert_allclose(clip.box, data["bbox"][clip.frame], atol=1e-3)  # x_min, y_min, x_max, y_max
    assert np.all(clip.frame == np.arange(len(data["x"])))
    # 0038: frames whose box is a point and whose joints are all invisible are left out.
    data = raw("0038")
    degenerate = (data["bbox"][:, 2] - data["bbox"][:, 0] <= 1) | (data["bbox"][:, 3] - data["bbox"][:, 1] <= 1)
    clip = penn_action.load_penn_clip(PENN / "0038.mat", "test")
    assert degenerate.sum() == clip.dropped == len(data["x"]) - len(clip.frame) > 0
    assert not np.any(degenerate[clip.frame])
    # 0525: a point box with visible joints gets a box around those joints; 1154 lacks its last box row.
    for clip_id, frame in (("0525", None), ("1154", -1)):
        data = raw(clip_id)
        clip = penn_action.load_penn_clip(PENN / f"{clip_id}.mat", "test")
        if frame is None:
            frame = int(np.flatnonzero(data["bbox"][:, 2] - data["bbox"][:, 0] <= 1)[0])
        frame = frame % len(data["x"])
        row = int(np.flatnonzero(clip.frame == frame)[0])
        assert clip.box_from_joints == 1
        box, shown = clip.box[row], clip.mask[row]
        assert box[2] - box[0] > 1 and box[3] - box[1] > 1 and shown.sum() >= 2
        xy = clip.keypoints[row, shown]
        assert np.all((xy >= box[:2]) & (xy <= box[2:]))


def test_penn_official_split_with_held_out_val():
    splits = penn_action.penn_splits(PENN)
    assert len(splits) == 2326
    counts = dict.fromkeys(SPLITS, 0)
    for path, split in list(splits.items())[::23]:  # every 23rd file's flag, read directly
        official = int(scipy.io.loadmat(str(path), variable_names=("train",))["train"].ravel()[0])
        assert (split == "test") == (official != 1), path.name
    for split in splits.values():
        counts[split] += 1
    assert counts["test"] == 1068  # test clips carry train = -1
    assert 0.08 < counts["val"] / (counts["train"] + counts["val"]) < 0.12


# --- the corpus command -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    for subject, takes in (("02", ("02_02", "02_03")), ("03", ("03_02",))):
        folder = shared / "data" / "cmu_mocap" / "subjects" / subject
        folder.mkdir(parents=True)
        for name in (f"{subject}.asf", *(f"{t}.amc" for t in takes)):
            (folder / name).symlink_to(CMU / subject / name)
    penn = shared / "data" / "penn_action_labels"
    penn.mkdir(parents=True)
    for number in (*range(1, 25), 1377, 1378, 1352):
        (penn / f"{number:04d}.mat").symlink_to(PENN / f"{number:04d}.mat")
    out = shared / "motion"
    parser = argparse.ArgumentParser()
    corpus.add_arguments(parser)
    args = parser.parse_args(["--out", str(out), "--shared", str(shared), "--cameras-per-clip", "3", "--seed", "1"])
    assert corpus.run(args) == 0
    return ExLowDataset(out)


def test_corpus_splits_are_disjoint_by_subject_and_clip(small_corpus):
    manifest = small_corpus.manifest
    assert manifest["kind"] == "motion" and manifest["crop"] is None
    sources = manifest["sources"]
    subjects = {s: {src["subject"] for src in sources if src["split"] == s and src["dataset"] == "cmu_mocap"}
                for s in SPLITS}
    assert subjects["train"] == {"cmu_02"} and subjects["val"] == {"cmu_03"} and not subjects["test"]
    names = [src["name"] for src in sources]
    assert len(names) == len(set(names)) == 3 + 27
    for src in sources:
        if src["dataset"] == "penn_action":
            official = int(raw(src["name"].removeprefix("penn_"))["train"].ravel()[0])
            assert (src["split"] == "test") == (official != 1), src["name"]
            assert "ICCV 2013" in src["licence"]
        else:
            assert "commercial" in src["licence"] and len(src["tracks"]) == 3
            assert all(10 <= t["fps"] <= 30 and t["camera"]["profile"] in ("surveillance", "robot")
                       for t in src["tracks"])
    for split in SPLITS:  # every stored frame belongs to a source of its split
        data = small_corpus.split(split)
        assert {sources[i]["split"] for i in np.unique(data.arrays["source"])} <= {split}


def test_corpus_windows_stay_inside_tracks(small_corpus):
    total = 0
    for split in SPLITS:
        data = small_corpus.split(split)
        track, frame = data.arrays["track"], data.arrays["frame"]
        starts = window_starts(track, frame)
        # Count windows independently: per track, runs of consecutive frame numbers of length n give n - 4.
        expected = 0
        for track_id in np.unique(track):
            frames = frame[track == track_id]
            breaks = np.flatnonzero(np.diff(frames) != 1)
            runs = np.diff(np.concatenate([[0], breaks + 1, [len(frames)]]))
            expected += int(np.sum(np.maximum(runs - WINDOW_LENGTH + 1, 0)))
        assert len(starts) == expected == small_corpus.manifest["splits"][split]["windows"]
        for start in starts:
            assert len(set(track[start:start + WINDOW_LENGTH])) == 1
            assert np.all(np.diff(frame[start:start + WINDOW_LENGTH]) == 1)
        total += len(starts)
        keypoints, mask = data.arrays["keypoints"], data.arrays["mask"]
        if len(mask):
            assert np.mean(np.all(np.abs(keypoints[mask]) <= 1.0, axis=1)) > 0.97
            assert np.all(keypoints[~mask] == 0) and np.all(data.arrays["score"] == 1)
    assert total > 1000
