"""The BlazePose reference of the unseen-scene report (exlow-pose-data blazepose, report part 4), without
mediapipe in .venv: the landmark-to-COCO map, crop <-> frame pixels, the teacher -> tiny scaling, and the report's
scoring against another reference. The one test that runs mediapipe needs .venv-blazepose and skips without it."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.crop import normalise_keypoints, square_region
from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_training import blazepose_reference as bp
from exlow_pose_training import report
from exlow_pose_training.blazepose_labels import BLAZEPOSE_TO_COCO17, landmarks_to_coco, square_around
from exlow_pose_training.dataset_format import ExLowDataset, SplitData
from exlow_pose_training.report import CONSTANT, SMOOTHED, YOLO

from tiny_datasets import write_tiny_dataset

# mediapipe's PoseLandmark enum (mediapipe/python/solutions/pose.py), written out: the test needs no mediapipe.
BLAZEPOSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)


def test_blazepose_landmarks_map_to_coco17_by_name():
    assert len(BLAZEPOSE_NAMES) == 33
    assert tuple(BLAZEPOSE_NAMES[i] for i in BLAZEPOSE_TO_COCO17) == COCO17_NAMES


def test_landmarks_in_a_cut_crop_map_back_to_frame_pixels():
    """Dots drawn in a frame, cut by the labeller's square (partly outside the frame) and resized, found again in
    the crop as normalised coordinates like BlazePose's: back in the frame within a crop pixel."""
    frame = np.zeros((200, 300, 3), np.uint8)
    truth = np.array([[20.5, 30.5], [60.5, 150.5], [35.5, 90.5]])
    for x, y in truth:
        frame[int(y), int(x)] = 255
    box = np.array([10.0, 20.0, 70.0, 190.0])
    square = square_around(box, 0.25)
    assert square[2] == int(np.ceil(170 * 1.5)) and square[1] < 0  # longer side plus 25 % each side, centred
    crop = bp.cut_square(frame, square, 1024)  # upscaled: each frame pixel is a block of crop pixels
    brightness = crop[..., 0].astype(float)
    ys, xs = np.nonzero(brightness)
    landmarks = np.zeros((33, 4))
    for joint, (x, y) in zip((0, 5, 9), truth, strict=True):
        # Each dot's centre of brightness in crop pixels (pixel centres at +0.5), as a fraction of the crop.
        expected = (np.array([x, y]) - square[:2]) * 1024 / square[2]
        near = np.hypot(xs - expected[0], ys - expected[1]) < 20
        weights = brightness[ys[near], xs[near]]
        centre = np.average(xs[near] + 0.5, weights=weights), np.average(ys[near] + 0.5, weights=weights)
        landmarks[BLAZEPOSE_TO_COCO17[joint]] = [centre[0] / 1024, centre[1] / 1024, 0.0, 0.9]
    xy, visibility = landmarks_to_coco(landmarks, square)
    np.testing.assert_allclose(xy[[0, 5, 9]], truth, atol=square[2] / 1024 + 0.05)
    np.testing.assert_allclose(visibility[[0, 5, 9]], 0.9)
    assert visibility[1] == 0


def _teacher_and_tiny(scale: float = 0.1):
    """Two teacher persons in one frame and their tiny rows, as scene_dataset writes them."""
    boxes = np.array([[100.0, 50.0, 180.0, 250.0], [300.0, 60.0, 370.0, 240.0]])
    rng = np.random.default_rng(1)
    pixels = boxes[:, None, :2] + rng.uniform(0, 1, (2, 17, 2)) * (boxes[:, None, 2:] - boxes[:, None, :2])
    regions = [square_region(b) for b in boxes]
    teacher = SplitData({
        "frame": np.array([7, 7]), "source": np.array([0, 0]), "box": boxes.astype(np.float32),
        "region": np.array([[r.x0, r.y0, r.side] for r in regions]), "mask": np.ones((2, 17), bool),
        "keypoints": np.stack([normalise_keypoints(p, r) for p, r in zip(pixels, regions, strict=True)]),
        "track": np.array([0, 1])})
    # tiny: second person first, cropped around a detector box a little off the label
    order = [1, 0]
    tiny_regions = [square_region(boxes[i] * scale + [0.7, -0.4, 0.9, 0.3]) for i in order]
    tiny = SplitData({
        "frame": np.array([7, 7]), "source": np.array([0, 0]), "label_box": (boxes[order] * scale).astype(np.float32),
        "region": np.array([[r.x0, r.y0, r.side] for r in tiny_regions]), "height": np.full(2, 16.0, np.float32),
        "mask": np.ones((2, 17), bool), "track": np.array([0, 1]),
        "keypoints": np.stack([normalise_keypoints(pixels[i] * scale, r)
                               for i, r in zip(order, tiny_regions, strict=True)])})
    sources = [{"name": "clip.mp4", "median_person_px": 16.0 / scale}]
    return teacher, tiny, sources, pixels, order


