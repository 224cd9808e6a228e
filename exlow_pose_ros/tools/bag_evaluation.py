"""`exlow_pose_evaluate_bag`: IFE, FDAE and OKS mAP of a recorded skeleton topic against a reference skeleton
topic (a teacher run on the full-resolution images, say) in the same bag. How users evaluate on their robots.

Frames are the reference topic's stamps in order. In each frame our skeletons are matched to the reference
ones by greedy box IoU (>= --min-iou): track ids of two trackers need not agree. Keypoints are compared in
the crop coordinates of the reference box (exlow_pose_ros.core.crop), the units of the paper's numbers; a
reference joint counts when its score is at least --min-score. Each of our tracks' runs of consecutive
matched frames give 5-frame windows (stride 1), as in the datasets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..core.boxes import box_iou, greedy_match
from ..core.crop import normalise_keypoints, square_region
from ..core.metrics import evaluate_poses
from ..core.windows import WINDOW_LENGTH
from .bag_io import BagError, read_bag


def skeletons_of(message) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(track id, box (4,), keypoints (17, 3) x, y, score) of each skeleton in a Skeleton2DArray."""
    found = []
    for skeleton in message.skeletons:
        box = np.array([skeleton.box.x_min, skeleton.box.y_min, skeleton.box.x_max, skeleton.box.y_max], float)
        points = np.array([[k.x, k.y, k.score] for k in skeleton.keypoints], float)
        if points.shape == (17, 3) and np.all(np.isfinite(box)) and np.all(np.isfinite(points)):
            found.append((int(skeleton.track_id), box, points))
    return found


def stamp_of(message) -> int:
    return int(message.header.stamp.sec) * 1_000_000_000 + int(message.header.stamp.nanosec)


def match_frames(ours: dict[int, list], reference: dict[int, list], min_iou: float) -> dict[int, list]:
    """Per our track: [(frame index, our keypoints, reference keypoints, reference box)] in frame order."""
    tracks: dict[int, list] = defaultdict(list)
    for index, stamp in enumerate(sorted(reference)):
        mine = ours.get(stamp, [])
        overlap = box_iou(np.array([o[1] for o in mine]), np.array([r[1] for r in reference[stamp]]))
        for i, j in greedy_match(overlap, min_iou).items():
            track, _, points = ours[stamp][i]
            _, reference_box, reference_points = reference[stamp][j]
            tracks[track].append((index, points, reference_points, reference_box))
    return tracks


def windows_from_tracks(tracks: dict[int, list], min_score: float) -> dict[str, np.ndarray]:
    predicted, target, mask, area = [], [], [], []
    for frames in tracks.values():
        indices = np.array([f[0] for f in frames])
        for start in range(len(frames) - WINDOW_LENGTH + 1):
            if indices[start + WINDOW_LENGTH - 1] - indices[start] != WINDOW_LENGTH - 1:
                continue  # a gap: this window would span frames the track was not matched in
            window = frames[start:start + WINDOW_LENGTH]
            regions = [square_region(f[3]) for f in window]
            predicted.append([normalise_keypoints(f[1][:, :2], r) for f, r in zip(window, regions, strict=True)])
            target.append([normalise_keypoints(f[2][:, :2], r) for f, r in zip(window, regions, strict=True)])
            mask.append([f[2][:, 2] >= min_score for f in window])
            area.append([(f[3][2] - f[3][0]) * (f[3][3] - f[3][1]) * (2.0 / r.side) ** 2
                         for f, r in zip(window, regions, strict=True)])
    return {"predicted": np.array(predicted, np.float32).reshape(-1, WINDOW_LENGTH, 17, 2),
            "target": np.array(target, np.float32).reshape(-1, WINDOW_LENGTH, 17, 2),
            "mask": np.array(mask, bool).reshape(-1, WINDOW_LENGTH, 17),
            "area": np.array(area, float).reshape(-1, WINDOW_LENGTH)}


def evaluate_bag(bag: Path, skeleton_topic: str, reference_topic: str, min_iou: float = 0.5,
                 min_score: float = 0.5) -> dict:
    ours: dict[int, list] = defaultdict(list)
    reference: dict[int, list] = defaultdict(list)
    for topic, _, message in read_bag(bag, [skeleton_topic, reference_topic]):
        target = ours if topic == skeleton_topic else reference
        target[stamp_of(message)].extend(skeletons_of(message))
    if not reference:
        raise BagError(f"{bag} has no messages on the reference topic {reference_topic}")
    tracks = match_frames(ours, reference, min_iou)
    windows = windows_from_tracks(tracks, min_score)
    reference_persons = sum(len(v) for v in reference.values())
    matched = sum(len(v) for v in tracks.values())
    result = {"bag": str(bag), "skeleton_topic": skeleton_topic, "reference_topic": reference_topic,
              "frames": len(reference), "reference_persons": reference_persons, "matched_persons": matched,
              "recall": matched / reference_persons if reference_persons else 0.0}
    if len(windows["predicted"]):
        result.update(evaluate_poses(windows["predicted"], windows["target"], windows["mask"], windows["area"]))
    else:
        result["windows"] = 0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow_pose_evaluate_bag", description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--skeletons", default="/exlow_pose/skeletons", help="our Skeleton2DArray topic")
    parser.add_argument("--reference", required=True, help="reference (teacher) Skeleton2DArray topic")
    parser.add_argument("--min-iou", type=float, default=0.5, help="box IoU to match a skeleton to the reference")
    parser.add_argument("--min-score", type=float, default=0.5, help="reference keypoint score that counts")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    try:
        result = evaluate_bag(args.bag, args.skeletons, args.reference, args.min_iou, args.min_score)
    except (BagError, FileNotFoundError) as error:
        print(f"exlow_pose_evaluate_bag: {error}", file=sys.stderr)
        return 2
    print(f"{result['frames']} frames, {result['matched_persons']} of {result['reference_persons']} reference "
          f"persons matched ({100 * result['recall']:.1f}%), {result['windows']} windows")
    if result["windows"]:
        print(f"IFE {result['ife']:.4f}   FDAE {result['fdae']:.4f}   mAP {result['map']:.2f}%   "
              f"OKS accuracy {result['oks_accuracy']:.2f}%")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
