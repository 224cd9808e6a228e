"""`exlow-pose-data teacher`: the paper's pseudo-dataset generator (seed 000, Sec. 4.1) for videos.

A teacher pose model (Ultralytics; YOLO11n-pose by default) runs with tracking on the full-resolution
frames. Reliable persons are kept (box confidence, number of confident joints, minimum size); each is
cut by the crop convention (exlow_pose_ros.core.crop) into a 16x16 RGB crop, its keypoints normalised to
[-1, 1] in the square, and joints below the keypoint confidence threshold masked. Tracks are stored
frame by frame; 5-frame windows (stride 1) are derived on load and never cross a track gap.

Splits never share footage or people:
  --split-by video    whole videos go to one split (--assign NAME=SPLIT, else by a hash of the name);
  --split-by subject  a regex takes the subject from the file name (NTU RGB+D: 'P(\\d{3})'), and subjects
                      are grouped into folds as in the paper (one fold for test, --val-subjects for val);
  --split-by time     each video is cut into time blocks (train, then val, then test, --fractions) and
                      each track goes wholly to the split of the block where it starts, so no person is
                      in two splits (unless the tracker loses and re-finds them under a new id). For a
                      few long videos of passers-by such as vtest.avi.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from exlow_pose_ros.core.assets import default_detector
from exlow_pose_ros.core.crop import cut_crop, normalise_keypoints, square_region
from exlow_pose_ros.core.provenance import file_sha256
from exlow_pose_training.dataset_format import SPLITS, DatasetWriter, parse_fractions

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TEACHER = default_detector()
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DATA_LICENCES = {
    "vtest.avi": "OpenCV sample video (Debian opencv-doc): BSD-3-Clause / Apache-2.0",
    "sports2d_demo.mp4": "Sports2D demo video (PyPI sports2d 0.8.34): BSD-3-Clause",
}


@dataclass(frozen=True)
class Thresholds:
    box: float = 0.5           # teacher box confidence to keep a person
    keypoint: float = 0.5      # keypoint confidence below which a joint is masked
    min_keypoints: int = 8     # confident joints needed to keep a person in a frame
    min_height: float = 40.0   # person box height in source pixels: the teacher is unreliable below


@dataclass(frozen=True)
class TeacherPerson:
    """One reliable person of one frame, as the teacher saw it, in source pixels."""

    track_id: int
    box: np.ndarray        # (4,) x_min, y_min, x_max, y_max
    xy: np.ndarray         # (17, 2)
    confidence: np.ndarray  # (17,)
    mask: np.ndarray       # (17,) bool: confidence >= the keypoint threshold
    score: float


def reliable_persons(result, thresholds: Thresholds) -> list[TeacherPerson]:
    """The persons of one tracked Ultralytics result that pass the thresholds."""
    if result.boxes is None or result.boxes.id is None or result.keypoints is None:
        return []
    boxes = result.boxes.xyxy.cpu().numpy()
    ids = result.boxes.id.int().cpu().numpy()
    box_scores = result.boxes.conf.cpu().numpy()
    xy = result.keypoints.xy.cpu().numpy()
    keypoint_scores = result.keypoints.conf.cpu().numpy()
    kept = []
    for box, track_id, box_score, points, scores in zip(boxes, ids, box_scores, xy, keypoint_scores, strict=True):
        mask = scores >= thresholds.keypoint
        if (box_score < thresholds.box or mask.sum() < thresholds.min_keypoints
                or box[3] - box[1] < thresholds.min_height):
            continue
        kept.append(TeacherPerson(int(track_id), box.astype(np.float64), points.astype(np.float64),
                                  scores.astype(np.float32), mask, float(box_score)))
    return kept


@dataclass
class TrackFrames:
    """One tracked person's kept frames in one video."""

    frames: list[int] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    mask: list[np.ndarray] = field(default_factory=list)
    box: list[np.ndarray] = field(default_factory=list)
    region: list[tuple[int, int, int]] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)

    def append(self, index: int, person: TeacherPerson, rgb: np.ndarray) -> None:
        """Add one frame of this person: the labels in crop coordinates and the crop from `rgb`."""
        region = square_region(person.box)
        self.frames.append(index)
        self.keypoints.append(normalise_keypoints(person.xy, region))
        self.mask.append(person.mask)
        self.box.append(person.box.astype(np.float32))
        self.region.append((region.x0, region.y0, region.side))
        self.score.append(person.score)
        self.crops.append(cut_crop(rgb, region))

    def arrays(self, keep: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        return {
            "frame": np.asarray(self.frames)[keep], "keypoints": np.stack(self.keypoints)[keep],
            "mask": np.stack(self.mask)[keep], "box": np.stack(self.box)[keep],
            "region": np.asarray(self.region)[keep], "score": np.asarray(self.score)[keep],
            "crops": np.stack(self.crops)[keep],
        }


def find_videos(inputs: list[Path]) -> list[Path]:
    videos = []
    for path in inputs:
        if path.is_dir():
            videos += sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            videos.append(path)
        else:
            raise FileNotFoundError(f"no video or folder at {path}")
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {', '.join(map(str, inputs))}")
    return videos


def label_video(model, video: Path, thresholds: Thresholds, imgsz: int, tracker: str,
                max_frames: int | None, start_frame: int = 0) -> tuple[dict[int, TrackFrames], dict]:
    """Run the teacher with tracking over `video`; returns kept frames per track id and video facts."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise RuntimeError(f"OpenCV cannot read {video}")
    info = {"fps": capture.get(cv2.CAP_PROP_FPS), "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if total is not None:
        total = max(total - start_frame, 0)
    if max_frames is not None:
        total = min(total if total is not None else max_frames, max_frames)
    for _ in range(start_frame):  # read and discard: seeking is inexact in many codecs
        capture.grab()
    tracks: dict[int, TrackFrames] = defaultdict(TrackFrames)
    model.predictor = None  # a fresh tracker state per video
    index = start_frame
    with tqdm(total=total, desc=video.name, unit="frame", leave=False) as progress:
        while max_frames is None or index < start_frame + max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            result = model.track(bgr, persist=True, classes=[0], tracker=tracker, imgsz=imgsz,
                                 conf=min(thresholds.box, 0.25), verbose=False)[0]
            if result.boxes.id is not None and result.keypoints is not None:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                _keep_reliable(tracks, index, rgb, result, thresholds)
            index += 1
            progress.update()
    capture.release()
    info["frames"] = index - start_frame
    info["first_frame"] = start_frame
    return dict(tracks), info


def _keep_reliable(tracks: dict[int, TrackFrames], index: int, rgb: np.ndarray, result,
                   thresholds: Thresholds) -> None:
    for person in reliable_persons(result, thresholds):
        tracks[person.track_id].append(index, person, rgb)


def split_of_video(name: str, assignments: dict[str, str], fractions: dict[str, float]) -> str:
    if name in assignments:
        return assignments[name]
    position = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return _split_at(position, fractions)


def _split_at(position: float, fractions: dict[str, float]) -> str:
    edge = 0.0
    for split in SPLITS:
        edge += fractions[split]
        if position < edge:
            return split
    return SPLITS[-1]


def subject_splits(subjects: list[str], folds: int, fold: int, val_subjects: int) -> dict[str, str]:
    """The paper's protocol: subjects in `folds` groups, group `fold` for test, `val_subjects` more for val."""
    ordered = sorted(set(subjects), key=lambda s: (len(s), s))
    groups = np.array_split(np.array(ordered, dtype=object), folds)
    test = set(groups[fold])
    rest = [s for s in ordered if s not in test]
    val = set(rest[:val_subjects])
    return {s: "test" if s in test else "val" if s in val else "train" for s in ordered}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="video files or folders of videos")
    parser.add_argument("--out", type=Path, required=True, help="new dataset folder")
    parser.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER,
                        help="Ultralytics pose checkpoint (.pt or exported model), local path")
    parser.add_argument("--imgsz", type=int, default=1280,
                        help="teacher input size; small people need large sizes (vtest.avi: 1280 finds ~3x more "
                             "people than 768)")
    parser.add_argument("--tracker", default="bytetrack.yaml", help="Ultralytics tracker config")
    parser.add_argument("--box-threshold", type=float, default=Thresholds.box)
    parser.add_argument("--keypoint-threshold", type=float, default=Thresholds.keypoint)
    parser.add_argument("--min-keypoints", type=int, default=Thresholds.min_keypoints)
    parser.add_argument("--min-height", type=float, default=Thresholds.min_height,
                        help="smallest person box height in source pixels to label")
    parser.add_argument("--split-by", choices=("video", "subject", "time"), default="video")
    parser.add_argument("--assign", action="append", default=[], metavar="VIDEO=SPLIT",
                        help="--split-by video: put this video file name in this split")
    parser.add_argument("--fractions", type=parse_fractions, default=parse_fractions("train=0.7,val=0.1,test=0.2"),
                        help="split fractions for hashed videos or time blocks")
    parser.add_argument("--subject-pattern", default=r"P(\d{3})",
                        help="--split-by subject: regex whose first group is the subject (NTU RGB+D: P(\\d{3}))")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold", type=int, default=0, help="which subject fold is the test split")
    parser.add_argument("--val-subjects", type=int, default=3)
    parser.add_argument("--start-frame", type=int, default=0, help="first frame to label in each video")
    parser.add_argument("--max-frames", type=int, default=None, help="label at most this many frames per video")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if not args.teacher.is_file():
        print(f"teacher model {args.teacher} not found: run scripts/setup.sh, or pass --teacher PATH", file=sys.stderr)
        return 2
    from ultralytics import YOLO  # heavy import, only for this subcommand

    thresholds = Thresholds(args.box_threshold, args.keypoint_threshold, args.min_keypoints, args.min_height)
    videos = find_videos(args.inputs)
    assignments = dict(a.split("=", 1) for a in args.assign)
    subject_of = {}
    if args.split_by == "subject":
        for video in videos:
            match = re.search(args.subject_pattern, video.name)
            if not match:
                print(f"--subject-pattern {args.subject_pattern!r} does not match {video.name}", file=sys.stderr)
                return 2
            subject_of[video] = match.group(1)
        subject_split = subject_splits(list(subject_of.values()), args.folds, args.fold, args.val_subjects)

    model = YOLO(str(args.teacher), task="pose")
    writer = DatasetWriter(args.out, "teacher", "exlow_pose_training.teacher_dataset", provenance={
        "method": "seed 000 Sec. 4.1: teacher pose on full-resolution frames, reliable persons, square crops to 16x16",
        "teacher": {"path": str(args.teacher), "sha256": file_sha256(args.teacher), "imgsz": args.imgsz,
                    "tracker": args.tracker, "licence": "AGPL-3.0 (Ultralytics YOLO11n-pose)"},
        "thresholds": vars(thresholds),
        "split_by": args.split_by,
        "command": " ".join(sys.argv),
    })
    for video in tqdm(videos, desc="videos", unit="video"):
        tracks, info = label_video(model, video, thresholds, args.imgsz, args.tracker, args.max_frames,
                                   args.start_frame)
        facts = {"path": str(video), "sha256": file_sha256(video),
                 "licence": DATA_LICENCES.get(video.name, "see source"), **info}
        if args.split_by == "time":
            _add_time_split_tracks(writer, video.name, tracks, facts, args.fractions)
            continue
        split = (subject_split[subject_of[video]] if args.split_by == "subject"
                 else split_of_video(video.name, assignments, args.fractions))
        source = writer.add_source(video.name, split, subject=subject_of.get(video), **facts)
        for track in tracks.values():
            writer.add_track(source, track.arrays())
    manifest = writer.close()
    for split, counts in manifest["splits"].items():
        print(f"{split:>5}: {counts['windows']:7d} windows {counts['tracks']:5d} tracks {counts['frames']:7d} frames")
    print(f"dataset written to {args.out} in {manifest['generator']['seconds']} s")
    return 0


def _add_time_split_tracks(writer: DatasetWriter, name: str, tracks: dict[int, TrackFrames], facts: dict,
                           fractions: dict[str, float]) -> None:
    first, frames = facts["first_frame"], max(facts["frames"], 1)
    sources = {}
    for split in SPLITS:
        if fractions[split] > 0:
            sources[split] = writer.add_source(f"{name}[{split}]", split, **facts, time_block=split)
    for track in tracks.values():
        # The whole track goes to the block it starts in, so no person is in two splits.
        split = _split_at((track.frames[0] - first) / frames, fractions)
        writer.add_track(sources[split], track.arrays())
