"""`exlow-pose-calibrate`: fits the per-joint calibration of the detector's keypoint confidences
(exlow_pose_ros.core.keypoint_calibration) on a split of training scenes, as the pose node uses them: the detector's
keypoints smoothed over each tracked run, the event "per-keypoint OKS >= 0.5" against the teacher. Never fit it
on an unseen scene: the report measures its calibration there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from exlow_pose_ros.core.assets import SHIPPED_CALIBRATION
from exlow_pose_ros.core.keypoint_calibration import fit_calibration

from .dataset_format import ExLowDataset
from .report import REPO, keypoints_correct, reliability, smoothed_detector_runs, track_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="results/datasets/scenes_train/tiny:train", metavar="DATASET:SPLIT",
                        help="a kind-'tiny' split of training scenes (default: %(default)s)")
    # The source checkout's models/ (what is shipped), not an installed copy of it.
    parser.add_argument("--out", type=Path, default=REPO / "models" / SHIPPED_CALIBRATION)
    args = parser.parse_args(argv)
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
    chosen = tracked[:, None] & split.arrays["mask"]
    correct = keypoints_correct(poses, split)
    joint = np.broadcast_to(np.arange(17), chosen.shape)
    # The pose node calibrates each person's joints with its box height (the detector's box in the frame).
    heights = split.arrays["box"][:, 3] - split.arrays["box"][:, 1]
    box_height = np.broadcast_to(heights[:, None], chosen.shape)
    calibration = fit_calibration(confidence[chosen], correct[chosen], joint[chosen], box_height=box_height[chosen],
                                  provenance={
        "event": "per-keypoint OKS >= 0.5 of the detector's keypoints smoothed over the track (pose node default)",
        "data": args.data, "scenes": sorted({s.get("scene", s["name"]) for s in dataset.manifest["sources"]
                                              if s["split"] == split_name}),
        "detector": dataset.manifest["provenance"]["teacher"]["path"].split("/")[-1],
        "detector_sha256": dataset.manifest["provenance"]["teacher"]["sha256"],
        "fitted_joints": int(chosen.sum()), "command": " ".join(["exlow-pose-calibrate", *(argv or sys.argv[1:])])})
    before = reliability(confidence[chosen], correct[chosen])["ece"]
    after = reliability(calibration(np.nan_to_num(confidence), heights)[chosen], correct[chosen])["ece"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(args.out)
    print(f"wrote {args.out}: ECE on {args.data} {before:.3f} -> {after:.3f} over {int(chosen.sum())} joints")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
