"""`exlow-pose-data motion`: the COCO-17 motion corpus (poses only, kind "motion").

(a) CMU mocap clips seen through random virtual cameras (surveillance and robot profiles, any yaw),
    resampled to random frame rates; one track per (clip, camera, frame rate).
(b) Penn Action's human-annotated 2D tracks with its official train/test split.

Keypoints are in the crop convention of exlow_pose_ros.core.crop over the square region of the person box.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from exlow_pose_ros.core.crop import normalise_keypoints, square_region
from exlow_pose_ros.core.keypoints import NUM_KEYPOINTS

from ..dataset_format import SPLITS, DatasetWriter
from . import cmu_mocap, penn_action
from .cameras import PROFILES, PinholeCamera, project, sample_camera
from .clip import CLIP_POINT_NAMES, MotionClip3D

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SHARED = REPO.parent / "shared"
CMU_LICENCE = "CMU Graphics Lab Motion Capture Database: free for research and commercial use"
# Three subjects cannot fill three subject-disjoint splits without starving train: 01 (playground
# climbing) and 02 (walk, run, jump, punch, swordplay) carry the variety, so they train; 03 (walking
# on uneven terrain) is the unseen-subject val. The test split is Penn Action's official test clips,
# real human-annotated 2D poses, which is what the corpus is finally measured against anyway.
DEFAULT_CMU_SPLITS = "01=train,02=train,03=val"
NEAR = 0.1  # m: a clip point closer to the camera plane than this makes the frame's box undefined


def parse_cmu_splits(text: str) -> dict[str, str]:
    splits = {}
    for part in filter(None, text.split(",")):
        subject, _, split = part.partition("=")
        if split not in SPLITS:
            raise argparse.ArgumentTypeError(f"--cmu-splits: unknown split {split!r} for subject {subject!r}")
        splits[subject.strip().removeprefix("cmu_")] = split
    return splits


def parse_fps_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    low, high = float(low), float(high or low)
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"--fps must be LOW,HIGH with 0 < LOW <= HIGH, got {text}")
    return low, high


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new dataset folder")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="shared data folder holding data/cmu_mocap and data/penn_action_labels "
                             "(default: ../shared beside the repository)")
    parser.add_argument("--cameras-per-clip", type=int, default=16,
                        help="random virtual cameras (each with its own frame rate) per CMU clip")
    parser.add_argument("--fps", type=parse_fps_range, default=(10.0, 30.0), metavar="LOW,HIGH",
                        help="CMU clips are resampled from 120 fps to a uniform random rate in this range")
    parser.add_argument("--cmu-splits", type=parse_cmu_splits, default=parse_cmu_splits(DEFAULT_CMU_SPLITS),
                        metavar="SUBJECT=SPLIT,...", help=f"split of each CMU subject (default {DEFAULT_CMU_SPLITS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-clips", type=int, default=None,
                        help="use at most this many clips of each of CMU and Penn Action (quick runs)")
    parser.add_argument("--no-cmu", action="store_true", help="leave out the CMU mocap part")
    parser.add_argument("--no-penn", action="store_true", help="leave out the Penn Action part")


def camera_summary(camera: PinholeCamera, profile: str, target: np.ndarray) -> dict:
    """The camera in a few numbers for the manifest (angles in degrees, lengths in metres)."""
    offset = camera.position - target
    forward = camera.rotation[2]
    return {
        "profile": profile, "width": camera.width, "height": camera.height, "fx": round(camera.fx, 2),
        "hfov_deg": round(float(np.degrees(2 * np.arctan(camera.width / 2 / camera.fx))), 2),
        "height_m": round(float(camera.position[2]), 3),
        "distance_m": round(float(np.hypot(offset[0], offset[1])), 3),
        "yaw_deg": round(float(np.degrees(np.arctan2(offset[1], offset[0]))) % 360, 2),
        "pitch_deg": round(float(np.degrees(np.arcsin(-forward[2]))), 2),  # positive: looking down
        "position": [round(float(v), 3) for v in camera.position],
    }


def project_track(points: np.ndarray, camera: PinholeCamera) -> dict[str, np.ndarray] | None:
    """Clip points (T, P, 3) -> one track's arrays; frames with a point behind the camera or no COCO
    keypoint in the image are left out (a gap in frame numbers). None if no frame is left."""
    pixels, depth = project(camera, points)
    in_front = (depth > NEAR).all(axis=1)
    u, v = pixels[..., 0], pixels[..., 1]
    inside = (depth > NEAR) & (u >= 0) & (u <= camera.width) & (v >= 0) & (v <= camera.height)
    mask = inside[:, :NUM_KEYPOINTS]  # COCO-17 are the first clip points
    keep = np.flatnonzero(in_front & mask.any(axis=1))
    if len(keep) == 0:
        return None
    pixels, mask = pixels[keep], mask[keep]
    # The box bounds every clip point (head top, toes, hands too), as a person detector's box would.
    boxes = np.concatenate([pixels.min(axis=1), pixels.max(axis=1)], axis=1)
    keypoints = np.zeros((len(keep), NUM_KEYPOINTS, 2), dtype=np.float32)
    regions = np.zeros((len(keep), 3), dtype=np.int32)
    for row in range(len(keep)):
        region = square_region(boxes[row])
        regions[row] = (region.x0, region.y0, region.side)
        keypoints[row] = normalise_keypoints(pixels[row, :NUM_KEYPOINTS], region)
    keypoints[~mask] = 0.0
    return {"keypoints": keypoints, "mask": mask, "box": boxes.astype(np.float32), "region": regions,
            "score": np.ones(len(keep), dtype=np.float32), "frame": keep.astype(np.int64)}


def clip_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """Random stream of one (clip, camera): independent of which other clips a run includes."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def add_cmu_clip(writer: DatasetWriter, clip: MotionClip3D, split: str, args: argparse.Namespace) -> dict[str, int]:
    pelvis = clip.points[:, CLIP_POINT_NAMES.index("pelvis")].astype(np.float64)
    # Fixed cameras aim at where the subject is on average; people walk through the view as in real footage.
    target = np.array([*pelvis[:, :2].mean(axis=0), float(np.median(pelvis[:, 2]))])
    tracks: list[dict] = []
    source = writer.add_source(clip.name, split, dataset="cmu_mocap", subject=clip.subject, source_fps=clip.fps,
                               source_frames=clip.num_frames, licence=CMU_LICENCE, tracks=tracks)
    counts = {"frames": 0, "tracks": 0}
    for index in range(args.cameras_per_clip):
        rng = clip_rng(args.seed, clip.name, index)
        profile = str(rng.choice(list(PROFILES)))
        camera = sample_camera(rng, target, profile)
        fps = float(rng.uniform(*args.fps))
        start = float(rng.uniform(0.0, 1.0 / fps))  # phase of the resampling grid
        points = cmu_mocap.resample(clip.points.astype(np.float64), clip.fps, fps, start)
        arrays = project_track(points, camera)
        if arrays is None:
            continue
        track_id = writer.add_track(source, arrays)
        tracks.append({"track": track_id, "fps": round(fps, 3), "start_s": round(start, 4),
                       "frames": len(arrays["frame"]), "frames_resampled": len(points),
                       "camera": camera_summary(camera, profile, target)})
        counts["frames"] += len(arrays["frame"])
        counts["tracks"] += 1
    return counts


