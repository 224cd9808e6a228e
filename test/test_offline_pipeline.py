"""The drawing module and the offline pipeline CLI (exlow_pose_video) on a few real vtest.avi frames."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.backends import create_backend
from exlow_pose_ros.core.backends.base import PoseBackend
from exlow_pose_ros.core.crop import SquareRegion, cut_crop, denormalise_keypoints, square_region
from exlow_pose_ros.core.drawing import (
    CENTRE_COLOUR,
    LEFT_COLOUR,
    LIMB_COLOURS,
    RIGHT_COLOUR,
    draw_skeletons,
    draw_tracked_boxes,
    track_colour,
)
from exlow_pose_ros.core.keypoints import COCO17_LIMBS, COCO17_NAMES
from exlow_pose_ros.core.model_contract import crops_to_input
from exlow_pose_ros.core.pose_estimator import PersonObservation, PoseEstimator
from exlow_pose_ros.core.windows import sequence_windows
from exlow_pose_ros.tools.offline import main

ASSETS = Path(os.environ.get("EXLOW_POSE_ASSETS", Path(__file__).resolve().parents[1] / "assets"))
VIDEO = ASSETS / "videos" / "vtest.avi"
DETECTOR = ASSETS / "models" / "yolo11n-pose.pt"
START, FRAMES = 200, 8  # people are in view from frame 200 on


# --- drawing --------------------------------------------------------------------------------------------------

def _figure() -> SimpleNamespace:
    """A person seen from the front, 160 px tall, in a 200 x 200 image; its left side on the image right."""
    points = {
        "nose": (100, 30), "left_eye": (104, 26), "right_eye": (96, 26), "left_ear": (110, 28), "right_ear": (90, 28),
        "left_shoulder": (125, 55), "right_shoulder": (75, 55), "left_elbow": (140, 85), "right_elbow": (60, 85),
        "left_wrist": (150, 115), "right_wrist": (50, 115), "left_hip": (115, 110), "right_hip": (85, 110),
        "left_knee": (118, 145), "right_knee": (82, 145), "left_ankle": (120, 175), "right_ankle": (80, 175),
    }
    keypoints = np.array([points[name] for name in COCO17_NAMES], dtype=np.float64)
    return SimpleNamespace(track_id=7, box=(40.0, 18.0, 160.0, 178.0), keypoints=keypoints, score=0.9)


def _segment_distance(pixels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((pixels - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(pixels - (a + t[:, None] * ab), axis=1)


def _pixel(image: np.ndarray, point: np.ndarray) -> tuple[int, ...]:
    # Continuous coordinates: pixel (col, row) covers [col, col + 1) x [row, row + 1).
    return tuple(int(v) for v in image[int(point[1]), int(point[0])])


def test_draw_skeletons_colours_limbs_by_side_and_draws_nothing_elsewhere():
    background = np.full((200, 200, 3), 40, np.uint8)
    original = background.copy()
    figure = _figure()
    figure.keypoints[COCO17_NAMES.index("left_ankle")] = np.nan  # a keypoint without a position
    drawn = draw_skeletons(background, [figure], draw_boxes=False, draw_ids=False)

    assert np.array_equal(background, original), "the input image must not be modified"
    points = figure.keypoints
    for (a, b), colour in zip(COCO17_LIMBS, LIMB_COLOURS, strict=True):
        names = (COCO17_NAMES[a], COCO17_NAMES[b])
        if "left_ankle" in names:
            continue
        middle = (points[a] + points[b]) / 2
        if np.linalg.norm(points[a] - points[b]) > 12:  # face limbs are too short to sample clear of the dots
            assert _pixel(drawn, middle) == colour, f"limb {names} at {middle}"
    named = {n: points[i] for i, n in enumerate(COCO17_NAMES)}
    # Side colours: the person's left arm (image right here) left, right arm right, shoulders centre.
    assert _pixel(drawn, (named["left_elbow"] + named["left_wrist"]) / 2) == LEFT_COLOUR
    assert _pixel(drawn, (named["right_elbow"] + named["right_wrist"]) / 2) == RIGHT_COLOUR
    assert _pixel(drawn, (named["left_shoulder"] + named["right_shoulder"]) / 2 + [8, 0]) == CENTRE_COLOUR
    assert len({LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR}) == 3

    # Every changed pixel lies on a drawn limb or keypoint; the shin to the missing ankle is not drawn.
    changed = np.argwhere((drawn != original).any(axis=2))[:, ::-1] + 0.5  # (x, y) pixel centres
    assert len(changed) > 500
    valid = np.isfinite(points).all(axis=1)
    distance = np.full(len(changed), np.inf)
    for a, b in COCO17_LIMBS:
        if valid[a] and valid[b]:
            distance = np.minimum(distance, _segment_distance(changed, points[a], points[b]))
    assert distance.max() <= 5.0, "pixels changed away from every limb and keypoint"
    left_knee = named["left_knee"]
    shin = original[int(left_knee[1]) + 8:, 110:130]
    assert np.array_equal(drawn[int(left_knee[1]) + 8:, 110:130], shin), "a limb was drawn to a missing keypoint"


def test_line_width_follows_person_size():
    def drawn_width(height: float) -> int:
        image = np.zeros((400, 400, 3), np.uint8)
        keypoints = np.full((17, 2), np.nan)
        keypoints[COCO17_NAMES.index("left_shoulder")] = (100, 200.5)  # along the centres of row 200
        keypoints[COCO17_NAMES.index("left_elbow")] = (300, 200.5)
        person = SimpleNamespace(track_id=1, box=(0.0, 0.0, 50.0, height), keypoints=keypoints, score=1.0)
        column = draw_skeletons(image, [person], draw_boxes=False, draw_ids=False)[:, 200]
        return int((column.max(axis=1) > 127).sum())  # anti-aliasing fringes do not count

    assert drawn_width(20) <= 2  # a 20 px person: hairlines, so the person stays visible
    assert drawn_width(300) >= 4  # a 300 px person: a skeleton readable at a glance
    assert drawn_width(300) > drawn_width(100) > drawn_width(20) - 1


def test_boxes_take_track_colours_apart_from_the_limb_colours():
    image = np.zeros((120, 200, 3), np.uint8)
    boxes = [SimpleNamespace(track_id=i, box=(20.0 + 40 * i, 30.0, 50.0 + 40 * i, 100.0), score=0.5) for i in (1, 2)]
    drawn = draw_tracked_boxes(image, boxes)
    assert not image.any(), "the input image must not be modified"
    for person in boxes:
        x_min, _, x_max, y_max = person.box
        assert _pixel(drawn, ((x_min + x_max) / 2, y_max - 0.5)) == track_colour(person.track_id)  # bottom edge
        assert not drawn[40:90, int(x_min) + 3:int(x_max) - 3].any(), "the inside of a box stays clear"
    colours = {track_colour(i) for i in range(1, 50)}
    assert len(colours) == 49
    assert not colours & {LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR}
    # The label sits above the box, in the track colour.
    assert (drawn[15:30, 60:90] == track_colour(1)).all(axis=2).sum() > 20


# --- runs, gaps and the end of tracks: PoseEstimator -----------------------------------------------------------

class RecordingBackend(PoseBackend):
    """Reads (track id, frame) back from each crop (R, G channels) and records every window it is given."""

    name = "recording"

    def __init__(self) -> None:
        self.contract = {"method": "test"}
        self.windows: list[tuple[int, tuple[int, ...]]] = []

    def _estimate(self, crops: np.ndarray, detector: np.ndarray | None) -> tuple[np.ndarray, None]:
        codes = np.rint(crops[:, :, :2].mean(axis=(3, 4)) * 255).astype(int)  # (N, 5, 2): track, frame
        self.windows += [(int(c[0, 0]), tuple(int(f) for f in c[:, 1])) for c in codes]
        poses = np.zeros((len(crops), 5, 17, 2), np.float32)
        poses[..., 0] = codes[:, :, None, 1] / 255.0  # x in crop coordinates: frame / 255
        return poses, None


def _observation(track_id: int, frame: int) -> PersonObservation:
    crop = np.zeros((16, 16, 3), np.uint8)
    crop[..., 0], crop[..., 1] = track_id, frame
    return PersonObservation(track_id, (0.0, 0.0, 2.0, 2.0), 1.0, SquareRegion(0, 0, 2), crop, frame)


@pytest.mark.parametrize("mode", ["centre", "latest"])
def test_every_tracked_frame_gets_exactly_one_skeleton_from_an_edge_padded_window(mode):
    presence = {
        1: range(0, 12),                        # live to the end
        2: [0, 1, 2, 3, 6, 7, 8, 9, 10, 11],    # a short gap: the run ends, a new one starts (no splicing)
        3: [0, 1, 2],                           # gone for good: finished and forgotten at frame 3
        4: [9],                                 # a single frame, live at the end
    }
    backend = RecordingBackend()
    poses = PoseEstimator(backend, mode)
    estimates, emitted_at = [], {}
    for frame in range(12):
        out = poses.process([_observation(t, frame) for t, frames in presence.items() if frame in frames])
        emitted_at.update({(e.track_id, e.stamp): frame for e in out})
        estimates += out
        if mode == "centre" and frame == 5:
            assert sorted(poses.pending_stamps()) == [4, 5]  # track 1's last two; tracks 2 and 3 ended runs
            assert poses.active_tracks == 1  # only the live run is held
    estimates += poses.flush()
    assert poses.pending_stamps() == []

    found = sorted((e.track_id, e.stamp) for e in estimates)
    assert found == sorted((t, f) for t, frames in presence.items() for f in frames), "missing or duplicate"
    for estimate in estimates:  # each skeleton describes its own frame: x = frame / 255 + 1 over region (0, 0, 2)
        assert np.allclose(estimate.keypoints[:, 0], estimate.stamp / 255.0 + 1.0)
    runs = {1: [range(0, 12)], 2: [range(0, 4), range(6, 12)], 3: [range(0, 3)], 4: [[9]]}
    expected = sorted((t, tuple(np.asarray(list(run))[row].tolist()))
                      for t, track_runs in runs.items() for run in track_runs
                      for row in sequence_windows(len(run), mode))
    assert sorted(backend.windows) == expected, "windows must follow runs and never splice across a gap"
    if mode == "centre":
        assert emitted_at[3, 2] == 3, "a run is finished in the first frame that misses it"
        assert emitted_at[2, 3] == 4 and backend.windows.count((2, (1, 2, 3, 3, 3))) == 1
        assert backend.windows.count((1, (9, 10, 11, 11, 11))) == 1  # the last frame: padded with itself


# --- the CLI on real frames -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from exlow_pose_training.export import export_onnx
    from exlow_pose_training.models import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "pten_untrained.onnx"
    export_onnx(build_model("pten"), path, "pten")
    return path


@pytest.fixture(scope="module")
def video_frames() -> list[np.ndarray]:
    if not VIDEO.is_file() or not DETECTOR.is_file():
        pytest.skip("assets missing: run scripts/setup.sh")
    capture = cv2.VideoCapture(str(VIDEO))
    for _ in range(START):
        capture.grab()
    frames = [capture.read()[1] for _ in range(FRAMES)]
    capture.release()
    return frames


@pytest.fixture(scope="module")
def reference_tracks(video_frames):
    """What the tracker alone reports on the same frames (a fresh tracker: same ids)."""
    from exlow_pose_ros.core.person_tracker import PersonTracker

    tracker = PersonTracker(DETECTOR, image_size=1280)
    return [tracker.track(frame) for frame in video_frames]


@pytest.fixture(scope="module")
def centre_run(untrained_model, video_frames, tmp_path_factory):
    out = tmp_path_factory.mktemp("centre")
    code = main([str(VIDEO), "--model", str(untrained_model), "--detector", str(DETECTOR), "--backend", "onnxruntime",
                 "--out-json", str(out / "poses.json"), "--out-video", str(out / "annotated.mp4"),
                 "--out-coco", str(out / "coco.json"),
                 "--start-frame", str(START), "--max-frames", str(FRAMES), "--keypoints", "model"])
    assert code == 0
    document = json.loads((out / "poses.json").read_text())
    # Where OpenCV cannot write H.264 the video is .webm instead; the JSON says which file was written.
    return document, Path(document["annotated_video"]["path"])


@pytest.fixture(scope="module")
def coco_results(centre_run) -> list[dict]:
    _, video = centre_run
    return json.loads((video.parent / "coco.json").read_text())


def test_cli_default_publishes_the_detectors_keypoints_smoothed_with_calibrated_confidence(
        untrained_model, video_frames, reference_tracks, tmp_path):
    from exlow_pose_ros.core.assets import keypoint_calibration
    from exlow_pose_ros.core.pose_estimator import smooth_detector_keypoints

    assert main([str(VIDEO), "--model", str(untrained_model), "--detector", str(DETECTOR), "--out-json",
                 str(tmp_path / "p.json"), "--start-frame", str(START), "--max-frames", str(FRAMES)]) == 0
    document = json.loads((tmp_path / "p.json").read_text())
    calibration = keypoint_calibration("")
    target = 3
    for person in document["frames"][target]["persons"]:
        track = [next((t for t in tracked if t.track_id == person["track_id"]), None)
                 for tracked in reference_tracks[target - 1:target + 2]]
        if any(t is None for t in track):
            continue
        expected = smooth_detector_keypoints(np.stack([t.keypoints for t in track]), 1)
        keypoints = np.array(person["keypoints"])
        np.testing.assert_allclose(keypoints[:, :2], expected[:, :2], atol=0.01)
        box = track[1].box  # the described frame's own box: its height is the calibration's size term
        np.testing.assert_allclose(keypoints[:, 2], calibration(expected[:, 2], box[3] - box[1]), atol=1e-4)


def test_cli_json_follows_the_schema(centre_run, untrained_model):
    document, _ = centre_run
    assert document["video"] == str(VIDEO)
    assert document["model"]["path"] == str(untrained_model)
    assert len(document["model"]["sha256"]) == 64 and document["model"]["method"] == "pten"
    assert document["detector"]["path"] == str(DETECTOR) and document["detector"]["imgsz"] == 1280
    assert (document["mode"], document["width"], document["height"], document["fps"]) == ("centre", 768, 576, 10.0)
    assert [f["index"] for f in document["frames"]] == list(range(START, START + FRAMES))
    video = document["annotated_video"]
    assert Path(video["path"]).stem == "annotated" and Path(video["path"]).suffix in (".mp4", ".webm")
    assert video["codec"] in ("H.264", "VP8", "VP9", "MPEG-4 Part 2")
    for frame in document["frames"]:
        assert frame["time_s"] == pytest.approx(frame["index"] / 10.0)
        for person in frame["persons"]:
            assert set(person) == {"track_id", "box", "score", "keypoints"}
            assert isinstance(person["track_id"], int) and len(person["box"]) == 4 and 0 < person["score"] <= 1
            keypoints = np.array(person["keypoints"], dtype=float)
            assert keypoints.shape == (17, 3) and np.isfinite(keypoints).all()
            assert np.allclose(keypoints[:, 2], person["score"], atol=1e-4)  # a model without confidence


def test_cli_persons_are_the_tracked_persons_with_persistent_ids(centre_run, reference_tracks):
    document, _ = centre_run
    assert sum(len(t) for t in reference_tracks) >= 3 * FRAMES, "frame 200 on should show several people"
    for frame, tracked in zip(document["frames"], reference_tracks, strict=True):
        # Every tracked person, the last two frames included (flushed with edge padding), has a skeleton.
        assert [p["track_id"] for p in frame["persons"]] == [t.track_id for t in tracked], frame["index"]
        for person, reference in zip(frame["persons"], tracked, strict=True):
            assert np.allclose(person["box"], reference.box, atol=0.01)
    ids = [{p["track_id"] for p in f["persons"]} for f in document["frames"]]
    assert len(set.intersection(*ids)) >= 3, "the same people keep their track ids across the frames"


def test_cli_skeletons_come_from_each_frames_crop_window(centre_run, reference_tracks, video_frames, untrained_model):
    """Recompute a middle and the last frame's skeletons by hand: crop convention, RGB, window order, padding."""
    document, _ = centre_run
    backend = create_backend("onnxruntime", untrained_model)
    track_id = next(iter(set.intersection(*[{t.track_id for t in tracked} for tracked in reference_tracks])))
    boxes = [next(t.box for t in tracked if t.track_id == track_id) for tracked in reference_tracks]
    crops = [cut_crop(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), square_region(box))
             for frame, box in zip(video_frames, boxes, strict=True)]
    last = FRAMES - 1
    for target, window in ((3, [1, 2, 3, 4, 5]), (last, [last - 2, last - 1, last, last, last])):
        pose = backend.infer(crops_to_input(np.stack([np.stack([crops[i] for i in window])])))[0, 2]
        expected = denormalise_keypoints(pose, square_region(boxes[target]))
        person = next(p for p in document["frames"][target]["persons"] if p["track_id"] == track_id)
        assert np.allclose(np.array(person["keypoints"])[:, :2], expected, atol=0.02), f"frame {target}"


