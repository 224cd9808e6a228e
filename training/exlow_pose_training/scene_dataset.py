"""`exlow-pose-data scenes`: every real scene of the registry (training/configs/scenes.yaml), labelled by the
teacher at full resolution and seen by the product's detector at tiny sizes.

Two datasets come out, split by the scenes' roles (test = unseen scenes):

  <out>/teacher  kind "teacher": the paper's setting, 16x16 crops cut from the full-resolution frame around
                 the teacher's box (the pure-crop benchmark).
  <out>/tiny     kind "tiny": each clip shrunk (INTER_AREA) so that its median labelled person is H px tall.
                 On the shrunk frame the product's detector (YOLO11n-pose, the tracker node's defaults) runs
                 once; ByteTrack runs on the same detections. Per labelled person-frame it stores what the
                 product sees (the detector's box, its 16x16 crop cut from the shrunk frame, the detector's
                 own keypoints and whether the tracker reported the person) and the teacher's labels scaled
                 down. Test clips get every benchmark height; training clips one height per block of frames.

Deterministic: the same registry, videos and weights give the same data. Shrunk frames are recomputed from
the source, not stored.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from exlow_pose_ros.core.boxes import box_iou, greedy_match
from exlow_pose_ros.core.crop import SquareRegion, cut_crop, denormalise_keypoints, normalise_keypoints, square_region
from exlow_pose_ros.core.detector_export import BACKENDS as DETECTOR_BACKENDS
from exlow_pose_ros.core.detector_export import DEFAULT_MAX_UPSCALE
from exlow_pose_ros.core.person_tracker import PersonTracker
from exlow_pose_ros.core.provenance import file_sha256

from .dataset_format import DatasetWriter, ExLowDataset, SplitData
from .scenes import DEFAULT_REGISTRY, SceneClip, load_registry
from .teacher_dataset import DEFAULT_TEACHER, TeacherPerson, Thresholds, TrackFrames, reliable_persons

MATCH_IOU = 0.3


def read_clip(clip: SceneClip) -> list[np.ndarray]:
    """The clip's BGR frames [first, end); GIFs decode through OpenCV like videos."""
    capture = cv2.VideoCapture(str(clip.video))
    if not capture.isOpened():
        raise RuntimeError(f"OpenCV cannot read {clip.video}: run scripts/setup.sh (assets) or check ../shared")
    frames, index = [], 0
    first, end = clip.frames
    while end is None or index < end:
        ok, bgr = capture.read()
        if not ok:
            break
        if index >= first:
            frames.append(bgr if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR))
        index += 1
    capture.release()
    if not frames:
        raise RuntimeError(f"{clip.video} has no frames in {clip.frames}")
    return frames


def teacher_pass(model, frames: list[np.ndarray], imgsz: int, thresholds: Thresholds,
                 label: str) -> list[list[TeacherPerson]]:
    """Reliable teacher persons of every frame (tracking on the full-resolution frames)."""
    model.predictor = None  # fresh tracker state per clip
    persons = []
    for bgr in tqdm(frames, desc=f"teacher {label}", unit="frame", leave=False):
        result = model.track(bgr, persist=True, classes=[0], tracker="bytetrack.yaml", imgsz=imgsz,
                             conf=min(thresholds.box, 0.25), verbose=False)[0]
        persons.append(reliable_persons(result, thresholds))
    return persons


class CachedTeacher:
    """The teacher's persons of an earlier build of the same clips (its teacher/ dataset), so that building the
    tiny datasets again with another product detector skips the teacher, the slow part, and labels exactly the
    same person-frames (in another order: exlow-pose-report --yolo-scenes pairs the rows by person-frame)."""

    def __init__(self, root: Path) -> None:
        self.dataset = ExLowDataset(root / "teacher")
        self.splits: dict[str, SplitData] = {}

    def persons(self, clip: SceneClip, frame_count: int) -> list[list[TeacherPerson]]:
        sources = self.dataset.manifest["sources"]
        index = next((i for i, s in enumerate(sources) if s["name"] == clip.clip_name and s["split"] == clip.role),
                     None)
        if index is None or sources[index]["sha256"] != file_sha256(clip.video) or \
                sources[index]["frames"] != frame_count:
            raise RuntimeError(f"{self.dataset.root} has no teacher labels of {clip.clip_name} ({clip.role}, "
                               f"{frame_count} frames of this video): build without --teacher-from")
        if clip.role not in self.splits:
            self.splits[clip.role] = self.dataset.split(clip.role)
        split = self.splits[clip.role]
        persons: list[list[TeacherPerson]] = [[] for _ in range(frame_count)]
        for row in np.flatnonzero(split.arrays["source"] == index):
            x0, y0, side = (int(v) for v in split.arrays["region"][row])
            xy = denormalise_keypoints(split.arrays["keypoints"][row].astype(np.float64), SquareRegion(x0, y0, side))
            mask = split.arrays["mask"][row]
            persons[int(split.arrays["frame"][row])].append(TeacherPerson(
                int(split.arrays["track"][row]), split.arrays["box"][row].astype(np.float64), xy,
                mask.astype(np.float32), mask, float(split.arrays["score"][row])))
        return [sorted(people, key=lambda p: p.track_id) for people in persons]


