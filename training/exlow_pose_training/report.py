"""`exlow-pose-report`: accuracy on scenes the models never saw, beside what a user could run instead.

Data: `exlow-pose-data scenes` (training/configs/scenes.yaml). Every table is per unseen scene, with the mean
over unseen scenes as the headline, and always shows the constant mean pose of the training set and the
detector's own keypoints.

1. Pure crops (the paper's setting): 16x16 crops cut from the full-resolution frame around the teacher's box;
   IFE, FDAE, OKS mAP (ranked by the model's confidence where it has one) and OKS accuracy per scene.
2. Tiny people, end to end: each clip shrunk so its median person is H = 12, 16, 24, 32 px. On the same
   frames the product's detector (YOLO11n-pose, the tracker node's settings) runs once; "YOLO11n-pose alone"
   is its keypoints for every person it found; the product rows are on the persons its tracker reported:
   the pose node's default (the detector's keypoints smoothed over neighbouring frames) and each model
   (5-frame windows along each track run, edge padded, centre output, as the pose node does). Per scene and
   H: recall, OKS accuracy (misses count 0), and on person-frames both found: mean OKS, joint error (per
   person height) and the share where we win.
3. Confidence: reliability of the per-joint confidence (event: per-keypoint OKS >= 0.5) on unseen scenes, ECE.
4. An independent reference: part 2's scoring of YOLO11n-pose alone, the product default and the constant pose
   (every row in report.json) against BlazePose (exlow-pose-data blazepose: mediapipe on the full-resolution
   person boxes) instead of the teacher, on the person-frames where BlazePose found the person, beside the same
   rows against the teacher; and how far the two references agree (the teacher's OKS against BlazePose).

Labels are the teacher (YOLO11n-pose on the full-resolution frame), scaled down; that flatters YOLO, hence 4.
Writes report.json, report.md (the README's tables), and PNGs: accuracy by height, reliability, and a sheet of
annotated tiny people from every unseen scene.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from exlow_pose_ros.core.assets import SHIPPED_CALIBRATION, shipped_file
from exlow_pose_ros.core.keypoint_calibration import KeypointCalibration
from exlow_pose_ros.core.keypoints import COCO17_FLIP_PERMUTATION, COCO17_SIGMAS
from exlow_pose_ros.core.metrics import (
    evaluate_poses,
    masked_mean_distance,
    object_keypoint_similarity,
    oks_accuracy,
)
from exlow_pose_ros.core.model_contract import crops_to_input
from exlow_pose_ros.core.pose_estimator import smooth_detector_keypoints
from exlow_pose_ros.core.windows import HALF_WINDOW, sequence_windows

from . import blazepose_reference as bp
from .dataset_format import WINDOW_LENGTH, ExLowDataset, SplitData, person_area, scene_of_rows
from .evaluate import window_rows

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "results" / "datasets"
DEFAULT_CALIBRATION = shipped_file(SHIPPED_CALIBRATION)
CONSTANT = "Constant mean pose"
YOLO = "YOLO11n-pose alone"
SMOOTHED = "Product default: detector keypoints, smoothed"
DETECTOR_ALONE = "Product detector alone (unsmoothed)"  # a row when --yolo-scenes gives stock YOLO separately
TARGETS = {"pure_crop_ife_ratio": 0.7, "pure_crop_pooled_ife": 0.12, "pure_crop_map": 50.0,
           "oks_ratio_small": 1.5, "small_heights": (12.0, 16.0), "large_heights": (24.0, 32.0), "ece": 0.05}
CORRECT_OKS = 0.5  # the event the per-joint confidence predicts
Estimator = Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class Method:
    name: str
    estimate: Estimator          # crops (N,5,3,16,16), detector (N,5,17,3) or None -> poses, confidence
    takes_detector: bool
    gives_confidence: bool


def load_method(name: str, path: Path, threads: int = 0) -> Method:
    from exlow_pose_ros.core.backends import create_backend

    backend = create_backend("onnxruntime" if path.suffix == ".onnx" else "torch", path, threads=threads)
    return Method(name, backend.estimate, backend.takes_detector, backend.gives_confidence)


def crop_only(method: Method) -> Method:
    """The same model with no detector keypoints (as behind a tracker that has none)."""
    return Method(f"{method.name}, crops only", lambda crops, _: method.estimate(crops, None), False,
                  method.gives_confidence)


def constant_pose(train: SplitData) -> np.ndarray:
    """The training set's mean pose (17, 2) in crop coordinates, per joint over its labelled frames."""
    mask = train.arrays["mask"].astype(float)
    return ((train.arrays["keypoints"] * mask[..., None]).sum(0) / np.maximum(mask.sum(0), 1)[:, None]).astype(
        np.float32)


# --- 1. pure crops ----------------------------------------------------------------------------------------------