def add_penn_clip(writer: DatasetWriter, clip: penn_action.PennClip) -> dict[str, int]:
    source = writer.add_source(clip.name, clip.split, dataset="penn_action", action=clip.action, view=clip.view,
                               fps=None, image_size=[clip.width, clip.height], frames=len(clip.frame),
                               frames_dropped=clip.dropped, boxes_from_joints=clip.box_from_joints,
                               licence=penn_action.LICENCE)
    if len(clip.frame) == 0:
        return {"frames": 0, "tracks": 0}
    keypoints = np.zeros_like(clip.keypoints)
    regions = np.zeros((len(clip.frame), 3), dtype=np.int32)
    for row in range(len(clip.frame)):
        region = square_region(clip.box[row])
        regions[row] = (region.x0, region.y0, region.side)
        keypoints[row] = normalise_keypoints(clip.keypoints[row], region)
    keypoints[~clip.mask] = 0.0
    writer.add_track(source, {"keypoints": keypoints, "mask": clip.mask, "box": clip.box, "region": regions,
                              "score": np.ones(len(clip.frame), dtype=np.float32), "frame": clip.frame})
    return {"frames": len(clip.frame), "tracks": 1}


def run(args: argparse.Namespace) -> int:
    started = time.time()
    data = Path(args.shared) / "data"
    cmu_root, penn_root = data / "cmu_mocap" / "subjects", data / "penn_action_labels"
    if not args.no_cmu and not cmu_root.is_dir():
        print(f"{cmu_root} not found: pass --shared, or --no-cmu", file=sys.stderr)
        return 2
    if not args.no_penn and not penn_root.is_dir():
        print(f"{penn_root} not found: pass --shared, or --no-penn", file=sys.stderr)
        return 2
    if args.no_cmu and args.no_penn:
        print("nothing to do: both --no-cmu and --no-penn given", file=sys.stderr)
        return 2
    writer = DatasetWriter(args.out, "motion", "exlow_pose_training.motion.corpus", provenance={
        "method": "COCO-17 pose sequences: CMU mocap projected through random virtual cameras, and Penn Action "
                  "2D annotations; keypoints in exlow_pose_ros.core.crop coordinates over square_region(person box)",
        "cmu_mocap": None if args.no_cmu else {
            "root": str(cmu_root), "licence": CMU_LICENCE, "subject_splits": args.cmu_splits,
            "split_reason": "by subject, so no person is in two splits; 3 subjects: 01 (playground) and 02 (walk, "
                            "run, jump, punch, swordplay) hold the variety and train, 03 (uneven-terrain walking) "
                            "is an unseen-subject val; test is Penn Action's official test split",
            "cameras_per_clip": args.cameras_per_clip, "fps_range": list(args.fps), "seed": args.seed,
            "camera_profiles": PROFILES, "point_bones": cmu_mocap.POINT_BONES,
            "face_offsets_m": cmu_mocap.FACE_OFFSETS,
            "mask": "false where the keypoint is behind the camera or outside the image (no occlusion model)",
            "box": "bounds of all projected clip points (COCO-17, head top, neck, pelvis, toes, hands)",
        },
        "penn_action": None if args.no_penn else {
            "root": str(penn_root), "licence": penn_action.LICENCE,
            "split": f"official (train = 1 -> train, else test); every {penn_action.VAL_EVERY}th official-train "
                     "clip of each action, in id order, -> val",
            "labels_mirrored": penn_action.PENN_LABELS_MIRRORED,
            "mirrored_reason": "Penn's 'left' joints are the person's anatomical right (front/back/side-view "
                               "checks, see exlow_pose_training.motion.penn_action); COCO left is anatomical",
            "mask": "visibility = 1 and inside the image; nose, eyes, ears never labelled",
            "frame": "0-based frame index (image file frames/NNNN/{frame+1:06d}.jpg)",
        },
        "max_clips": args.max_clips,
        "command": " ".join(sys.argv),
    })
    per_dataset = {(d, s): 0 for d in ("cmu", "penn") for s in SPLITS}
    if not args.no_cmu:
        subjects = sorted(args.cmu_splits)
        clips_paths = [(folder, amc) for folder in sorted(cmu_root.iterdir())
                       if folder.name in subjects and any(folder.glob("*.asf"))
                       for amc in sorted(folder.glob("*.amc"))][:args.max_clips]
        skeletons = {}
        for folder, amc in tqdm(clips_paths, desc="CMU clips", unit="clip"):
            asf = next(iter(sorted(folder.glob("*.asf"))))
            if asf not in skeletons:
                skeletons[asf] = cmu_mocap.parse_asf(asf)
            clip = cmu_mocap.load_clip(asf, amc, skeleton=skeletons[asf])
            split = args.cmu_splits[folder.name]
            per_dataset["cmu", split] += add_cmu_clip(writer, clip, split, args)["frames"]
    if not args.no_penn:
        penn = list(penn_action.penn_splits(penn_root).items())[:args.max_clips]
        for path, split in tqdm(penn, desc="Penn Action clips", unit="clip"):
            per_dataset["penn", split] += add_penn_clip(writer, penn_action.load_penn_clip(path, split))["frames"]
    manifest = writer.close()
    for split, counts in manifest["splits"].items():
        print(f"{split:>5}: {counts['windows']:7d} windows {counts['tracks']:5d} tracks {counts['frames']:7d} frames "
              f"(CMU {per_dataset['cmu', split]}, Penn Action {per_dataset['penn', split]})")
    print(f"motion corpus written to {args.out} in {time.time() - started:.1f} s")
    return 0
