"""`exlow-pose-calibrate`: fits the per-joint calibration of the detector's keypoint confidences
(exlow_pose_ros.core.keypoint_calibration) on a split of training scenes, as the pose node uses them: the detector's
keypoints smoothed over each tracked run, the event "per-keypoint OKS >= 0.5" against the teacher. Never fit it
on an unseen scene: the report measures its calibration there.

`--cross-validate` first scores every choice of terms by leave-one-scene-out over the training scenes (fit on the
others, ECE on the one left out): a calibration must hold on scenes it was not fitted on, and this picks terms
by that without looking at the unseen scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from exlow_pose_ros.core.assets import SHIPPED_CALIBRATION
from exlow_pose_ros.core.keypoint_calibration import (
    NUM_KEYPOINTS,
    KeypointCalibration,
    logit,
    person_feature,
    size_feature,
)

from .dataset_format import ExLowDataset, scene_of_rows
from .report import REPO, keypoints_correct, reliability, smoothed_detector_runs, track_runs

TERMS = ("size", "person")
SLOPE_RANGE = (0.1, 3.0)  # a saturated confidence (the eyes) must not become a step function of it
CHOICES = ((), ("size",), ("person",), ("size", "person"))


def _penalised_logistic_fit(x: np.ndarray, y: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Weights minimising the logistic loss plus a small ridge towards `prior` (keeps a joint with little data near
    the identity map), the slope on column 0 bounded to SLOPE_RANGE: a convex problem solved to its optimum by
    L-BFGS-B. (Plain Newton steps diverge where a joint's confidences saturate, as the eyes' do: the logit column
    is then nearly the intercept's.)"""
    from scipy.optimize import minimize

    ridge = 1e-3 * len(y)

    def objective(weights: np.ndarray) -> tuple[float, np.ndarray]:
        score = x @ weights
        difference = weights - prior
        loss = float(np.sum(np.logaddexp(0.0, score) - y * score) + 0.5 * ridge * difference @ difference)
        return loss, x.T @ (1 / (1 + np.exp(-np.clip(score, -30, 30))) - y) + ridge * difference

    bounds = [SLOPE_RANGE] + [(None, None)] * (len(prior) - 1)
    return minimize(objective, prior, jac=True, method="L-BFGS-B", bounds=bounds,
                    options={"maxiter": 500, "gtol": 1e-8}).x


def fit_calibration(confidence: np.ndarray, correct: np.ndarray, joint: np.ndarray, provenance: dict,
                    box_height: np.ndarray | None = None, person: np.ndarray | None = None) -> KeypointCalibration:
    """Per-joint logistic regression of `correct` on logit(confidence), plus the size term when `box_height` (px,
    per sample) is given and the person term when `person` (person_feature of the sample's person) is given
    (_penalised_logistic_fit per joint)."""
    extras = [values for values in (None if box_height is None else size_feature(box_height), person)
              if values is not None]
    features = 2 + len(extras)
    prior = np.array([1.0] + [0.0] * (features - 1))
    weights_per_joint = np.tile(prior, (NUM_KEYPOINTS, 1))
    for j in range(NUM_KEYPOINTS):
        chosen = joint == j
        if chosen.sum() < 20:
            continue
        x = np.stack([logit(confidence[chosen]), np.ones(chosen.sum()), *(e[chosen] for e in extras)], axis=1)
        weights_per_joint[j] = _penalised_logistic_fit(x, correct[chosen].astype(float), prior)
    columns = iter(weights_per_joint.T[2:])
    size_slope = next(columns) if box_height is not None else np.zeros(NUM_KEYPOINTS)
    person_slope = next(columns) if person is not None else np.zeros(NUM_KEYPOINTS)
    return KeypointCalibration(weights_per_joint[:, 0], weights_per_joint[:, 1], provenance, size_slope, person_slope)


def fit(samples: dict[str, np.ndarray], chosen: np.ndarray, terms: tuple[str, ...], provenance: dict
        ) -> KeypointCalibration:
    return fit_calibration(samples["confidence"][chosen], samples["correct"][chosen], samples["joint"][chosen],
                           provenance, box_height=samples["height"][chosen] if "size" in terms else None,
                           person=samples["person"][chosen] if "person" in terms else None)


def calibrated_ece(calibration: KeypointCalibration, samples: dict[str, np.ndarray], chosen: np.ndarray) -> float:
    """ECE as the node applies the calibration: each person's 17 smoothed confidences and its box height."""
    probabilities = calibration(np.nan_to_num(samples["rows_confidence"]), samples["rows_height"])
    return reliability(probabilities.ravel()[chosen], samples["correct"][chosen])["ece"]