def test_reference_points_are_scaled_into_tiny_crops_like_the_teacher_labels():
    teacher, tiny, sources, pixels, order = _teacher_and_tiny()
    match, scale = bp.match_tiny_rows(tiny, sources, teacher, sources)
    assert match.tolist() == order
    np.testing.assert_allclose(scale, 0.1)
    through = bp.tiny_reference_split(tiny, match, scale, bp.teacher_pixels(teacher), teacher.arrays["mask"])
    np.testing.assert_allclose(through.arrays["keypoints"], tiny.arrays["keypoints"], atol=1e-4)
    # A reference 10 full-resolution px to the right is 1 tiny px: 2 / side in crop units; unfound joints unlabelled.
    mask = np.ones((2, 17), bool)
    mask[1, 3] = False
    shifted = bp.tiny_reference_split(tiny, match, scale, pixels + [10.0, 0.0], mask)
    side = tiny.arrays["region"][:, 2].astype(float)
    labelled = shifted.arrays["mask"]
    assert not labelled[order.index(1), 3] and labelled.sum() == 33
    step = shifted.arrays["keypoints"] - tiny.arrays["keypoints"]
    np.testing.assert_allclose(step[..., 0][labelled], np.broadcast_to(2 / side[:, None], (2, 17))[labelled], atol=1e-4)
    np.testing.assert_allclose(step[..., 1][labelled], 0, atol=1e-4)
    assert (shifted.arrays["keypoints"][~labelled] == 0).all()
    # Another person's box (or another frame) matches nothing.
    tiny.arrays["label_box"][0] += 5
    assert bp.match_tiny_rows(tiny, sources, teacher, sources)[0].tolist() == [-1, order[1]]


def test_cached_labels_load_with_found_persons_and_agreement(tmp_path):
    teacher, _, _, pixels, _ = _teacher_and_tiny()
    teacher.arrays["mask"][1, :5] = False
    keypoints = pixels.astype(np.float32).copy()
    keypoints[1] += [150.0, 0.0]  # someone else beside the person: centred outside the teacher's box
    path = tmp_path / "labels.npz"
    np.savez(path, rows=np.array([0, 1]), source=np.array([0, 0]), frame=np.array([7, 7]), keypoints=keypoints,
             visibility=np.full((2, 17), 0.9, np.float32), detected=np.array([True, True]),
             meta=np.array(json.dumps({"settings": {}})))
    reference = bp.load_reference(path, teacher)
    assert reference.found.tolist() == [True, False] and reference.meta["rejected_off_centre"] == 1
    assert not reference.mask[1].any()
    result = bp.agreement(reference, teacher, np.array(["a", "a"]))
    assert result["a"]["mean_oks"] == pytest.approx(1.0, abs=1e-6) and result["a"]["found_share"] == 50.0
    assert bp.load_reference(path, teacher, person_visibility=0.95).found.sum() == 0
    np.savez(path, rows=np.array([0, 1]), source=np.array([0, 0]), frame=np.array([6, 7]), keypoints=keypoints,
             visibility=np.ones((2, 17)), detected=np.ones(2, bool), meta=np.array("{}"))
    with pytest.raises(ValueError, match="another teacher dataset"):
        bp.load_reference(path, teacher)


def test_report_scores_outputs_against_another_reference(tmp_path):
    """Against a reference equal to the detector's keypoints on half the scene's persons, YOLO alone is exact
    (OKS accuracy 100 %, recall 100 %) on the person-frames the reference labels; the constant pose is not."""
    root = write_tiny_dataset(tmp_path / "tiny", "tiny", detector_noise=0.05, tracks_per_split=6, seed=4)
    dataset = ExLowDataset(root)
    split = dataset.split("test")
    constant = np.zeros((17, 2), np.float32)
    teacher_table, outputs = report.tiny_table([], constant, dataset, split)
    scenes = report.scene_of_rows(dataset, split)
    found = split.arrays["found"] & split.arrays["mask"].any(axis=1)
    keep = found & (split.arrays["frame"] % 2 == 0)
    other = SplitData({**split.arrays, "keypoints": split.arrays["detector"][..., :2].copy(),
                       "mask": split.arrays["mask"] & keep[:, None]})
    table = report.score_tiny(outputs, other, scenes)
    for scene in ("a", "b"):
        yolo = table[YOLO][f"{scene}|16"]
        assert yolo["persons"] == int((keep & (scenes == scene)).sum())
        assert yolo["recall"] == 100.0 and yolo["oks_accuracy"] == pytest.approx(100.0)
        assert table[f"{CONSTANT} (on tracked persons)"][f"{scene}|16"]["oks_accuracy"] < 50
        assert teacher_table[YOLO][f"{scene}|16"]["oks_accuracy"] < 100  # the teacher differs from the detector
    assert set(table) == set(teacher_table) and SMOOTHED in table
    # Scoring the teacher's own split again reproduces the teacher table.
    assert report.score_tiny(outputs, split, scenes) == teacher_table


def test_report_says_how_to_make_missing_blazepose_labels():
    lines = report.blazepose_markdown(None, "bash scripts/setup_blazepose.sh && exlow-pose-data blazepose", SMOOTHED)
    assert any("exlow-pose-data blazepose" in line for line in lines)


@pytest.mark.skipif(not bp.DEFAULT_PYTHON.is_file(),
                    reason="needs .venv-blazepose with mediapipe 0.10.21 (bash scripts/setup_blazepose.sh)")
def test_labeller_runs_in_the_blazepose_venv(tmp_path):
    """The subprocess contract: crops in, (17, 2) keypoints + visibility out; an empty crop holds nobody."""
    crops = np.zeros((2, 96, 96, 3), np.uint8)
    crops[1] = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (96, 96, 3), np.uint8), (5, 5), 0)
    np.savez(tmp_path / "jobs.npz", crops=crops, squares=np.array([[0, 0, 96], [10, 20, 300]]))
    subprocess.run([str(bp.DEFAULT_PYTHON), str(bp.LABELLER), "--jobs", str(tmp_path / "jobs.npz"), "--out",
                    str(tmp_path / "out.npz")], check=True, capture_output=True, timeout=300)
    out = np.load(tmp_path / "out.npz")
    assert out["keypoints"].shape == (2, 17, 2) and out["visibility"].shape == (2, 17)
    assert not out["detected"][0] and np.isnan(out["keypoints"][0]).all()
    assert str(out["mediapipe_version"]) == "0.10.21"