def estimate_split(method: Method, split: SplitData, windows: np.ndarray, batch: int = 512
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    poses, confidences = [], []
    for start in range(0, len(windows), batch):
        rows = window_rows(split, windows[start:start + batch])
        detector = split.arrays["detector"][rows] if method.takes_detector and "detector" in split.arrays else None
        pose, confidence = method.estimate(crops_to_input(split.arrays["crops"][rows]), detector)
        poses.append(pose)
        if confidence is not None:
            confidences.append(confidence)
    return (np.concatenate(poses) if poses else np.zeros((0, WINDOW_LENGTH, 17, 2), np.float32),
            np.concatenate(confidences) if confidences else None)


def pure_crop_table(methods: list[Method], constant: np.ndarray, dataset: ExLowDataset, split: SplitData
                    ) -> dict[str, dict[str, dict]]:
    """method -> scene (and 'mean over scenes', 'pooled') -> IFE, FDAE, mAP, OKS accuracy."""
    scene_rows = scene_of_rows(dataset, split)
    window_scene = scene_rows[split.windows + HALF_WINDOW]
    scenes = list(dict.fromkeys(window_scene.tolist()))
    all_rows = window_rows(split, np.arange(len(split)))
    target, mask = split.arrays["keypoints"][all_rows], split.arrays["mask"][all_rows]
    area = person_area(split.arrays)[all_rows]
    results = {}
    for method in [None, *methods]:
        name = CONSTANT if method is None else method.name
        if method is None:
            poses, confidence = np.broadcast_to(constant, target.shape).copy(), None
        else:
            poses, confidence = estimate_split(method, split, np.arange(len(split)))
        scores = None if confidence is None else confidence.mean(axis=-1)
        per_scene = {}
        for scene in scenes:
            chosen = window_scene == scene
            per_scene[scene] = evaluate_poses(poses[chosen], target[chosen], mask[chosen], area[chosen],
                                              None if scores is None else scores[chosen])
        per_scene["mean over scenes"] = {k: float(np.mean([per_scene[s][k] for s in scenes]))
                                         for k in ("ife", "fdae", "map", "oks_accuracy")}
        per_scene["pooled"] = evaluate_poses(poses, target, mask, area, scores)
        results[name] = per_scene
    return results


# --- 2. tiny people, end to end ---------------------------------------------------------------------------------

def track_runs(split: SplitData, keep: np.ndarray) -> list[np.ndarray]:
    """Row indices of each run of consecutive frames of one track (and one height) where `keep` holds."""
    track, frame = split.arrays["track"], split.arrays["frame"]
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero((np.diff(track[rows]) != 0) | (np.diff(frame[rows]) != 1)) + 1
    return np.split(rows, breaks)


def estimate_runs(method: Method, split: SplitData, runs: list[np.ndarray], batch: int = 512
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row pose (R, 17, 2) and confidence (R, 17; NaN without) from edge-padded centre windows of each run,
    exactly as the pose node builds them; rows outside the runs stay NaN."""
    count = len(split.arrays["frame"])
    poses = np.full((count, 17, 2), np.nan, np.float32)
    confidence = np.full((count, 17), np.nan, np.float32)
    windows = np.concatenate([run[sequence_windows(len(run), "centre")] for run in runs]) if runs else \
        np.zeros((0, WINDOW_LENGTH), int)
    described = np.concatenate(runs) if runs else np.zeros(0, int)
    for start in tqdm(range(0, len(windows), batch), desc=method.name, unit="batch", leave=False):
        rows = windows[start:start + batch]
        detector = split.arrays["detector"][rows] if method.takes_detector else None
        pose, conf = method.estimate(crops_to_input(split.arrays["crops"][rows]), detector)
        poses[described[start:start + batch]] = pose[:, HALF_WINDOW]
        if conf is not None:
            confidence[described[start:start + batch]] = conf[:, HALF_WINDOW]
    return poses, confidence


def crop_to_pixels(points: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Crop coordinates (N, K, 2) over each row's square region (N, 3: x0, y0, side) -> pixels."""
    regions = regions.astype(np.float64)
    return (points + 1) * regions[:, None, 2:3] / 2 + regions[:, None, :2]


def pixels_to_crop(points: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Pixels (N, K, 2) -> crop coordinates over each row's square region (N, 3)."""
    regions = regions.astype(np.float64)
    return 2 * (points - regions[:, None, :2]) / regions[:, None, 2:3] - 1


def smoothed_detector_runs(split: SplitData, runs: list[np.ndarray],
                           calibration: KeypointCalibration | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pose node's keypoint_source "detector" on each tracked run: the detector's keypoints smoothed in pixels
    over neighbouring frames (exlow_pose_ros.core.pose_estimator.smooth_detector_keypoints), in crop coordinates,
    with the detector's confidence through `calibration` when given."""
    count = len(split.arrays["frame"])
    poses = np.full((count, 17, 2), np.nan, np.float32)
    confidence = np.full((count, 17), np.nan, np.float32)
    region = split.arrays["region"].astype(np.float64)
    detector = split.arrays["detector"]
    box_height = split.arrays["box"][:, 3] - split.arrays["box"][:, 1]  # the detector's box, as the node sees it
    for run in runs:
        pixels = np.concatenate([crop_to_pixels(detector[run, :, :2], region[run]), detector[run, :, 2:]], axis=-1)
        for position, row in enumerate(run):
            smoothed = smooth_detector_keypoints(pixels, position)
            poses[row] = pixels_to_crop(smoothed[None, :, :2], region[row:row + 1])[0]
            confidence[row] = smoothed[:, 2] if calibration is None else \
                calibration(smoothed[:, 2], box_height[row])
    return poses, confidence


def person_oks(poses: np.ndarray, split: SplitData) -> np.ndarray:
    """OKS of each row's pose against its label (NaN where no pose or no labelled joint)."""
    oks = object_keypoint_similarity(np.nan_to_num(poses), split.arrays["keypoints"], split.arrays["mask"],
                                     person_area(split.arrays))
    return np.where(np.isnan(poses).any(axis=(1, 2)), np.nan, oks)


def joint_error_per_height(poses: np.ndarray, split: SplitData) -> np.ndarray:
    """Mean joint distance over labelled joints, as a fraction of the labelled person's height."""
    side = split.arrays["region"][:, 2].astype(float)
    label_height = split.arrays["label_box"][:, 3] - split.arrays["label_box"][:, 1]
    crop_units = masked_mean_distance(np.nan_to_num(poses), split.arrays["keypoints"], split.arrays["mask"])
    return crop_units * side / 2 / np.maximum(label_height, 1e-6)


def detector_alone(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detector's own keypoints and confidences for every labelled person it found (NaN elsewhere)."""
    found = arrays["found"] & arrays["mask"].any(axis=1)
    return (np.where(found[:, None, None], arrays["detector"][..., :2], np.nan),
            np.where(found[:, None], arrays["detector"][..., 2], np.nan), found)


def paired_rows(split: SplitData, other: SplitData) -> dict[str, np.ndarray] | None:
    """`other`'s arrays in `split`'s row order, when both label the same person-frames (two builds of one
    `exlow-pose-data scenes` recipe with different product detectors); else None. A person-frame is its
    source, height, frame and label box: the teacher is deterministic, and builds made from one teacher cache
    (--teacher-from) list a frame's persons in another order than the build that made the cache. The detector
    keypoints come moved into `split`'s crop regions, so they score against `split`'s labels."""
    def keys(arrays: dict[str, np.ndarray]) -> list[tuple]:
        return [(int(s), float(h), int(f), *b.tolist()) for s, h, f, b in
                zip(arrays["source"], arrays["height"], arrays["frame"], arrays["label_box"], strict=True)]

    fields = ("source", "height", "frame", "label_box")
    if len(split.arrays["frame"]) == len(other.arrays["frame"]) and \
            all(np.array_equal(split.arrays[f], other.arrays[f]) for f in fields):
        order = np.arange(len(split.arrays["frame"]))  # the same rows in the same order
    else:
        position = {key: row for row, key in enumerate(keys(other.arrays))}
        found = [position.get(key) for key in keys(split.arrays)]
        if len(position) != len(found) or None in found:
            return None
        order = np.asarray(found)
    arrays = {name: values[order] for name, values in other.arrays.items()}
    if not np.array_equal(arrays["mask"], split.arrays["mask"]):
        return None
    # Crop coordinates are relative to each build's crop region, which follows its own detector's box.
    detector = arrays["detector"].copy()
    detector[..., :2] = pixels_to_crop(crop_to_pixels(detector[..., :2], arrays["region"]), split.arrays["region"])
    return {**arrays, "detector": detector, "region": split.arrays["region"], "keypoints": split.arrays["keypoints"]}


def tiny_table(methods: list[Method], constant: np.ndarray, dataset: ExLowDataset, split: SplitData,
               calibration: KeypointCalibration | None = None, yolo_rows: dict[str, np.ndarray] | None = None
               ) -> tuple[dict, dict]:
    """method -> 'scene|H' -> metrics; and the per-row outputs kept for the confidence and picture parts.
    `yolo_rows`: the same person-frames (paired_rows) seen by stock YOLO11n-pose, when `split` was built with
    another product detector (a fine-tuned one); they are then the YOLO row, and `split`'s its own row."""
    scene_rows = scene_of_rows(dataset, split)
    labelled = split.arrays["mask"].any(axis=1)
    tracked = split.arrays["tracked"] & labelled
    outputs = {YOLO: detector_alone(split.arrays if yolo_rows is None else yolo_rows)}
    if yolo_rows is not None:
        outputs[DETECTOR_ALONE] = detector_alone(split.arrays)
    runs = track_runs(split, tracked)
    constant_pose_rows = np.where(tracked[:, None, None], constant[None], np.nan)
    outputs[f"{CONSTANT} (on tracked persons)"] = (constant_pose_rows, np.full((len(tracked), 17), np.nan), tracked)
    outputs[SMOOTHED] = (*smoothed_detector_runs(split, runs, calibration), tracked)
    for method in methods:
        pose, confidence = estimate_runs(method, split, runs)
        outputs[method.name] = (pose, confidence, tracked)
    return score_tiny(outputs, split, scene_rows), outputs


def accuracy_misses_zero(oks: np.ndarray, present: np.ndarray, chosen: np.ndarray) -> float:
    """OKS accuracy % of the `chosen` person-frames, those without a pose (not `present`, or NaN) counting 0."""
    return oks_accuracy(np.where(present[chosen], np.nan_to_num(oks[chosen]), 0.0))


def score_tiny(outputs: dict, split: SplitData, scene_rows: np.ndarray) -> dict:
    """method -> 'scene|H' -> metrics of each output against the labels of `split`: the teacher's, or another
    reference's on the same rows (blazepose_reference.tiny_reference_split); rows without a labelled joint
    do not count. "Both found" compares with YOLO11n-pose alone (outputs[YOLO])."""
    labelled = split.arrays["mask"].any(axis=1)
    yolo_pose, _, found = outputs[YOLO]
    yolo_oks = person_oks(yolo_pose, split)
    groups = {f"{scene}|{height:g}": (scene_rows == scene) & (split.arrays["height"] == height) & labelled
              for scene in dict.fromkeys(scene_rows.tolist()) for height in np.unique(split.arrays["height"])}
    table: dict[str, dict] = {}
    for name, (pose, _, present) in outputs.items():
        oks = person_oks(pose, split)
        error = joint_error_per_height(pose, split)
        yolo_error = joint_error_per_height(yolo_pose, split)
        rows = {}
        for key, chosen in groups.items():
            if not chosen.any():
                continue
            both = chosen & present & found & ~np.isnan(oks) & ~np.isnan(yolo_oks)
            rows[key] = {
                "persons": int(chosen.sum()), "recall": 100.0 * float(present[chosen].mean()),
                "oks_accuracy": accuracy_misses_zero(oks, present, chosen),
                "both_found": int(both.sum()),
                "mean_oks_both": float(np.nanmean(oks[both])) if both.any() else float("nan"),
                "yolo_mean_oks_both": float(np.nanmean(yolo_oks[both])) if both.any() else float("nan"),
                "joint_error_both": float(np.nanmean(error[both])) if both.any() else float("nan"),
                "yolo_joint_error_both": float(np.nanmean(yolo_error[both])) if both.any() else float("nan"),
                "win_share_both": 100.0 * float((oks[both] > yolo_oks[both]).mean()) if both.any() else float("nan"),
            }
        heights = sorted({float(k.split("|")[1]) for k in rows})
        for height in heights:  # the headline: mean over unseen scenes at each height
            keys = [k for k in rows if float(k.split("|")[1]) == height]
            rows[f"mean over scenes|{height:g}"] = {m: float(np.nanmean([rows[k][m] for k in keys]))
                                                    for m in rows[keys[0]] if m not in ("persons", "both_found")}
        table[name] = rows
    return table


SWAP_MARGIN = 0.05  # OKS by which the left-right swapped pose must beat the pose to count as a swap


def left_right_swaps(outputs: dict, split: SplitData, scene_rows: np.ndarray, names: tuple[str, ...]) -> dict:
    """name -> height -> mean over scenes of: the share % of found, labelled person-frames whose pose matches
    the label better with left and right swapped (OKS + SWAP_MARGIN), and the OKS accuracy if every person's
    pose took the better of itself and its swap. Why: at 12-16 px the detector often gives a person's left
    side for the right (facing the camera or away); this measures how often, and what undoing it would be worth
    at most (an oracle: no method knows which poses to swap)."""
    labelled = split.arrays["mask"].any(axis=1)
    heights = np.unique(split.arrays["height"])
    table: dict[str, dict] = {}
    for name in names:
        if name not in outputs:
            continue
        pose, _, present = outputs[name]
        oks = person_oks(pose, split)
        swapped = person_oks(pose[:, list(COCO17_FLIP_PERMUTATION)], split)
        best = np.fmax(oks, swapped)
        rows = {}
        for height in heights:
            cells = []
            for scene in dict.fromkeys(scene_rows.tolist()):
                chosen = (scene_rows == scene) & (split.arrays["height"] == height) & labelled
                found = chosen & present & ~np.isnan(oks)
                if not found.any():
                    continue
                cells.append((100.0 * float((swapped[found] > oks[found] + SWAP_MARGIN).mean()),
                              accuracy_misses_zero(oks, present, chosen),
                              accuracy_misses_zero(best, present, chosen)))
            if cells:
                share, accuracy, undone = np.mean(cells, axis=0)
                rows[f"{height:g}"] = {"swapped_share": float(share), "oks_accuracy": float(accuracy),
                                       "oks_accuracy_swaps_undone": float(undone)}
        table[name] = rows
    return table


def swaps_markdown(swaps: dict, scope: str) -> list[str]:
    if not swaps:
        return []
    heights = list(dict.fromkeys(h for rows in swaps.values() for h in rows))
    lines = ["", f"**Left and right swapped, mean over {scope} scenes: share % of found person-frames whose pose "
             f"matches the label better with left and right swapped (OKS +{SWAP_MARGIN}); OKS accuracy % as it "
             "is / with every swap undone (an oracle bound)**", "",
             "| method | " + " | ".join(f"H = {h} px" for h in heights) + " |", "|---|" + "---|" * len(heights)]
    for name, rows in swaps.items():
        cells = [f"{rows[h]['swapped_share']:.0f} % ; {rows[h]['oks_accuracy']:.1f} / "
                 f"{rows[h]['oks_accuracy_swaps_undone']:.1f}" if h in rows else "-" for h in heights]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# --- 3. confidence ----------------------------------------------------------------------------------------------

def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error and the reliability curve (equal-width bins) of per-joint confidences."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, bins - 1)
    curve, ece = [], 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            gap = abs(confidence[chosen].mean() - correct[chosen].mean())
            ece += chosen.mean() * gap
            curve.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": int(chosen.sum()),
                          "confidence": float(confidence[chosen].mean()), "accuracy": float(correct[chosen].mean())})
    return {"ece": float(ece), "curve": curve, "joints": len(confidence)}


def keypoints_correct(pose: np.ndarray, split: SplitData) -> np.ndarray:
    """(R, 17) bool: per-keypoint OKS >= 0.5 against the label, the event every confidence here predicts."""
    variances = (2 * COCO17_SIGMAS) ** 2
    squared = ((np.nan_to_num(pose) - split.arrays["keypoints"]) ** 2).sum(-1)
    return np.exp(-squared / (2 * person_area(split.arrays)[:, None] * variances)) >= CORRECT_OKS


def confidence_table(outputs: dict, split: SplitData) -> dict[str, dict]:
    results = {}
    for name, (pose, confidence, present) in outputs.items():
        if np.isnan(confidence).all():
            continue
        correct = keypoints_correct(pose, split)
        chosen = present[:, None] & split.arrays["mask"] & ~np.isnan(confidence)
        results[name] = reliability(confidence[chosen], correct[chosen])
    return results


# --- 4. an independent reference -------------------------------------------------------------------------------

REFERENCE_ROWS = (YOLO, SMOOTHED, f"{CONSTANT} (on tracked persons)")  # the rows the markdown shows


def blazepose_section(teacher: ExLowDataset, tiny_data: ExLowDataset, tiny_split: SplitData, outputs: dict,
                      path: Path, person_visibility: float) -> dict:
    """Part 2's scoring of every output against BlazePose's labels (scaled down as the teacher's are), and
    against the teacher on the same person-frames (so a change is the reference's, not the subset's)."""
    teacher_split = teacher.split("test")
    reference = bp.load_reference(path, teacher_split, person_visibility)
    match, scale = bp.match_tiny_rows(tiny_split, tiny_data.manifest["sources"], teacher_split,
                                      teacher.manifest["sources"])
    # The mapping must turn the teacher's own full-resolution keypoints into the tiny dataset's labels.
    through = bp.tiny_reference_split(tiny_split, match, scale, bp.teacher_pixels(teacher_split),
                                      teacher_split.arrays["mask"])
    labelled = tiny_split.arrays["mask"] & (match >= 0)[:, None]
    mapping_error = float(np.abs(through.arrays["keypoints"] - tiny_split.arrays["keypoints"])[labelled].max()) \
        if labelled.any() else float("nan")
    if mapping_error > 1e-3:  # crop units: float32 round-off is ~1e-7
        raise RuntimeError(f"the teacher's labels do not map onto the tiny dataset's (error {mapping_error:.3g}): "
                           "were teacher/ and tiny/ built by one exlow-pose-data scenes run?")
    blazepose = bp.tiny_reference_split(tiny_split, match, scale, reference.keypoints, reference.mask)
    same_rows = SplitData({**tiny_split.arrays, "mask": tiny_split.arrays["mask"]
                           & blazepose.arrays["mask"].any(axis=1)[:, None]})
    scene_rows = scene_of_rows(tiny_data, tiny_split)
    return {
        "reference": {**reference.meta, "file": str(path)},
        "tiny_rows_matched": int((match >= 0).sum()), "tiny_rows": len(match),
        "tiny_rows_scored": int(blazepose.arrays["mask"].any(axis=1).sum()),
        "mapping_max_error_crop_units": mapping_error,
        "tiny": score_tiny(outputs, blazepose, scene_rows),
        "tiny_teacher_same_rows": score_tiny(outputs, same_rows, scene_rows),
        "agreement": bp.agreement(reference, teacher_split, scene_of_rows(teacher, teacher_split)),
    }


def blazepose_markdown(section: dict | None, hint: str, product: str) -> list[str]:
    if section is None:
        return ["", "**Against an independent reference (BlazePose)**: no BlazePose labels for these scenes; make "
                f"them with `{hint}` and rerun the report."]
    meta = section["reference"]
    tiny, teacher = section["tiny"], section["tiny_teacher_same_rows"]
    names = [n for n in (*REFERENCE_ROWS, product) if n in tiny]
    names = list(dict.fromkeys(names))
    keys = [k for k in tiny[YOLO] if k.startswith("mean over scenes")]
    heights = [k.split("|")[1] for k in keys]
    lines = ["", f"**Against an independent reference: BlazePose (mediapipe {meta['mediapipe']}, pose_landmark_full) "
             "on the full-resolution person boxes.** BlazePose found "
             f"{meta['found']} of {meta['labelled']} person-frames ({meta['sampling']}; found = mean COCO-17 "
             f"visibility >= {meta['person_visibility']}, joints >= {meta['joint_visibility']}, centred in the "
             f"teacher's box); {section['tiny_rows_scored']} of {section['tiny_rows']} tiny person-frames scored. "
             "OKS accuracy % against BlazePose / against the teacher on the same person-frames, mean over unseen "
             "scenes:", "",
             "| method | " + " | ".join(f"H = {h} px" for h in heights) + " |", "|---|" + "---|" * len(keys)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{tiny[name][k]['oks_accuracy']:.1f} / "
                                                  f"{teacher[name][k]['oks_accuracy']:.1f}" for k in keys) + " |")
    if product in tiny and product != YOLO:
        lines += ["", f"**{product} against YOLO11n-pose alone on person-frames both found, BlazePose reference "
                  "(teacher on the same person-frames in brackets): mean OKS ours / YOLO, share we win**", "",
                  "| H | mean OKS | we win |", "|---|---|---|"]
        for key, height in zip(keys, heights, strict=True):
            row, control = tiny[product][key], teacher[product][key]
            lines.append(f"| {height} px | {row['mean_oks_both']:.3f} / {row['yolo_mean_oks_both']:.3f} "
                         f"({control['mean_oks_both']:.3f} / {control['yolo_mean_oks_both']:.3f}) | "
                         f"{row['win_share_both']:.0f} % ({control['win_share_both']:.0f} %) |")
        scenes = sorted({k.split("|")[0] for k in tiny[product] if not k.startswith("mean")})
        lines += ["", f"**Per unseen scene, BlazePose reference: OKS accuracy % of {product} / YOLO11n-pose alone**",
                  "", "| scene | " + " | ".join(f"H = {h}" for h in heights) + " |", "|---|" + "---|" * len(heights)]
        for scene in scenes:
            cells = [f"{tiny[product][f'{scene}|{h}']['oks_accuracy']:.1f} / "
                     f"{tiny[YOLO][f'{scene}|{h}']['oks_accuracy']:.1f}" if f"{scene}|{h}" in tiny[product] else "-"
                     for h in heights]
            lines.append(f"| {scene} | " + " | ".join(cells) + " |")
    agree = section["agreement"]
    lines += ["", "**How far the references differ: the teacher's keypoints against BlazePose at full resolution "
              "(joints both label)**", "", "| scene | person-frames | BlazePose found % | mean OKS | OKS accuracy % |",
              "|---|---|---|---|---|"]
    for scene, row in agree.items():
        persons = row.get("persons", "")
        lines.append(f"| {scene} | {persons} | {row['found_share']:.1f} | {row['mean_oks']:.3f} | "
                     f"{row['oks_accuracy']:.1f} |")
    return lines


# --- output -----------------------------------------------------------------------------------------------------

def print_pure_crop(console: Console, results: dict, title: str) -> None:
    scenes = list(next(iter(results.values())))
    for metric, label in (("ife", "IFE (lower is better)"), ("map", "OKS mAP % (higher is better)")):
        table = Table(title=f"{title}: {label}")
        table.add_column("method")
        for scene in scenes:
            table.add_column(scene, justify="right")
        for name, per_scene in results.items():
            table.add_row(name, *[f"{per_scene[s][metric]:.3f}" if metric == "ife" else f"{per_scene[s][metric]:.1f}"
                                  for s in scenes])
        console.print(table)


def print_tiny(console: Console, table: dict, title: str) -> None:
    keys = [k for k in next(iter(table.values())) if k.startswith("mean over scenes")]
    out = Table(title=title)
    out.add_column("method")
    for key in keys:
        height = key.split("|")[1]
        out.add_column(f"H={height} recall %", justify="right")
        out.add_column(f"H={height} OKS acc %", justify="right")
    for name, rows in table.items():
        out.add_row(name, *[f"{rows[k][m]:.1f}" for k in keys for m in ("recall", "oks_accuracy")])
    console.print(out)


def markdown(pure: dict, tiny: dict, confidence: dict, checks: list[str], product: str,
             reference: list[str] | None = None, scope: str = "unseen") -> str:
    """The README's tables; `scope` names the scenes ("unseen" for the test split)."""
    lines = []
    scenes = list(next(iter(pure.values())))
    lines += [f"**Pure crops (the paper's setting), {scope} scenes: IFE (lower is better) / OKS mAP %**", "",
              "| method | " + " | ".join(scenes) + " |", "|---|" + "---|" * len(scenes)]
    for name, per_scene in pure.items():
        lines.append(f"| {name} | " + " | ".join(f"{per_scene[s]['ife']:.3f} / {per_scene[s]['map']:.1f}"
                                                  for s in scenes) + " |")
    keys = [k for k in next(iter(tiny.values())) if k.startswith("mean over scenes")]
    heights = [k.split("|")[1] for k in keys]
    lines += ["", f"**Tiny people end to end, mean over {scope} scenes: recall % / OKS accuracy %**", "",
              "| method | " + " | ".join(f"H = {h} px" for h in heights) + " |", "|---|" + "---|" * len(keys)]
    for name, rows in tiny.items():
        lines.append(f"| {name} | " + " | ".join(f"{rows[k]['recall']:.1f} / {rows[k]['oks_accuracy']:.1f}"
                                                  for k in keys) + " |")
    if product in tiny:
        rows = tiny[product]
        lines += ["", f"**{product} against YOLO11n-pose alone on person-frames both found (mean over {scope} "
                  "scenes): mean OKS ours / YOLO, joint error per person height ours / YOLO, share we win**", "",
                  "| H | mean OKS | joint error | we win |", "|---|---|---|---|"]
        for key, height in zip(keys, heights, strict=True):
            row = rows[key]
            lines.append(f"| {height} px | {row['mean_oks_both']:.3f} / {row['yolo_mean_oks_both']:.3f} | "
                         f"{row['joint_error_both']:.3f} / {row['yolo_joint_error_both']:.3f} | "
                         f"{row['win_share_both']:.0f} % |")
        scene_keys = sorted({k.split("|")[0] for k in rows if not k.startswith("mean")})
        lines += ["", f"**Per {scope} scene: OKS accuracy % of {product} / YOLO11n-pose alone**", "",
                  "| scene | " + " | ".join(f"H = {h}" for h in heights) + " |", "|---|" + "---|" * len(heights)]
        for scene in scene_keys:
            cells = []
            for height in heights:
                key = f"{scene}|{height}"
                cells.append(f"{rows[key]['oks_accuracy']:.1f} / {tiny[YOLO][key]['oks_accuracy']:.1f}"
                             if key in rows else "-")
            lines.append(f"| {scene} | " + " | ".join(cells) + " |")
    if confidence:
        lines += ["", f"**Per-joint confidence on {scope} scenes (event: per-keypoint OKS >= 0.5)**", "",
                  "| source | joints | ECE |", "|---|---|---|"]
        for name, row in confidence.items():
            lines.append(f"| {name} | {row['joints']} | {row['ece']:.3f} |")
    lines += reference or []
    lines += ["", "**Targets**", ""] + [f"- {c}" for c in checks]
    return "\n".join(lines) + "\n"


def check_targets(pure: dict, tiny: dict, confidence: dict, crop_model: str | None, product: str) -> list[str]:
    lines = []

    def verdict(ok: bool) -> str:
        return "MET " if ok else "MISS"

    if crop_model in pure:
        rows, constant = pure[crop_model], pure[CONSTANT]
        scenes = [s for s in rows if s not in ("mean over scenes", "pooled")]
        ratios = {s: rows[s]["ife"] / constant[s]["ife"] for s in scenes}
        worst = max(ratios, key=ratios.get)
        lines.append(f"{verdict(max(ratios.values()) <= TARGETS['pure_crop_ife_ratio'])} pure crops, {crop_model}: "
                     f"IFE <= 0.7x the constant pose on every scene (worst {worst}: "
                     f"{ratios[worst]:.2f}x)")
        pooled = rows["pooled"]
        lines.append(f"{verdict(pooled['ife'] <= TARGETS['pure_crop_pooled_ife'])} pure crops, {crop_model}: pooled "
                     f"IFE {pooled['ife']:.3f} (target <= {TARGETS['pure_crop_pooled_ife']})")
        lines.append(f"{verdict(pooled['map'] >= TARGETS['pure_crop_map'])} pure crops, {crop_model}: pooled mAP "
                     f"{pooled['map']:.1f} % (target >= {TARGETS['pure_crop_map']:.0f} %)")
    if product in tiny:
        ours, yolo = tiny[product], tiny[YOLO]
        for key in [k for k in ours if k.startswith("mean over scenes")]:
            height = float(key.split("|")[1])
            needed = TARGETS["oks_ratio_small"] if height in TARGETS["small_heights"] else 1.0
            ratio = ours[key]["oks_accuracy"] / max(yolo[key]["oks_accuracy"], 1e-9)
            lines.append(f"{verdict(ratio >= needed)} end to end H={height:g}: OKS accuracy "
                         f"{ours[key]['oks_accuracy']:.1f} % vs YOLO {yolo[key]['oks_accuracy']:.1f} % "
                         f"({ratio:.2f}x, target >= {needed:g}x)")
            lines.append(f"{verdict(ours[key]['recall'] >= yolo[key]['recall'])} end to end H={height:g}: recall "
                         f"{ours[key]['recall']:.1f} % vs detector {yolo[key]['recall']:.1f} %")
            lines.append(f"{verdict(ours[key]['win_share_both'] > 50)} end to end H={height:g}: we win on "
                         f"{ours[key]['win_share_both']:.0f} % of person-frames both found (target > 50 %)")
    if product in confidence:
        ece = confidence[product]["ece"]
        lines.append(f"{verdict(ece <= TARGETS['ece'])} confidence ECE {ece:.3f} (target <= {TARGETS['ece']})")
    return lines


def plot_heights(tiny: dict, path: Path, scope: str = "unseen") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in tiny.items():
        keys = [k for k in rows if k.startswith("mean over scenes")]
        heights = [float(k.split("|")[1]) for k in keys]
        axes[0].plot(heights, [rows[k]["oks_accuracy"] for k in keys], marker="o", label=name)
        axes[1].plot(heights, [rows[k]["recall"] for k in keys], marker="o", label=name)
    axes[0].set_title(f"OKS accuracy % (misses count 0), mean over {scope} scenes")
    axes[1].set_title(f"recall %, mean over {scope} scenes")
    for axis in axes:
        axis.set_xlabel("median person height H (px)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_reliability(confidence: dict, path: Path, scope: str = "unseen") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect")
    for name, row in confidence.items():
        axis.plot([c["confidence"] for c in row["curve"]], [c["accuracy"] for c in row["curve"]], marker="o",
                  label=f"{name} (ECE {row['ece']:.3f})")
    axis.set_xlabel("predicted confidence")
    axis.set_ylabel("share of joints right (per-keypoint OKS >= 0.5)")
    axis.set_title(f"Per-joint confidence, {scope} scenes")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def people_sheet(split: SplitData, dataset: ExLowDataset, outputs: dict, product: str, path: Path,
                 per_scene: int = 3, heights: tuple[float, ...] = (16.0, 24.0), seed: int = 0) -> None:
    """Annotated tiny people from every unseen scene: crop x8 with the label, YOLO alone and ours side by side."""
    import cv2

    from .contact_sheet import draw_frame

    rng = np.random.default_rng(seed)
    scene_rows = scene_of_rows(dataset, split)
    yolo_pose, ours_pose = outputs[YOLO][0], outputs[product][0]
    tiles, labels = [], []
    for scene in dict.fromkeys(scene_rows.tolist()):
        for height in heights:
            candidates = np.flatnonzero((scene_rows == scene) & (split.arrays["height"] == height)
                                        & split.arrays["tracked"] & split.arrays["mask"].any(axis=1))
            for row in rng.choice(candidates, size=min(per_scene, len(candidates)), replace=False):
                crop = split.arrays["crops"][row]
                panels = [draw_frame(crop, np.nan_to_num(pose), mask, 8)
                          for pose, mask in ((split.arrays["keypoints"][row], split.arrays["mask"][row]),
                                             (yolo_pose[row], ~np.isnan(yolo_pose[row]).any(-1)),
                                             (ours_pose[row], ~np.isnan(ours_pose[row]).any(-1)))]
                tiles.append(np.concatenate(panels, axis=1))
                labels.append(f"{scene} H={height:g}")
    if not tiles:
        return
    columns = 3
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * 150, columns * (3 * 128 + 8), 3), 255, np.uint8)
    for index, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        y, x = (index // columns) * 150, (index % columns) * (3 * 128 + 8)
        sheet[y + 20:y + 148, x:x + 3 * 128] = tile
        cv2.putText(sheet, f"{label}: label | YOLO | ours", (x + 2, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-report", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", metavar="NAME=PATH", required=True,
                        help="a model (.onnx or checkpoint); repeat. Models that take the detector's keypoints also "
                             "get a crops-only row")
    parser.add_argument("--product", default=SMOOTHED,
                        help="the row whose end-to-end and confidence targets are checked (default: the pose node's "
                             "default, %(default)r); the pure-crop targets are checked for the first --model")
    parser.add_argument("--scenes", type=Path, default=DATASETS / "scenes_test",
                        help="unseen-scene datasets (exlow-pose-data scenes --roles test)")
    parser.add_argument("--yolo-scenes", type=Path, default=None,
                        help="the same scenes built with stock YOLO11n-pose as the product detector, when --scenes "
                        "was built with another (exlow-pose-data scenes --detector): the YOLO row comes from here")
    parser.add_argument("--train", type=Path, default=DATASETS / "scenes_train",
                        help="training-scene datasets: the constant mean pose comes from their training split")
    parser.add_argument("--keypoint-calibration", default=str(DEFAULT_CALIBRATION),
                        help="the detector keypoint calibration of the product row ('none': raw confidences)")
    parser.add_argument("--blazepose", default="",
                        help="BlazePose reference labels (default: exlow-pose-data blazepose's cache for --scenes; "
                             "'none': skip part 4)")
    parser.add_argument("--blazepose-visibility", type=float, default=0.5,
                        help="mean COCO-17 visibility at which BlazePose counts as having found the person")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test",
                        help="which split of --scenes to score: test (the unseen scenes, the headline), or val / train "
                        "to choose settings on scenes that are not unseen (datasets built with --roles val or train; "
                        "BlazePose, part 4, is for test only)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "report")
    args = parser.parse_args(argv)

    methods = [load_method(*entry.split("=", 1)[:1], Path(entry.split("=", 1)[1]), args.threads)
               for entry in args.model]
    product = args.product
    with_crop_only = methods + [crop_only(m) for m in methods if m.takes_detector]
    crop_model = methods[0].name  # pure crops carry no detector keypoints: every model runs from crops alone
    constant = constant_pose(ExLowDataset(args.train / "teacher").split("train"))

    teacher = ExLowDataset(args.scenes / "teacher")
    scope = "unseen" if args.split == "test" else f"{args.split}-split (not unseen)"
    pure = pure_crop_table(methods, constant, teacher, teacher.split(args.split))  # no detector input there
    tiny_data = ExLowDataset(args.scenes / "tiny")
    tiny_split = tiny_data.split(args.split)
    if len(tiny_split.arrays["frame"]) == 0:
        raise SystemExit(f"{args.scenes} has no {args.split} split: build it with exlow-pose-data scenes --roles "
                         f"{args.split}")
    calibration = None if args.keypoint_calibration == "none" else KeypointCalibration.load(args.keypoint_calibration)
    yolo_rows = None if args.yolo_scenes is None else \
        paired_rows(tiny_split, ExLowDataset(args.yolo_scenes / "tiny").split(args.split))
    if args.yolo_scenes is not None and yolo_rows is None:
        raise SystemExit(f"--yolo-scenes {args.yolo_scenes} does not hold the same person-frames as --scenes "
                         f"{args.scenes}: build both with the same exlow-pose-data scenes options but --detector")
    tiny, outputs = tiny_table(with_crop_only, constant, tiny_data, tiny_split, calibration, yolo_rows)
    confidence = confidence_table(outputs, tiny_split)
    # Every pose row but the constant's: a learned model's swap share here against --split train shows whether it
    # learned which way people face or the training scenes' habits.
    swaps = left_right_swaps(outputs, tiny_split, scene_of_rows(tiny_data, tiny_split),
                             tuple(name for name in outputs if not name.startswith(CONSTANT)))
    checks = check_targets(pure, tiny, confidence, crop_model, product)
    hint = bp.SETUP_HINT.format(scenes=args.scenes)
    reference_path = None if args.blazepose == "none" or args.split != "test" else \
        Path(args.blazepose) if args.blazepose else bp.find_cached(args.scenes / "teacher")
    if reference_path is not None and not reference_path.is_file():
        raise SystemExit(f"--blazepose {reference_path} not found: make it with `{hint}`")
    blazepose = None if reference_path is None else \
        blazepose_section(teacher, tiny_data, tiny_split, outputs, reference_path, args.blazepose_visibility)

    console = Console(width=200)
    print_pure_crop(console, pure, f"Pure 16x16 crops of {scope} scenes")
    print_tiny(console, tiny, f"Tiny people end to end, mean over {scope} scenes")
    for name, row in confidence.items():
        console.print(f"confidence ECE {name}: {row['ece']:.3f} over {row['joints']} joints")
    for line in checks:
        console.print("  " + line)
    if blazepose is None and args.split == "test":
        console.print(f"no BlazePose reference labels (part 4): make them with `{hint}`")
    elif blazepose is not None:
        print_tiny(console, {n: r for n, r in blazepose["tiny"].items() if n in (*REFERENCE_ROWS, product)},
                   "Tiny people end to end against BlazePose, mean over unseen scenes")
        console.print("teacher against BlazePose, mean OKS: " + ", ".join(
            f"{scene} {row['mean_oks']:.3f}" for scene, row in blazepose["agreement"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    scenes = teacher.manifest["sources"]
    (args.out / "report.json").write_text(json.dumps({
        "split": args.split,
        "scenes": [{k: s.get(k) for k in ("name", "scene", "licence", "frames", "median_person_px")} for s in scenes],
        "models": {m.split("=", 1)[0]: m.split("=", 1)[1] for m in args.model}, "product": product,
        "pure_crop": pure, "tiny": tiny, "confidence": confidence, "left_right_swaps": swaps, "checks": checks,
        "targets": TARGETS,
        "blazepose": blazepose if blazepose is not None else {"missing": hint},
    }, indent=2, default=float))
    reference = blazepose_markdown(blazepose, hint, product) if args.split == "test" else []
    (args.out / "report.md").write_text(markdown(pure, tiny, confidence, checks, product,
                                                 swaps_markdown(swaps, scope) + reference, scope))
    plot_heights(tiny, args.out / "accuracy_by_height.png", scope)
    if confidence:
        plot_reliability(confidence, args.out / "reliability.png", scope)
    sheet = "unseen_people.png" if args.split == "test" else f"{args.split}_people.png"
    people_sheet(tiny_split, tiny_data, outputs, product, args.out / sheet)
    print(f"wrote {args.out}/report.json, report.md, accuracy_by_height.png, reliability.png, {sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
