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
from exlow_pose_ros.core.keypoint_calibration import KeypointCalibration, fit_calibration, person_feature

from .dataset_format import ExLowDataset, scene_of_rows
from .report import REPO, keypoints_correct, reliability, smoothed_detector_runs, track_runs

TERMS = ("size", "person")
CHOICES = ((), ("size",), ("person",), ("size", "person"))


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
    parser.add_argument("--terms", default="size,person",
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