class ProductDetector:
    """The product's detector and tracker on one stream (exlow_pose_ros.core.person_tracker with the tracker node's
    defaults): every person found, and which of them the tracker node would publish."""

    def __init__(self, weights: Path, backend: str = "torch", max_upscale: float = 0.0,
                 tiny_weights: Path | None = None, flip_test: bool = False) -> None:
        self.tracker = PersonTracker(weights, max_persons=1_000_000, backend=backend, max_upscale=max_upscale,
                                     tiny_model_path=tiny_weights, flip_test=flip_test)

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), scores (N,), keypoints (N, 17, 3) and tracked (N,) bool for one frame."""
        self.tracker.track(bgr)
        found = self.tracker.detections
        keypoints = found.keypoints if found.keypoints is not None else np.zeros((len(found.scores), 17, 3))
        return found.boxes, found.scores, keypoints.astype(np.float64), found.tracked


def heights_per_frame(clip: SceneClip, count: int, heights: list[float], block: int,
                      every_height: bool) -> list[list[float]]:
    """Test clips: every height on every frame. Training clips: one height per block, drawn reproducibly."""
    if every_height:
        return [list(heights)] * count
    rng = np.random.default_rng(int.from_bytes(clip.clip_name.encode()[:8].ljust(8, b"\0"), "little"))
    chosen = rng.choice(heights, size=(count + block - 1) // block)
    return [[float(chosen[i // block])] for i in range(count)]


class TinyTracks:
    """Per (teacher track, height): the person-frames as the product sees them, grouped into runs."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, float], dict[str, list]] = defaultdict(lambda: defaultdict(list))

    def add(self, key: tuple[int, float], **values) -> None:
        for name, value in values.items():
            self.rows[key][name].append(value)

    def tracks(self):
        for rows in self.rows.values():
            yield {name: np.stack(values) if np.ndim(values[0]) else np.asarray(values)
                   for name, values in rows.items()}