def test_cli_annotated_video_has_every_frame_drawn(centre_run, video_frames):
    document, path = centre_run
    capture = cv2.VideoCapture(str(path))
    written = []
    while (frame := capture.read())[0]:
        written.append(frame[1])
    capture.release()
    assert len(written) == FRAMES and written[0].shape == (576, 768, 3)
    # Annotations: inside each person's box the picture differs from the input far more than codec noise.
    for frame, original, described in zip(written, video_frames, document["frames"], strict=True):
        difference = np.abs(frame.astype(int) - original.astype(int)).max(axis=2)
        for person in described["persons"]:
            x_min, y_min, x_max, y_max = (round(v) for v in person["box"])
            assert (difference[y_min:y_max, x_min:x_max] > 80).sum() > 10


def test_cli_coco_results_are_the_json_skeletons_one_entry_per_person_frame(centre_run, coco_results):
    document, _ = centre_run
    persons = [(frame["index"], person) for frame in document["frames"] for person in frame["persons"]]
    assert len(coco_results) == len(persons) >= 3 * FRAMES
    for entry, (index, person) in zip(coco_results, persons, strict=True):
        assert set(entry) == {"image_id", "category_id", "keypoints", "score", "track_id"}
        assert (entry["image_id"], entry["category_id"], entry["track_id"]) == (index, 1, person["track_id"])
        assert isinstance(entry["image_id"], int) and entry["score"] == person["score"]
        # Flat x, y, confidence triples: the JSON's rows unchanged (same pixel convention, no 0.5 shift).
        assert len(entry["keypoints"]) == 17 * 3
        assert np.array(entry["keypoints"]).reshape(17, 3).tolist() == person["keypoints"]


