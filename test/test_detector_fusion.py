"""Detector fusion and per-joint confidence: the model, its training, its ONNX contract, the pose stage that
feeds it each frame's detector keypoints, and the unseen-scene report that scores it against the detector."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training import config_for

from exlow_pose_ros.core.backends import create_backend
from exlow_pose_ros.core.backends.base import PoseBackend
from exlow_pose_ros.core.crop import SquareRegion, normalise_keypoints
from exlow_pose_ros.core.pose_estimator import PersonObservation, PoseEstimator
from exlow_pose_training.checkpoints import load_model
from exlow_pose_training.export import export_onnx, parity
from exlow_pose_training.models import build_model
from exlow_pose_training.torch_dataset import WindowDataset
from exlow_pose_training.train import train

from tiny_datasets import write_tiny_dataset

FUSION = {"frame_alignment": True, "detector_input": True, "confidence": True}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("fusion")
    return {"tiny": write_tiny_dataset(base / "tiny", "tiny"), "motion": write_tiny_dataset(base / "motion", "motion"),
            "teacher": write_tiny_dataset(base / "teacher", "teacher")}


def test_fusion_starts_from_confident_detector_keypoints_and_the_prior_elsewhere():
    torch.manual_seed(0)
    model = build_model("pten", FUSION).eval()
    crops = torch.rand(3, 5, 3, 16, 16)
    detector = torch.cat([torch.rand(3, 5, 17, 2) * 1.6 - 0.8, torch.full((3, 5, 17, 1), 0.99)], dim=-1)
    with torch.no_grad():
        confident, logits = model.predict(crops, detector)
        prior = model.predict(crops, None)[0]
        unsure = model.predict(crops, torch.cat([detector[..., :2], torch.zeros(3, 5, 17, 1)], dim=-1))[0]
    assert logits.shape == (3, 5, 17)
    # Confident detector keypoints pass (gate sigmoid(6 * 0.49) = 0.95); unconfident ones barely count.
    assert (confident - detector[..., :2]).abs().mean() < 0.1 * (prior - detector[..., :2]).abs().mean()
    assert (unsure - detector[..., :2]).abs().mean() > 0.5 * (prior - detector[..., :2]).abs().mean()


def test_fusion_learns_on_detector_windows_and_crop_only_windows(data, tmp_path):
    dataset = WindowDataset([(data["tiny"], "train", 0.5), (data["teacher"], "train", 0.5)])
    batch = dataset[np.arange(len(dataset))[:64]]
    assert batch["detector"].shape == (64, 5, 17, 3) and batch["area"].shape == (64, 5)
    teacher_rows = batch["part"] == 1
    assert torch.all(batch["detector"][teacher_rows] == 0), "a part without detector keypoints must give zeros"
    torch.manual_seed(0)
    train(config_for("autoencoder", data["motion"], tmp_path / "ae", epochs=1))
    config = config_for("pten", data["tiny"], tmp_path / "run", model=FUSION,
                        train=[{"root": str(data["tiny"]), "split": "train", "weight": 0.6},
                               {"root": str(data["teacher"]), "split": "train", "weight": 0.4}],
                        pretrained_autoencoder=str(tmp_path / "ae" / "best.pt"), epochs=5)
    torch.manual_seed(0)
    fresh = build_model("pten", FUSION).eval()
    with torch.no_grad():
        before = float(fresh.loss(batch)[0])
    train(config)
    model, _ = load_model(tmp_path / "run" / "last.pt")
    assert model.detector_input and model.confidence is not None, "the options did not survive the checkpoint"
    with torch.no_grad():
        after = float(model.eval().loss(batch)[0])
    assert after < 0.7 * before


def test_fusion_exports_both_inputs_and_outputs_with_parity(tmp_path):
    torch.manual_seed(0)
    model = build_model("pten", FUSION).eval()
    with torch.no_grad():
        model.gate.bias.normal_()  # a non-trivial gate and correction, so that parity tests them too
        model.correction.weight.normal_(std=0.05)
    path = tmp_path / "fusion.onnx"
    written = export_onnx(model, path, "pten", model_options=FUSION)
    assert written["contract_version"] == 2
    assert written["detector_input"]["shape"] == ["N", 5, 17, 3] and written["confidence_output"]["shape"] == [
        "N", 5, 17]
    assert parity(model, path) < 1e-4
    backend = create_backend("onnxruntime", path, threads=1)
    assert backend.takes_detector and backend.gives_confidence
    rng = np.random.default_rng(1)
    crops = rng.random((6, 5, 3, 16, 16), dtype=np.float32)
    detector = np.concatenate([rng.uniform(-0.8, 0.8, (6, 5, 17, 2)), rng.random((6, 5, 17, 1))], -1).astype(
        np.float32)
    poses, confidence = backend.estimate(crops, detector)
    with torch.no_grad():
        expected, logits = model.predict(torch.from_numpy(crops), torch.from_numpy(detector))
    np.testing.assert_allclose(poses, expected.numpy(), atol=1e-4)
    np.testing.assert_allclose(confidence, torch.sigmoid(logits).numpy(), atol=1e-4)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    # No detector keypoints (another tracker): the same as all-zero keypoints.
    np.testing.assert_allclose(backend.infer(crops), backend.infer(crops, np.zeros_like(detector)), atol=1e-6)
    with pytest.raises(ValueError, match="detector keypoints must have shape"):
        backend.estimate(crops, detector[:, :4])


class RecordingFusionBackend(PoseBackend):
    """Takes detector keypoints and gives confidence; records what it was fed and returns the detector's input."""

    name = "recording-fusion"

    def __init__(self) -> None:
        self.contract = {"method": "test", "detector_input": {}, "confidence_output": {}}
        self.fed: list[np.ndarray] = []

    def _estimate(self, crops: np.ndarray, detector: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        self.fed.append(detector)
        return detector[..., :2].copy(), detector[..., 2].copy()


def test_pose_estimator_feeds_each_frame_its_own_detector_keypoints_in_crop_coordinates():
    backend = RecordingFusionBackend()
    estimator = PoseEstimator(backend, mode="latest")
    rng = np.random.default_rng(0)
    observations = []
    for frame in range(5):
        region = SquareRegion(10 * frame, 5 * frame, 40 + 4 * frame)  # the box moves and grows
        keypoints = np.concatenate([rng.uniform(region.x0, region.x0 + region.side, (17, 1)),
                                    rng.uniform(region.y0, region.y0 + region.side, (17, 1)),
                                    rng.random((17, 1))], -1).astype(np.float32)
        without = frame == 1  # a frame whose tracker gave no keypoints
        observations.append(PersonObservation(7, region.box, 0.9, region, np.zeros((16, 16, 3), np.uint8), frame,
                                              None if without else keypoints))
        estimates = estimator.process([observations[-1]])
    fed = backend.fed[-1][0]
    for frame, observation in enumerate(observations):
        if observation.detector_keypoints is None:
            assert (fed[frame] == 0).all()
            continue
        np.testing.assert_allclose(fed[frame, :, :2],
                                   normalise_keypoints(observation.detector_keypoints[:, :2], observation.region),
                                   atol=1e-5)
        np.testing.assert_allclose(fed[frame, :, 2], observation.detector_keypoints[:, 2])
    # Back in pixels, the newest frame's skeleton is its detector keypoints; confidence comes through per joint.
    (estimate,) = estimates
    np.testing.assert_allclose(estimate.keypoints, observations[-1].detector_keypoints[:, :2], atol=1e-3)
    np.testing.assert_allclose(estimate.confidence, observations[-1].detector_keypoints[:, 2], atol=1e-6)


def test_report_scores_the_detector_and_the_model_on_unseen_scenes(data, tmp_path):
    """With exact detector keypoints, YOLO's row must equal the share found (misses count 0) and its recall;
    the product row's recall is the tracked share; every table names the scenes."""
    from exlow_pose_training.report import main as report

    scenes = tmp_path / "scenes"
    write_tiny_dataset(scenes / "tiny", "tiny", detector_noise=0.0, tracks_per_split=6, seed=3)
    write_tiny_dataset(scenes / "teacher", "teacher", tracks_per_split=6, seed=3)
    train_dir = tmp_path / "train"
    write_tiny_dataset(train_dir / "teacher", "teacher")
    model = build_model("pten", FUSION).eval()
    export_onnx(model, tmp_path / "fusion.onnx", "pten", model_options=FUSION)
    out = tmp_path / "report"
    assert report(["--model", f"ours={tmp_path / 'fusion.onnx'}", "--scenes", str(scenes), "--train",
                   str(train_dir), "--out", str(out), "--threads", "1"]) == 0
    result = json.loads((out / "report.json").read_text())
    from exlow_pose_training.dataset_format import ExLowDataset

    split = ExLowDataset(scenes / "tiny").split("test")
    labelled = split.arrays["mask"].any(axis=1)
    for scene in ("a", "b"):
        chosen = (np.array([s["scene"] for s in ExLowDataset(scenes / "tiny").manifest["sources"]])[
            split.arrays["source"]] == scene) & labelled
        yolo = result["tiny"]["YOLO11n-pose alone"][f"{scene}|16"]
        assert yolo["recall"] == pytest.approx(100 * split.arrays["found"][chosen].mean())
        assert yolo["oks_accuracy"] == pytest.approx(100 * split.arrays["found"][chosen].mean(), abs=1e-6)
        ours = result["tiny"]["ours"][f"{scene}|16"]
        assert ours["recall"] == pytest.approx(100 * split.arrays["tracked"][chosen].mean())
    assert set(result["pure_crop"]["Constant mean pose"]) == {"a", "b", "mean over scenes", "pooled"}
    assert "ours" in result["pure_crop"] and "ours, crops only" in result["tiny"]
    assert "ours" in result["confidence"] and 0 <= result["confidence"]["ours"]["ece"] <= 1
    smoothed = result["tiny"]["Product default: detector keypoints, smoothed"]["a|16"]
    assert smoothed["recall"] == pytest.approx(result["tiny"]["ours"]["a|16"]["recall"])  # the tracked persons
    assert any(line.startswith(("MET", "MISS")) for line in result["checks"])
    markdown = (out / "report.md").read_text()
    assert "| Constant mean pose |" in markdown and "YOLO11n-pose alone" in markdown
    for picture in ("accuracy_by_height.png", "reliability.png", "unseen_people.png"):
        assert (out / picture).stat().st_size > 5_000


def test_report_compares_another_product_detector_with_stock_yolo_on_the_same_person_frames(data, tmp_path):
    """--yolo-scenes: the YOLO row comes from stock YOLO's build of the same person-frames, the product detector
    keeps a row of its own; builds of different person-frames are refused; --split scores another split."""
    from exlow_pose_training.report import DETECTOR_ALONE, YOLO
    from exlow_pose_training.report import main as report

    train_dir = tmp_path / "train"
    write_tiny_dataset(train_dir / "teacher", "teacher")
    builds = {}
    for name, noise, seed in (("sharp", 0.02, 3), ("stock", 0.2, 3), ("other", 0.2, 4)):
        builds[name] = tmp_path / name
        write_tiny_dataset(builds[name] / "tiny", "tiny", detector_noise=noise, tracks_per_split=6, seed=seed)
        write_tiny_dataset(builds[name] / "teacher", "teacher", tracks_per_split=6, seed=seed)
    model = build_model("pten", FUSION).eval()
    export_onnx(model, tmp_path / "fusion.onnx", "pten", model_options=FUSION)
    common = ["--model", f"ours={tmp_path / 'fusion.onnx'}", "--train", str(train_dir), "--threads", "1"]

    def tiny_rows(scenes: str, yolo: str | None, split: str = "test") -> dict:
        out = tmp_path / f"report_{scenes}_{yolo}_{split}"
        extra = [] if yolo is None else ["--yolo-scenes", str(builds[yolo])]
        assert report([*common, "--scenes", str(builds[scenes]), *extra, "--split", split, "--out", str(out)]) == 0
        return json.loads((out / "report.json").read_text())["tiny"]

    alone, paired = tiny_rows("sharp", None), tiny_rows("sharp", "stock")
    stock = tiny_rows("stock", None)
    key = "mean over scenes|16"
    own = ("recall", "oks_accuracy", "mean_oks_both", "joint_error_both")  # the yolo_* fields are the YOLO row's
    assert [paired[DETECTOR_ALONE][key][m] for m in own] == pytest.approx([alone[YOLO][key][m] for m in own])
    assert [paired[YOLO][key][m] for m in own] == pytest.approx([stock[YOLO][key][m] for m in own])
    assert paired[DETECTOR_ALONE][key]["oks_accuracy"] > paired[YOLO][key]["oks_accuracy"] + 10
    with pytest.raises(SystemExit, match="same person-frames"):
        tiny_rows("sharp", "other")
    validation = tiny_rows("sharp", "stock", split="val")
    assert set(validation[YOLO]) == {"tiny|16", key}  # the val split's one scene, not the test scenes


def test_report_counts_left_right_swaps_and_what_undoing_them_is_worth(tmp_path):
    """Poses equal to the labels except on every third found person-frame, where left and right are swapped: the
    report must count those as swaps, and with the swaps undone every found person-frame is exact, so the OKS
    accuracy is the found share."""
    from exlow_pose_ros.core.keypoints import COCO17_FLIP_PERMUTATION
    from exlow_pose_training.dataset_format import ExLowDataset, scene_of_rows
    from exlow_pose_training.report import left_right_swaps, swaps_markdown

    data = ExLowDataset(write_tiny_dataset(tmp_path / "tiny", "tiny", tracks_per_split=6, seed=5))
    split = data.split("test")
    labels, found = split.arrays["keypoints"].astype(np.float64), split.arrays["found"].astype(bool)
    swap = found & (np.cumsum(found) % 3 == 0)
    pose = np.where(swap[:, None, None], labels[:, list(COCO17_FLIP_PERMUTATION)], labels)
    pose = np.where(found[:, None, None], pose, np.nan)
    scenes = scene_of_rows(data, split)
    table = left_right_swaps({"ours": (pose, None, found), "labels": (np.where(found[:, None, None], labels, np.nan),
                                                                      None, found)},
                             split, scenes, ("ours", "labels", "absent"))
    assert set(table) == {"ours", "labels"}
    assert all(row["swapped_share"] == 0 for row in table["labels"].values())
    rows = {line.split(" | ")[0].lstrip("| "): line for line in swaps_markdown(table, "test") if line.startswith("| ")}
    assert set(rows) == {"method", "ours", "labels"}  # one row per method, a column per height
    assert rows["ours"].count(" % ; ") == len(table["ours"]) and f"{table['ours']['16']['swapped_share']:.0f} % ; " \
        in rows["ours"].split(" | ")[1 + list(table["ours"]).index("16")]
    labelled = split.arrays["mask"].any(axis=1)
    for height, row in table["ours"].items():
        per_scene = [(scenes == s) & (split.arrays["height"] == float(height)) & labelled for s in ("a", "b")]
        assert row["swapped_share"] == pytest.approx(np.mean([100 * swap[m & found].mean() for m in per_scene]))
        assert row["oks_accuracy_swaps_undone"] == pytest.approx(np.mean([100 * found[m].mean() for m in per_scene]))
        assert row["oks_accuracy"] < row["oks_accuracy_swaps_undone"] - 10


def test_paired_rows_match_person_frames_in_any_order_and_move_keypoints_into_our_crops():
    """Two builds list the same person-frames in different orders and cut different crops (each around its
    own detector's box): the other build's keypoints must land on the same pixels in our crop coordinates."""
    from exlow_pose_training.dataset_format import SplitData
    from exlow_pose_training.report import paired_rows

    rng = np.random.default_rng(0)
    count = 6
    label_box = np.tile([10.0, 10.0, 30.0, 60.0], (count, 1)) + np.arange(count)[:, None]
    pixels = rng.uniform(0, 100, (count, 17, 2))

    def build(region: np.ndarray, order: np.ndarray) -> SplitData:
        detector = np.concatenate([2 * (pixels - region[:, None, :2]) / region[:, None, 2:3] - 1,
                                   np.ones((count, 17, 1))], axis=-1)
        arrays = {"source": np.zeros(count, int), "height": np.full(count, 16.0), "frame": np.arange(count),
                  "label_box": label_box, "mask": np.ones((count, 17), bool), "region": region,
                  "keypoints": np.zeros((count, 17, 2)), "detector": detector, "found": np.ones(count, bool),
                  "track": np.zeros(count, int)}
        return SplitData({name: values[order] for name, values in arrays.items()})

    ours = build(np.tile([0.0, 0.0, 50.0], (count, 1)), np.arange(count))
    theirs = build(np.tile([5.0, -3.0, 80.0], (count, 1)), rng.permutation(count))
    paired = paired_rows(ours, theirs)
    assert paired is not None and (paired["frame"] == ours.arrays["frame"]).all()
    assert paired["detector"][..., :2] == pytest.approx(ours.arrays["detector"][..., :2])
    moved = SplitData({**ours.arrays, "label_box": ours.arrays["label_box"] + 1})
    assert paired_rows(moved, theirs) is None  # another person-frame


def test_temperature_scaling_makes_an_overconfident_model_honest_on_held_out_data(data):
    from exlow_pose_training.dataset_format import ExLowDataset, person_area
    from exlow_pose_training.evaluate import window_rows
    from exlow_pose_training.export import calibrate_confidence
    from exlow_pose_training.models.pten import keypoint_oks
    from exlow_pose_training.report import reliability

    torch.manual_seed(0)
    model = build_model("pten", FUSION).eval()
    with torch.no_grad():  # confident of everything, much too sure
        model.confidence.weight.normal_(std=0.5)
        model.confidence.bias.fill_(4.0)
    split = ExLowDataset(data["tiny"]).split("val")
    rows = window_rows(split, np.arange(len(split)))
    crops = torch.from_numpy(split.arrays["crops"][rows]).permute(0, 1, 4, 2, 3).float() / 255
    detector = torch.from_numpy(split.arrays["detector"][rows])
    mask = split.arrays["mask"][rows]

    def ece() -> float:
        with torch.no_grad():
            poses, logits = model.predict(crops, detector)
        correct = keypoint_oks(poses, torch.from_numpy(split.arrays["keypoints"][rows]),
                               torch.from_numpy(person_area(split.arrays)[rows])) >= 0.5
        return reliability(torch.sigmoid(logits).numpy()[mask], correct.numpy()[mask])["ece"]

    before = ece()
    temperature = calibrate_confidence(model, data["tiny"], "val")
    assert temperature > 1.5, "an overconfident model needs a temperature above 1"
    assert ece() < 0.7 * before


def test_detector_keypoints_are_smoothed_by_confidence_over_neighbouring_frames_only():
    from exlow_pose_ros.core.pose_estimator import smooth_detector_keypoints

    points = np.zeros((4, 17, 3))
    points[:, :, 0] = np.array([10.0, 20.0, 40.0, 1000.0])[:, None]  # x per frame; frame 3 is two frames away
    points[:, :, 1] = 5.0
    points[:, :, 2] = np.array([0.8, 0.4, 0.2, 1.0])[:, None]
    smoothed = smooth_detector_keypoints(points, 1)
    # weights: 0.5 * 0.8, 1 * 0.4, 0.5 * 0.2 -> (0.4 * 10 + 0.4 * 20 + 0.1 * 40) / 0.9
    np.testing.assert_allclose(smoothed[:, 0], (4 + 8 + 4) / 0.9, rtol=1e-6)
    np.testing.assert_allclose(smoothed[:, 1], 5.0)
    np.testing.assert_allclose(smoothed[:, 2], 0.4, rtol=1e-6)  # the frame's own confidence
    points[:, :, 2] = 0.0  # nobody is sure: the frame's own keypoints stay
    np.testing.assert_allclose(smooth_detector_keypoints(points, 1)[:, 0], 20.0)
    np.testing.assert_allclose(smooth_detector_keypoints(points[:1], 0)[:, 0], 10.0)  # a single frame


def test_keypoint_source_detector_uses_the_detector_where_it_can_and_the_model_elsewhere():
    backend = RecordingFusionBackend()
    estimator = PoseEstimator(backend, mode="centre", keypoint_source="detector")
    region = SquareRegion(0, 0, 100)
    rng = np.random.default_rng(2)
    frames = [np.concatenate([rng.uniform(0, 100, (17, 2)), rng.uniform(0.5, 1, (17, 1))], -1).astype(np.float32)
              for _ in range(5)]
    estimates = []
    for frame, points in enumerate(frames):
        with_points = PersonObservation(1, region.box, 0.9, region, np.zeros((16, 16, 3), np.uint8), frame, points)
        without = PersonObservation(2, region.box, 0.9, region, np.zeros((16, 16, 3), np.uint8), frame, None)
        estimates += estimator.process([with_points, without])
    by_track = {e.track_id: e for e in estimates if e.stamp == 2}
    from exlow_pose_ros.core.pose_estimator import smooth_detector_keypoints

    expected = smooth_detector_keypoints(np.stack(frames[1:4]), 1)
    np.testing.assert_allclose(by_track[1].keypoints, expected[:, :2], atol=1e-4)
    np.testing.assert_allclose(by_track[1].confidence, frames[2][:, 2])
    # The person without detector keypoints went through the model (the recording backend saw only it).
    assert all(fed.shape[0] == 1 for fed in backend.fed) and 2 in by_track
    with pytest.raises(ValueError, match="keypoint_source"):
        PoseEstimator(backend, keypoint_source="teacher")


def test_keypoint_calibration_recovers_a_known_miscalibration_and_round_trips(tmp_path):
    from exlow_pose_ros.core.keypoint_calibration import CalibrationError, KeypointCalibration, logit
    from exlow_pose_training.calibrate import fit_calibration

    rng = np.random.default_rng(0)
    joint = rng.integers(0, 17, 60_000)
    confidence = rng.uniform(0.02, 0.98, joint.shape)
    truth = 1 / (1 + np.exp(-(0.5 * logit(confidence) + 0.3)))  # an overconfident detector
    correct = rng.random(joint.shape) < truth
    calibration = fit_calibration(confidence, correct, joint, {"data": "test"})
    np.testing.assert_allclose(calibration.slope, 0.5, atol=0.1)
    np.testing.assert_allclose(calibration.intercept, 0.3, atol=0.15)
    grid = np.tile(np.linspace(0.05, 0.95, 19)[:, None], (1, 17))
    np.testing.assert_allclose(calibration(grid), 1 / (1 + np.exp(-(0.5 * logit(grid) + 0.3))), atol=0.05)
    assert (calibration(np.zeros(17)) == 0).all(), "no keypoint stays at confidence 0"
    calibration.save(tmp_path / "c.json")
    loaded = KeypointCalibration.load(tmp_path / "c.json")
    np.testing.assert_allclose(loaded.slope, calibration.slope)
    assert loaded.provenance["data"] == "test"
    (tmp_path / "bad.json").write_text('{"kind": "exlow_pose.keypoint_calibration", "slope": [1], "intercept": [0]}')
    with pytest.raises(CalibrationError, match="malformed"):
        KeypointCalibration.load(tmp_path / "bad.json")
    with pytest.raises(CalibrationError, match="not found"):
        KeypointCalibration.load(tmp_path / "absent.json")


def assert_term_round_trips(calibration, term: str, tmp_path) -> None:
    """The term's weights survive save and load; a file written before the term had it loads with the term off."""
    from exlow_pose_ros.core.keypoint_calibration import KeypointCalibration

    calibration.save(tmp_path / "c.json")
    np.testing.assert_allclose(getattr(KeypointCalibration.load(tmp_path / "c.json"), term), getattr(calibration, term))
    old = json.loads((tmp_path / "c.json").read_text())
    del old[term]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert (getattr(KeypointCalibration.load(tmp_path / "old.json"), term) == 0).all()


def test_keypoint_calibration_learns_that_smaller_people_are_less_reliable(tmp_path):

    from exlow_pose_ros.core.keypoint_calibration import logit, size_feature
    from exlow_pose_training.calibrate import fit_calibration

    rng = np.random.default_rng(1)
    joint = rng.integers(0, 17, 80_000)
    confidence = rng.uniform(0.05, 0.95, joint.shape)
    height = rng.uniform(10, 60, joint.shape)  # px
    truth = 1 / (1 + np.exp(-(logit(confidence) + 0.8 * size_feature(height))))  # same confidence, less when small
    correct = rng.random(joint.shape) < truth
    calibration = fit_calibration(confidence, correct, joint, {"data": "test"}, box_height=height)
    np.testing.assert_allclose(calibration.size_slope, 0.8, atol=0.15)
    same = np.full((2, 17), 0.7)
    small, large = calibration(same, np.array([12.0, 48.0]))
    assert (small < large - 0.1).all()
    np.testing.assert_allclose(calibration(same[0], None), calibration(same[0], 24.0), atol=1e-6)  # the reference
    assert_term_round_trips(calibration, "size_slope", tmp_path)


def test_keypoint_calibration_learns_that_a_clearly_seen_persons_joints_are_more_reliable(tmp_path):

    from exlow_pose_ros.core.keypoint_calibration import logit, person_feature
    from exlow_pose_training.calibrate import fit_calibration

    rng = np.random.default_rng(2)
    # Persons whose 17 confidences share a per-person level, so the person's mean says something of its own.
    level = rng.uniform(0.15, 0.85, 5_000)
    confidence = np.clip(level[:, None] + rng.normal(0, 0.12, (5_000, 17)), 0.03, 0.97)
    context = person_feature(confidence)  # (persons,)
    truth = 1 / (1 + np.exp(-(logit(confidence) + 0.6 * context[:, None] - 0.2)))
    correct = rng.random(confidence.shape) < truth
    joint = np.broadcast_to(np.arange(17), confidence.shape)
    person = np.broadcast_to(context[:, None], confidence.shape)
    calibration = fit_calibration(confidence.ravel(), correct.ravel(), joint.ravel(), {"data": "test"},
                                  person=person.ravel())
    np.testing.assert_allclose(calibration.person_slope, 0.6, atol=0.2)
    np.testing.assert_allclose(calibration.slope, 1.0, atol=0.2)
    # The same joint confidence: worth more on a person seen clearly than on one barely seen.
    clear, faint = np.full(17, 0.9), np.full(17, 0.2)
    clear[0] = faint[0] = 0.5
    assert calibration(clear)[0] > calibration(faint)[0] + 0.1
    assert_term_round_trips(calibration, "person_slope", tmp_path)


def test_calibrate_cli_fits_the_chosen_terms_and_cross_validates_by_scene(tmp_path, capsys):
    from exlow_pose_ros.core.keypoint_calibration import KeypointCalibration
    from exlow_pose_training.calibrate import main as calibrate

    data = write_tiny_dataset(tmp_path / "tiny", "tiny", tracks_per_split=6, detector_noise=0.15,
                              train_scenes=("north", "south"))
    out = tmp_path / "calibration.json"
    assert calibrate(["--data", f"{data}:train", "--terms", "person", "--cross-validate", "--out", str(out)]) == 0
    written = KeypointCalibration.load(out)
    assert written.provenance["terms"] == ["confidence", "person"]
    assert (written.size_slope == 0).all() and (written.person_slope != 0).any()
    validation = written.provenance["leave_one_scene_out_ece"]
    assert set(validation) == {"confidence", "confidence+size", "confidence+person", "confidence+size+person"}
    assert all(set(row) == {"north", "south", "mean"} and 0 <= row["mean"] <= 1 for row in validation.values())
    printed = capsys.readouterr().out
    import re

    before, after = (float(v) for v in re.search(r"ECE on \S+ ([0-9.]+) -> ([0-9.]+) over", printed).groups())
    assert after < before  # the raw confidences of the noisy detector are not probabilities; the fit is closer
    assert calibrate(["--data", f"{data}:test", "--out", str(tmp_path / "x.json")]) == 2  # never unseen scenes


def test_keypoint_calibration_fit_converges_where_the_confidences_saturate():
    # The eyes of YOLO11n-pose: confidence ~1 whatever the person's size, right only on larger persons. The logit
    # column is then nearly the intercept's; a fit that diverges there (Newton steps did: intercepts of +-700)
    # gives probabilities that flip from one training set to the next.
    from exlow_pose_ros.core.keypoint_calibration import size_feature
    from exlow_pose_training.calibrate import fit_calibration

    rng = np.random.default_rng(3)
    joint = np.zeros(20_000, int)
    confidence = rng.uniform(0.9999, 1.0, joint.shape)
    height = rng.uniform(10, 60, joint.shape)
    truth = 1 / (1 + np.exp(-(1.5 * size_feature(height) + 0.2)))
    correct = rng.random(joint.shape) < truth
    calibration = fit_calibration(confidence, correct, joint, {"data": "test"}, box_height=height)
    assert abs(calibration.intercept[0]) < 50 and abs(calibration.size_slope[0]) < 10
    for px in (12.0, 24.0, 48.0):
        got = calibration(np.full((1, 17), 0.99995), np.array([px]))[0, 0]
        want = 1 / (1 + np.exp(-(1.5 * size_feature(px) + 0.2)))
        assert abs(got - want) < 0.05, (px, got, want)
