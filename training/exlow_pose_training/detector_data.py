"""`exlow-pose-data detector`: a YOLO-pose dataset of tiny people as the product's detector sees them, for
fine-tuning the detector (exlow-pose-finetune-detector).

Why: YOLO11n-pose learnt on COCO, where people are large and sharp. The tracker runs it on small frames blown
up `max_upscale` (8) times, so a 12-px person reaches it as a blurred 96-px figure, a look COCO never showed
it. This builds that look from the training and validation scenes of training/configs/scenes.yaml (never the
unseen test scenes), labelled by the teacher (the same network on the full-resolution frame):

  1. sample frames of each clip; the teacher labels every person it finds (box confidence >= 0.25; joints
     below the keypoint threshold are marked invisible);
  2. shrink the frame (INTER_AREA) so its clip's median person is H px tall, H drawn from `--heights`, or keep
     it whole (`--full-share`), so the detector does not forget people at ordinary sizes;
  3. enlarge it exactly as the tracker node does (exlow_pose_ros.core.detector_export.effective_imgsz,
     Ultralytics' LetterBox with INTER_LINEAR);
  4. cut `--tiles` square tiles of `--tile` px around random labelled persons; these are the training images
     (Ultralytics then trains at imgsz = tile, so it resizes nothing).

Written as Ultralytics expects: images/{train,val}, labels/{train,val} (class, box, 17 x (x, y, visibility),
normalised) and data.yaml with kpt_shape and flip_idx, plus manifest.json with the sources and licences.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from exlow_pose_ros.core.detector_export import DEFAULT_MAX_UPSCALE, effective_imgsz
from exlow_pose_ros.core.keypoints import COCO17_FLIP_PERMUTATION
from exlow_pose_ros.core.provenance import file_sha256

from .scene_dataset import read_clip
from .scenes import DEFAULT_REGISTRY, SceneClip, load_registry
from .teacher_dataset import DEFAULT_TEACHER, Thresholds

DETECTOR_IMGSZ = 1280   # the tracker node's imgsz
LETTERBOX_FILL = 114    # Ultralytics' letterbox grey


def teacher_labels(model, bgr: np.ndarray, imgsz: int, keypoint_threshold: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Every person the teacher finds on the full-resolution frame: boxes (N, 4) xyxy and keypoints (N, 17, 3)
    x, y, visibility (2 where the joint's confidence reaches the threshold, else 0)."""
    result = model.predict(bgr, classes=[0], imgsz=imgsz, conf=0.25, verbose=False)[0]
    boxes = result.boxes.xyxy.cpu().numpy().astype(np.float64).reshape(-1, 4)
    if result.keypoints is None or len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros((0, 17, 3))
    points = result.keypoints.data.cpu().numpy().astype(np.float64)
    points[..., 2] = np.where(points[..., 2] >= keypoint_threshold, 2.0, 0.0)
    return boxes, points


def detector_view(bgr: np.ndarray, scale: float, max_upscale: float) -> tuple[np.ndarray, float]:
    """The frame shrunk by `scale` (INTER_AREA) and enlarged as the tracker node feeds it to the detector; and
    the total factor from source pixels to the returned image's pixels."""
    small = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height, width = small.shape[:2]
    size = effective_imgsz(width, height, DETECTOR_IMGSZ, max_upscale)
    ratio = min(size / height, size / width)
    shape = (round(width * ratio), round(height * ratio))
    view = small if shape == (width, height) else cv2.resize(small, shape, interpolation=cv2.INTER_LINEAR)
    return view, shape[0] / bgr.shape[1]