def test_cli_coco_results_load_in_pycocotools(centre_run, coco_results):
    coco = pytest.importorskip("pycocotools.coco")
    document, _ = centre_run
    ground_truth = coco.COCO()
    ground_truth.dataset = {
        "images": [{"id": f["index"], "width": document["width"], "height": document["height"]}
                   for f in document["frames"]],
        "annotations": [], "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}]}
    ground_truth.createIndex()
    results = ground_truth.loadRes(coco_results)
    assert len(results.getAnnIds()) == len(coco_results)
    assert sorted(results.getImgIds()) == [f["index"] for f in document["frames"]]
    first = results.loadAnns(results.getAnnIds(imgIds=[START]))[0]
    assert first["area"] > 0 and len(first["bbox"]) == 4  # loadRes derives them from the keypoints


def test_cli_latest_mode_describes_every_frame_without_delay(untrained_model, reference_tracks, tmp_path):
    code = main([str(VIDEO), "--model", str(untrained_model), "--detector", str(DETECTOR), "--mode", "latest",
                 "--out-json", str(tmp_path / "p.json"), "--out-video", str(tmp_path / "a.mp4"),
                 "--start-frame", str(START), "--max-frames", "3"])
    assert code == 0
    document = json.loads((tmp_path / "p.json").read_text())
    assert document["mode"] == "latest"
    for frame, tracked in zip(document["frames"], reference_tracks[:3], strict=True):
        assert [p["track_id"] for p in frame["persons"]] == [t.track_id for t in tracked]


@pytest.mark.parametrize("missing", ["video", "model", "detector"])
def test_cli_missing_input_fails_with_one_clear_line(missing, tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not used: the check comes first")
    paths = {"video": str(VIDEO), "model": str(model), "detector": str(DETECTOR)}
    paths[missing] = str(tmp_path / f"no_{missing}.file")
    code = main([paths["video"], "--model", paths["model"], "--detector", paths["detector"],
                 "--out-json", str(tmp_path / "p.json"), "--out-video", str(tmp_path / "a.mp4")])
    error = capsys.readouterr().err.strip()
    assert code != 0
    assert len(error.splitlines()) == 1 and f"no_{missing}.file" in error and "not found" in error
    assert not (tmp_path / "p.json").exists()


def test_cli_unusable_model_fails_with_one_clear_line(tmp_path, capsys):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"this is not an onnx graph")
    code = main([str(VIDEO), "--model", str(model), "--detector", str(DETECTOR), "--backend", "onnxruntime",
                 "--out-json", str(tmp_path / "p.json"), "--out-video", str(tmp_path / "a.mp4")])
    error = capsys.readouterr().err.strip()
    assert code != 0 and len(error.splitlines()) == 1 and "broken.onnx" in error


def test_cli_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--out-json" in capsys.readouterr().out