def cross_validate(samples: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per choice of terms: ECE on each training scene left out of the fit, and their mean."""
    results = {}
    scenes = sorted(set(samples["scene"][samples["valid"]]))
    for terms in CHOICES:
        name = "+".join(("confidence", *terms))
        per_scene = {}
        for scene in scenes:
            held_out = samples["valid"] & (samples["scene"] == scene)
            calibration = fit(samples, samples["valid"] & (samples["scene"] != scene), terms, {})
            per_scene[scene] = calibrated_ece(calibration, samples, held_out)
        results[name] = {**per_scene, "mean": float(np.mean(list(per_scene.values())))}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="results/datasets/scenes_train/tiny:train", metavar="DATASET:SPLIT",
                        help="a kind-'tiny' split of training scenes (default: %(default)s)")
    parser.add_argument("--terms", default="size",
                        help=f"terms besides the confidence, comma-separated from {', '.join(TERMS)}; '' for none "
                        "(default: %(default)s)")
    parser.add_argument("--cross-validate", action="store_true",
                        help="print the leave-one-training-scene-out ECE of every choice of terms first")
    # The source checkout's models/ (what is shipped), not an installed copy of it.
    parser.add_argument("--out", type=Path, default=REPO / "models" / SHIPPED_CALIBRATION)
    args = parser.parse_args(argv)
    terms = tuple(t for t in args.terms.split(",") if t)
    if any(t not in TERMS for t in terms):
        parser.error(f"--terms must name terms from {TERMS}, not {args.terms!r}")
    root, _, split_name = args.data.rpartition(":")
    dataset = ExLowDataset(root)
    if dataset.kind != "tiny" or any(s["split"] == "test" for s in dataset.manifest["sources"] if s["split"] ==
                                     split_name):
        print(f"{args.data} must be a kind-'tiny' split of training scenes", file=sys.stderr)
        return 2
    split = dataset.split(split_name)
    # The tracker reports every person the detector found (report_new_tracks); older builds of a split
    # recorded confirmed tracks only in `tracked`, so `found` is the faithful set for either.
    tracked = split.arrays["found"] & split.arrays["mask"].any(axis=1)
    poses, confidence = smoothed_detector_runs(split, track_runs(split, tracked))
    valid = tracked[:, None] & split.arrays["mask"]
    # The pose node calibrates each person's joints with its box height (the detector's box in the frame) and the
    # mean of its 17 confidences.
    heights = split.arrays["box"][:, 3] - split.arrays["box"][:, 1]
    shape = valid.shape
    samples = {"confidence": confidence.ravel(), "correct": keypoints_correct(poses, split).ravel(),
               "joint": np.broadcast_to(np.arange(17), shape).ravel(),
               "height": np.broadcast_to(heights[:, None], shape).ravel(),
               "person": np.broadcast_to(person_feature(confidence)[:, None], shape).ravel(),
               "scene": np.broadcast_to(scene_of_rows(dataset, split)[:, None], shape).ravel(),
               "valid": valid.ravel(), "rows_confidence": confidence, "rows_height": heights}
    validation = None
    if args.cross_validate:
        validation = cross_validate(samples)
        table = Table(title=f"Leave-one-scene-out ECE on {args.data} (fit on the other scenes)")
        scenes = [k for k in next(iter(validation.values())) if k != "mean"]
        for column in ("terms", *scenes, "mean"):
            table.add_column(column, justify="left" if column == "terms" else "right")
        for name, row in validation.items():
            table.add_row(name, *(f"{row[s]:.3f}" for s in scenes), f"{row['mean']:.3f}")
        Console(width=160).print(table)
    chosen = samples["valid"]
    teacher = dataset.manifest["provenance"].get("teacher", {})
    calibration = fit(samples, chosen, terms, {
        "event": "per-keypoint OKS >= 0.5 of the detector's keypoints smoothed over the track (pose node default)",
        "terms": ["confidence", *terms], "data": args.data,
        "scenes": sorted({s.get("scene", s["name"]) for s in dataset.manifest["sources"] if s["split"] == split_name}),
        "detector": teacher.get("path", "unknown").split("/")[-1], "detector_sha256": teacher.get("sha256"),
        "fitted_joints": int(chosen.sum()), "command": " ".join(["exlow-pose-calibrate", *(argv or sys.argv[1:])]),
        **({"leave_one_scene_out_ece": validation} if validation else {})})
    before = reliability(samples["confidence"][chosen], samples["correct"][chosen])["ece"]
    after = calibrated_ece(calibration, samples, chosen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(args.out)
    print(f"wrote {args.out} (terms: {', '.join(['confidence', *terms])}): ECE on {args.data} {before:.3f} -> "
          f"{after:.3f} over {int(chosen.sum())} joints")
    if validation:
        print(json.dumps({k: round(v["mean"], 4) for k, v in validation.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