def cut_tile(image: np.ndarray, boxes: np.ndarray, points: np.ndarray, centre: np.ndarray, tile: int
             ) -> tuple[np.ndarray, list[str]]:
    """A tile x tile image around `centre` (grey where it leaves the image) and its YOLO-pose label lines: the
    persons whose box centre lies inside, boxes clipped to the tile, joints outside it invisible."""
    x0, y0 = (np.round(centre) - tile // 2).astype(int)
    # Inside the image where it is big enough: the detector sees little letterbox grey.
    x0 = min(max(x0, 0), image.shape[1] - tile) if image.shape[1] >= tile else x0
    y0 = min(max(y0, 0), image.shape[0] - tile) if image.shape[0] >= tile else y0
    out = np.full((tile, tile, 3), LETTERBOX_FILL, np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + tile, image.shape[1]), min(y0 + tile, image.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    lines = []
    for box, person in zip(boxes, points, strict=True):
        shifted = box - [x0, y0, x0, y0]
        centre_xy = (shifted[:2] + shifted[2:]) / 2
        if not ((centre_xy >= 0) & (centre_xy < tile)).all():
            continue
        clipped = np.clip(shifted, 0, tile)
        xy = person[:, :2] - [x0, y0]
        inside = ((xy >= 0) & (xy < tile)).all(axis=1) & (person[:, 2] > 0)
        joints = np.concatenate([np.where(inside[:, None], xy / tile, 0.0), np.where(inside, 2.0, 0.0)[:, None]],
                                axis=1)
        cx, cy = (clipped[:2] + clipped[2:]) / 2 / tile
        w, h = (clipped[2:] - clipped[:2]) / tile
        if w <= 0 or h <= 0:
            continue
        lines.append(" ".join(["0", *(f"{v:.6f}" for v in (cx, cy, w, h)),
                               *(f"{v:.6f}" if i % 3 < 2 else f"{int(v)}" for i, v in enumerate(joints.ravel()))]))
    return out, lines


def sample_frames(count: int, wanted: int) -> np.ndarray:
    return np.unique(np.linspace(0, count - 1, min(wanted, count)).round().astype(int))


def build_clip(model, clip: SceneClip, split: str, out: Path, args: argparse.Namespace,
               rng: np.random.Generator, thresholds: Thresholds) -> dict:
    frames = read_clip(clip)
    chosen = sample_frames(len(frames), args.frames_per_clip)
    labels = {int(i): teacher_labels(model, frames[i], clip.teacher_imgsz, thresholds.keypoint)
              for i in tqdm(chosen, desc=f"teacher {clip.clip_name}", unit="frame", leave=False)}
    heights = [b[3] - b[1] for boxes, _ in labels.values() for b in boxes]
    if not heights:
        return {"clip": clip.clip_name, "images": 0}
    median = float(np.median(heights))
    images = persons = 0
    for index, (boxes, points) in labels.items():
        if len(boxes) == 0:
            continue
        whole = rng.random() < args.full_share
        scale = 1.0 if whole else min(1.0, float(rng.choice(args.heights)) / median)
        view, factor = detector_view(frames[index], scale, args.max_upscale)
        boxes_view, points_view = boxes * factor, points.copy()
        points_view[..., :2] *= factor
        for tile_index in range(args.tiles):
            person = rng.integers(len(boxes))
            centre = (boxes_view[person, :2] + boxes_view[person, 2:]) / 2 + rng.uniform(-0.35, 0.35, 2) * args.tile
            image, lines = cut_tile(view, boxes_view, points_view, centre, args.tile)
            if not lines:
                continue
            stem = f"{clip.name}_{index:05d}_{tile_index}_{'full' if whole else f'h{scale * median:.0f}'}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.png"), image)
            (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            images += 1
            persons += len(lines)
    return {"clip": clip.clip_name, "scene": clip.name, "role": clip.role, "split": split, "licence": clip.licence,
            "path": str(clip.video), "sha256": file_sha256(clip.video), "frames_sampled": len(chosen),
            "median_person_px": median, "images": images, "persons": persons}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new folder for the YOLO-pose dataset")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER, help="teacher weights")
    parser.add_argument("--frames-per-clip", type=int, default=200, help="frames sampled evenly from each clip")
    parser.add_argument("--tiles", type=int, default=2, help="tiles cut from each sampled frame")
    parser.add_argument("--tile", type=int, default=320, help="tile side in pixels (the training imgsz)")
    parser.add_argument("--heights", type=float, nargs="+", default=[8, 10, 12, 14, 16, 20, 24, 28, 32, 40],
                        help="median person heights (px) the frames are shrunk to")
    parser.add_argument("--full-share", type=float, default=0.15, help="share of frames kept at full resolution")
    parser.add_argument("--max-upscale", type=float, default=DEFAULT_MAX_UPSCALE,
                        help="the tracker node's max_upscale (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.out.exists():
        print(f"{args.out} exists: choose a new folder", file=sys.stderr)
        return 2
    if not args.teacher.is_file():
        print(f"weights {args.teacher} not found: run scripts/setup.sh, or pass --teacher PATH", file=sys.stderr)
        return 2
    from ultralytics import YOLO

    registry = load_registry(args.registry)
    # Unseen (test) scenes never reach the detector's training; the validation stretch selects the checkpoint.
    clips = [(clip, "train") for clip in registry.by_role("train")] + [(c, "val") for c in registry.by_role("val")]
    for split in ("train", "val"):
        (args.out / "images" / split).mkdir(parents=True)
        (args.out / "labels" / split).mkdir(parents=True)
    model = YOLO(str(args.teacher), task="pose")
    rng = np.random.default_rng(args.seed)
    sources = [build_clip(model, clip, split, args.out, args, rng, Thresholds())
               for clip, split in tqdm(clips, desc="clips", unit="clip")]
    (args.out / "data.yaml").write_text(yaml.safe_dump({
        "path": str(args.out.resolve()), "train": "images/train", "val": "images/val",
        "kpt_shape": [17, 3], "flip_idx": list(COCO17_FLIP_PERMUTATION), "names": {0: "person"}}, sort_keys=False))
    (args.out / "manifest.json").write_text(json.dumps({
        "kind": "yolo_pose_tiny_people", "generator": __name__, "command": " ".join(sys.argv),
        "teacher": {"path": str(args.teacher), "sha256": file_sha256(args.teacher)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "sources": sources}, indent=2))
    for split in ("train", "val"):
        rows = [s for s in sources if s.get("split") == split]
        print(f"{split:>5}: {sum(s['images'] for s in rows):6d} images {sum(s['persons'] for s in rows):7d} persons "
              f"from {len(rows)} clips")
    return 0