def tiny_pass(weights: Path, frames: list[np.ndarray], teacher: list[list[TeacherPerson]], heights: list[list[float]],
              median_height: float, label: str, backend: str = "torch", max_upscale: float = 0.0,
              tiny_weights: Path | None = None, flip_test: bool = False) -> TinyTracks:
    out = TinyTracks()
    for height in sorted({h for hs in heights for h in hs}):
        scale = height / median_height
        detector = ProductDetector(weights, backend, max_upscale, tiny_weights, flip_test)
        frame_numbers = [i for i, hs in enumerate(heights) if height in hs]
        for index in tqdm(frame_numbers, desc=f"{label} H={height:g}", unit="frame", leave=False):
            small = cv2.resize(frames[index], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            boxes, scores, keypoints, tracked = detector(small)
            people = teacher[index]
            if not people:
                continue
            label_boxes = np.stack([p.box for p in people]) * scale
            pairs = greedy_match(box_iou(label_boxes, boxes), MATCH_IOU)
            rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
            for row, person in enumerate(people):
                found = row in pairs
                crop_box = boxes[pairs[row]] if found else label_boxes[row]
                region = square_region(crop_box)
                detector_points = np.zeros((17, 3), np.float32)
                if found:
                    detector_points[:, :2] = normalise_keypoints(keypoints[pairs[row], :, :2], region)
                    detector_points[:, 2] = keypoints[pairs[row], :, 2]
                out.add((person.track_id, height), frame=index,
                        keypoints=normalise_keypoints(person.xy * scale, region), mask=person.mask,
                        box=np.asarray(crop_box, np.float32), region=np.array([region.x0, region.y0, region.side]),
                        score=scores[pairs[row]] if found else 0.0,
                        crops=cut_crop(rgb, region), detector=detector_points, found=found,
                        tracked=bool(found and tracked[pairs[row]]), label_box=label_boxes[row].astype(np.float32),
                        height=height)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new folder; gets teacher/ and tiny/ datasets")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--roles", default="train,val,test", help="which roles' clips to build")
    parser.add_argument("--scenes", default="", help="comma-separated scene names (default: every scene)")
    parser.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER,
                        help="teacher weights (labels on the full-resolution frames)")
    parser.add_argument("--detector", type=Path, default=None,
                        help="the product detector's weights on the shrunk frames (default: the teacher's, as the "
                        "tracker node's default; a fine-tuned detector from exlow-pose-finetune-detector here)")
    parser.add_argument("--tiny-detector", type=Path, default=None,
                        help="a second product detector for tiny people, as the tracker node's tiny_detector_model "
                        "(both run on frames enlarged >= 2x; per person the more confident keypoints)")
    parser.add_argument("--flip-test", action="store_true",
                        help="the product detector also runs on each frame's mirror image, as the tracker node's "
                        "flip_test (every person's two estimates averaged)")
    parser.add_argument("--teacher-from", type=Path, default=None,
                        help="reuse the teacher labels of an earlier exlow-pose-data scenes build of these clips "
                        "(its folder) instead of running the teacher: a new product detector in minutes, on the "
                        "same person-frames (exlow-pose-report --yolo-scenes pairs them)")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per clip (tests)")
    parser.add_argument("--max-upscale", type=float, default=DEFAULT_MAX_UPSCALE,
                        help="the product detector's max_upscale on the shrunk frames (default: %(default)s, the "
                        "tracker node's)")
    parser.add_argument("--detector-backend", choices=DETECTOR_BACKENDS, default="torch",
                        help="the product detector's backend on the shrunk frames (the teacher always runs on "
                        "PyTorch); exported backends need a dynamic export first: python -m "
                        "exlow_pose_ros.core.detector_export --backend B (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    detector = args.detector or args.teacher
    for weights, option in ((args.teacher, "--teacher"), (detector, "--detector")):
        if not weights.is_file():
            print(f"weights {weights} not found: run scripts/setup.sh, or pass {option} PATH", file=sys.stderr)
            return 2
    from ultralytics import YOLO

    registry = load_registry(args.registry)
    roles = args.roles.split(",")
    wanted = set(filter(None, args.scenes.split(",")))
    clips = [c for c in registry.clips if c.role in roles and (not wanted or c.name in wanted)]
    missing = [str(c.video) for c in clips if not c.video.is_file()]
    if missing:
        print(f"videos not found: {', '.join(missing)}; run scripts/setup.sh and keep ../shared beside the "
              "repository", file=sys.stderr)
        return 2
    thresholds = Thresholds()
    provenance = {
        "method": "real scenes: teacher on full-resolution frames; the product's detector on frames shrunk so the "
                  "median labelled person is H px tall",
        "teacher": {"path": str(args.teacher), "sha256": file_sha256(args.teacher), "tracker": "bytetrack.yaml",
                    "licence": "AGPL-3.0 (Ultralytics YOLO11n-pose)"},
        "detector": {"implementation": "exlow_pose_ros.core.person_tracker.PersonTracker, the tracker node's defaults",
                     "path": str(detector), "sha256": file_sha256(detector), "backend": args.detector_backend,
                     "max_upscale": args.max_upscale,
                     "tiny_detector": None if args.tiny_detector is None else
                     {"path": str(args.tiny_detector), "sha256": file_sha256(args.tiny_detector)},
                     "flip_test": args.flip_test, "match_iou": MATCH_IOU},
        "thresholds": vars(thresholds), "registry": str(args.registry),
        "heights": {"test": registry.test_heights, "train": registry.train_heights,
                    "block_frames": registry.block_frames},
        "command": " ".join(sys.argv),
        "teacher_from": None if args.teacher_from is None else str(args.teacher_from),
    }
    teacher_writer = DatasetWriter(args.out / "teacher", "teacher", __name__, provenance)
    tiny_writer = DatasetWriter(args.out / "tiny", "tiny", __name__, provenance)
    cache = None if args.teacher_from is None else CachedTeacher(args.teacher_from)
    teacher_model = YOLO(str(args.teacher), task="pose") if cache is None else None
    for clip in tqdm(clips, desc="clips", unit="clip"):
        frames = read_clip(clip)[: args.max_frames]
        label = clip.clip_name
        teacher = teacher_pass(teacher_model, frames, clip.teacher_imgsz, thresholds, label) if cache is None else \
            cache.persons(clip, len(frames))
        heights_px = [p.box[3] - p.box[1] for people in teacher for p in people]
        facts = {"path": str(clip.video), "sha256": file_sha256(clip.video), "scene": clip.name,
                 "licence": clip.licence, "shows": clip.shows, "first_frame": clip.frames[0], "frames": len(frames),
                 "width": frames[0].shape[1], "height": frames[0].shape[0], "teacher_imgsz": clip.teacher_imgsz,
                 "median_person_px": float(np.median(heights_px)) if heights_px else None}
        tracks: dict[int, TrackFrames] = defaultdict(TrackFrames)
        for index, people in enumerate(teacher):
            if people:
                rgb = cv2.cvtColor(frames[index], cv2.COLOR_BGR2RGB)
                for person in people:
                    tracks[person.track_id].append(index, person, rgb)
        source = teacher_writer.add_source(label, clip.role, **facts)
        for track in tracks.values():
            teacher_writer.add_track(source, track.arrays())
        if not heights_px:
            continue
        per_frame = heights_per_frame(clip, len(frames), registry.test_heights if clip.role == "test"
                                      else registry.train_heights, registry.block_frames, clip.role == "test")
        tiny = tiny_pass(detector, frames, teacher, per_frame, facts["median_person_px"], label,
                         args.detector_backend, args.max_upscale, args.tiny_detector, args.flip_test)
        tiny_source = tiny_writer.add_source(label, clip.role, **facts)
        for arrays in tiny.tracks():
            tiny_writer.add_track(tiny_source, arrays)
    for name, writer in (("teacher", teacher_writer), ("tiny", tiny_writer)):
        manifest = writer.close()
        for split, counts in manifest["splits"].items():
            print(f"{name:>7} {split:>5}: {counts['windows']:7d} windows {counts['tracks']:5d} tracks "
                  f"{counts['frames']:7d} frames")
    return 0
