"""`exlow-pose-data blazepose`: an independent second reference for the unseen-scene report.

The report's labels are the teacher, YOLO11n-pose on the full-resolution frame, which flatters YOLO (the
product's detector). Here BlazePose (mediapipe 0.10.21, pose_landmark_full, static-image mode) labels every
test person-frame of the unseen-scene teacher dataset (exlow-pose-data scenes) from the full-resolution frame:
a square crop around the teacher's person box with MARGIN of its longer side on each side, BlazePose's own
person detector and landmark model on it, landmarks mapped back to full-resolution pixels, COCO-17 kept with
BlazePose's per-joint visibility. mediapipe runs in .venv-blazepose (scripts/setup_blazepose.sh) as a
subprocess (blazepose_labels.py); crops go in and keypoints come out as .npz files.

Labels are cached under results/references/blazepose/, keyed by the teacher dataset's manifest and the
settings, so a rerun (and the report) only reads them. The command also writes a contact sheet of crops with
the teacher's and BlazePose's skeletons, to check the joint order and the mapping by eye.

`exlow-pose-report` then scores the tiny-people rows against these labels (scaled down exactly as the teacher's)
on the person-frames where BlazePose found the person.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from exlow_pose_ros.core.crop import SquareRegion, denormalise_keypoints, normalise_keypoints
from exlow_pose_ros.core.keypoints import COCO17_LIMBS, COCO17_NAMES
from exlow_pose_ros.core.metrics import object_keypoint_similarity, oks_accuracy

from .blazepose_labels import square_around
from .dataset_format import ExLowDataset, SplitData, scene_of_rows

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO / ".venv-blazepose" / "bin" / "python"
LABELLER = Path(__file__).with_name("blazepose_labels.py")
CACHE = REPO / "results" / "references" / "blazepose"
SETUP_HINT = ("bash scripts/setup_blazepose.sh && exlow-pose-data blazepose --scenes {scenes}")
PERSON_VISIBILITY = 0.5  # mean BlazePose visibility over the COCO-17 joints for "BlazePose found the person"
JOINT_VISIBILITY = 0.5   # a joint counts as labelled at or above this visibility (the teacher's mask uses 0.5 too)
BOX_MATCH_PX = 0.05      # tiny label_box vs teacher box x scale: float32 round-off only (persons differ by pixels)


@dataclass(frozen=True)
class Settings:
    margin: float = 0.25         # of the box's longer side, on each side of the square crop
    crop_pixels: int = 320       # crops are resized to this square: BlazePose's ROI (~0.8 of it) meets its 256 input
    model_complexity: int = 1    # pose_landmark_full, the only landmark model the wheel ships
    every: int = 1               # label frames whose number is a multiple of this (1: all)


def _manifest_key(teacher_root: Path) -> str:
    return f"{teacher_root.parent.name}_{teacher_root.name}_" + \
        hashlib.sha256((teacher_root / "manifest.json").read_bytes()).hexdigest()[:12]


def cache_path(teacher_root: Path, settings: Settings = Settings(), cache: Path = CACHE) -> Path:
    """Where the labels of this teacher dataset under these settings live: changes with either."""
    settings_key = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:8]
    return cache / f"{_manifest_key(teacher_root)}_{settings_key}.npz"


def find_cached(teacher_root: Path, cache: Path = CACHE) -> Path | None:
    """The labels of this teacher dataset: those with the default settings, else the newest of any settings
    (e.g. a subsample), else None."""
    default = cache_path(teacher_root, Settings(), cache)
    if default.is_file():
        return default
    found = sorted(cache.glob(f"{_manifest_key(teacher_root)}_*.npz"), key=lambda p: p.stat().st_mtime)
    found = [p for p in found if not p.name.endswith(".tmp.npz")]
    return found[-1] if found else None


# --- crops from the full-resolution frames -------------------------------------------------------------------

def clip_frames(path: str, first: int, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number in the clip, BGR frame) of the wanted frames, decoded as scene_dataset.read_clip does
    (OpenCV, greyscale to BGR), streaming so a long full-HD clip never sits in memory."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise RuntimeError(f"OpenCV cannot read {path}: run scripts/setup.sh (assets) or check ../shared")
    index, last = 0, max(wanted, default=-1) + first
    while index <= last:
        ok, bgr = capture.read()
        if not ok:
            break
        if index - first in wanted:
            yield index - first, bgr if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        index += 1
    capture.release()


def cut_square(rgb: np.ndarray, square: np.ndarray, pixels: int) -> np.ndarray:
    """The square (x0, y0, side) of the frame, black outside it, resized to pixels x pixels."""
    x0, y0, side = (int(v) for v in square)
    out = np.zeros((side, side, 3), np.uint8)
    height, width = rgb.shape[:2]
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if right > left and bottom > top:
        out[top - y0:bottom - y0, left - x0:right - x0] = rgb[top:bottom, left:right]
    interpolation = cv2.INTER_AREA if side > pixels else cv2.INTER_LINEAR
    return cv2.resize(out, (pixels, pixels), interpolation=interpolation)


def teacher_pixels(split: SplitData) -> np.ndarray:
    """The teacher's keypoints (N, 17, 2) back in full-resolution pixels (the dataset stores crop coordinates)."""
    region = split.arrays["region"]
    return np.stack([denormalise_keypoints(k, SquareRegion(*map(int, r)))
                     for k, r in zip(split.arrays["keypoints"], region, strict=True)]) if len(region) else \
        np.zeros((0, 17, 2), np.float32)


def chosen_rows(split: SplitData, every: int) -> np.ndarray:
    """The deterministic subsample: every row whose frame number is a multiple of `every`, in every scene."""
    return np.flatnonzero(split.arrays["frame"] % every == 0)


def collect_crops(dataset: ExLowDataset, split: SplitData, rows: np.ndarray, settings: Settings
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Crops (len(rows), S, S, 3) RGB and their squares (len(rows), 3), read clip by clip."""
    from tqdm import tqdm

    squares = np.stack([square_around(b, settings.margin) for b in split.arrays["box"][rows]]) if len(rows) else \
        np.zeros((0, 3), np.int64)
    crops = np.zeros((len(rows), settings.crop_pixels, settings.crop_pixels, 3), np.uint8)
    sources = dataset.manifest["sources"]
    progress = tqdm(total=len(rows), desc="crops", unit="crop")
    for source_index in np.unique(split.arrays["source"][rows]):
        source = sources[source_index]
        mine = np.flatnonzero(split.arrays["source"][rows] == source_index)
        frames = split.arrays["frame"][rows[mine]]
        for frame, bgr in clip_frames(source["path"], int(source.get("first_frame", 0)), set(frames.tolist())):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for position in mine[frames == frame]:
                crops[position] = cut_square(rgb, squares[position], settings.crop_pixels)
                progress.update()
    progress.close()
    if progress.n != len(rows):
        raise RuntimeError(f"decoded {progress.n} of {len(rows)} person-frames: a clip is shorter than its dataset")
    return crops, squares


def label(dataset_root: Path, settings: Settings, python: Path, out: Path) -> dict:
    """Run BlazePose on the dataset's test person-frames; write the cache file `out`; return its metadata."""
    dataset = ExLowDataset(dataset_root)
    split = dataset.split("test")
    rows = chosen_rows(split, settings.every)
    started = time.time()
    crops, squares = collect_crops(dataset, split, rows, settings)
    with tempfile.TemporaryDirectory(prefix="blazepose_") as folder:
        jobs, result = Path(folder) / "jobs.npz", Path(folder) / "labels.npz"
        np.savez(jobs, crops=crops, squares=squares)
        del crops
        subprocess.run([str(python), str(LABELLER), "--jobs", str(jobs), "--out", str(result),
                        "--model-complexity", str(settings.model_complexity)], check=True)
        labels = dict(np.load(result))
    meta = {
        "reference": "BlazePose (mediapipe pose_landmark_full), static-image mode, on a square crop of the "
                     "full-resolution frame around the teacher's person box; COCO-17 of its 33 landmarks",
        "mediapipe": str(labels["mediapipe_version"]), "dataset": str(dataset_root),
        "settings": asdict(settings), "persons": len(split.arrays["frame"]), "labelled": len(rows),
        "sampling": "all test person-frames" if settings.every == 1 else
                    f"person-frames whose frame number is a multiple of {settings.every}, in every scene",
        "blazepose_seconds": float(labels["seconds"]), "seconds": round(time.time() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".tmp.npz")
    np.savez(temporary, rows=rows, source=split.arrays["source"][rows], frame=split.arrays["frame"][rows],
             box=split.arrays["box"][rows], squares=squares, keypoints=labels["keypoints"],
             visibility=labels["visibility"], detected=labels["detected"],
             meta=np.array(json.dumps(meta)))
    temporary.replace(out)  # never a half-written cache
    return meta


# --- the reference, as the report uses it -------------------------------------------------------------------

@dataclass
class Reference:
    """BlazePose labels per teacher test row (full-resolution pixels); rows it did not label are unfound."""

    keypoints: np.ndarray   # (N, 17, 2), NaN where BlazePose returned no pose
    visibility: np.ndarray  # (N, 17) BlazePose's per-joint visibility (0 where no pose)
    mask: np.ndarray        # (N, 17) joint visible and the person found
    found: np.ndarray       # (N,) BlazePose found this person
    labelled: np.ndarray    # (N,) the row was in the sample BlazePose ran on
    meta: dict


def load_reference(path: Path, teacher: SplitData, person_visibility: float = PERSON_VISIBILITY,
                   joint_visibility: float = JOINT_VISIBILITY) -> Reference:
    """The cached labels on the teacher split's rows. "Found": BlazePose returned a pose whose mean COCO-17
    visibility is at least `person_visibility` and whose visible joints centre inside the teacher's box (the
    crop may show a second person, and then BlazePose may have labelled that one)."""
    stored = np.load(path)
    count = len(teacher.arrays["frame"])
    rows = stored["rows"]
    if len(rows) and (rows.max() >= count or not np.array_equal(teacher.arrays["frame"][rows], stored["frame"])
                      or not np.array_equal(teacher.arrays["source"][rows], stored["source"])):
        raise ValueError(f"{path} was made from another teacher dataset: rerun exlow-pose-data blazepose")
    keypoints = np.full((count, 17, 2), np.nan, np.float32)
    visibility = np.zeros((count, 17), np.float32)
    labelled = np.zeros(count, bool)
    keypoints[rows], visibility[rows], labelled[rows] = stored["keypoints"], stored["visibility"], True
    detected = labelled & ~np.isnan(keypoints).any(axis=(1, 2))
    joints = (visibility >= joint_visibility) & detected[:, None]
    box = teacher.arrays["box"]
    centre = np.where(joints[..., None], np.nan_to_num(keypoints), 0).sum(1) / np.maximum(joints.sum(1), 1)[:, None]
    inside = ((centre[:, 0] >= box[:, 0]) & (centre[:, 0] <= box[:, 2]) & (centre[:, 1] >= box[:, 1])
              & (centre[:, 1] <= box[:, 3]))
    visible = detected & (visibility.mean(1) >= person_visibility)
    found = visible & inside
    meta = json.loads(str(stored["meta"]))
    meta.update(person_visibility=person_visibility, joint_visibility=joint_visibility,
                detected=int(detected.sum()), visible=int(visible.sum()), found=int(found.sum()),
                rejected_off_centre=int((visible & ~inside).sum()))
    return Reference(keypoints, visibility, joints & found[:, None], found, labelled, meta)


def agreement(reference: Reference, teacher: SplitData, scene_rows: np.ndarray) -> dict[str, dict]:
    """How far the two references differ, at full resolution: the teacher's keypoints scored against BlazePose
    (OKS over the joints both label, object area = the teacher's box) per scene and the mean over scenes."""
    box = teacher.arrays["box"].astype(np.float64)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    both = reference.mask & teacher.arrays["mask"]
    oks = object_keypoint_similarity(teacher_pixels(teacher), np.nan_to_num(reference.keypoints), both, area)

    out: dict[str, dict] = {}
    for scene in dict.fromkeys(scene_rows.tolist()):
        chosen = scene_rows == scene
        scored = chosen & reference.found & ~np.isnan(oks)
        out[scene] = {"persons": int((chosen & reference.labelled).sum()),
                      "found_share": 100.0 * float(reference.found[chosen & reference.labelled].mean())
                      if (chosen & reference.labelled).any() else float("nan"),
                      "scored": int(scored.sum()),
                      "mean_oks": float(oks[scored].mean()) if scored.any() else float("nan"),
                      "oks_accuracy": oks_accuracy(oks[scored])}
    scenes = list(out)
    out["mean over scenes"] = {k: float(np.nanmean([out[s][k] for s in scenes]))
                               for k in ("found_share", "mean_oks", "oks_accuracy")}
    return out


def match_tiny_rows(tiny: SplitData, tiny_sources: list[dict], teacher: SplitData, teacher_sources: list[dict]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For each tiny row: the teacher row of the same person-frame (-1 if none) and the clip's scale.

    scene_dataset shrinks each clip by scale = H / median person height and stores the teacher's box times
    scale as `label_box`; a person-frame is the same source (by name) and frame with the teacher box that,
    scaled, equals label_box."""
    by_name = {s["name"]: i for i, s in enumerate(teacher_sources)}
    source_map = np.array([by_name.get(s["name"], -1) for s in tiny_sources])
    median = np.array([s.get("median_person_px") or np.nan for s in tiny_sources], np.float64)
    scale = tiny.arrays["height"].astype(np.float64) / median[tiny.arrays["source"]]
    index: dict[tuple[int, int], list[int]] = {}
    for row, key in enumerate(zip(teacher.arrays["source"].tolist(), teacher.arrays["frame"].tolist(),
                                  strict=True)):
        index.setdefault(key, []).append(row)
    match = np.full(len(scale), -1, np.int64)
    teacher_box = teacher.arrays["box"].astype(np.float64)
    for row, (source, frame, label_box) in enumerate(zip(source_map[tiny.arrays["source"]].tolist(),
                                                         tiny.arrays["frame"].tolist(),
                                                         tiny.arrays["label_box"].astype(np.float64), strict=True)):
        candidates = index.get((source, frame), [])
        if not candidates:
            continue
        error = np.abs(teacher_box[candidates] * scale[row] - label_box).max(axis=1)
        if error.min() <= BOX_MATCH_PX:
            match[row] = candidates[int(error.argmin())]
    return match, scale


def tiny_reference_split(tiny: SplitData, match: np.ndarray, scale: np.ndarray, keypoints_px: np.ndarray,
                         mask: np.ndarray) -> SplitData:
    """The tiny split with its labels replaced by full-resolution reference keypoints (per teacher row), scaled
    down and put in each tiny row's crop coordinates exactly as scene_dataset does with the teacher's
    (normalise_keypoints(xy * scale, region)); rows without a matched, found reference have no labelled joint."""
    arrays = dict(tiny.arrays)
    matched = match >= 0
    region = tiny.arrays["region"].astype(np.float64)
    points = np.zeros((len(match), 17, 2), np.float32)
    source = np.nan_to_num(keypoints_px[np.maximum(match, 0)].astype(np.float64)) * scale[:, None, None]
    for row in np.flatnonzero(matched):
        points[row] = normalise_keypoints(source[row], SquareRegion(*map(int, region[row])))
    labelled = mask[np.maximum(match, 0)] & matched[:, None]
    arrays["keypoints"] = np.where(labelled[..., None], points, 0).astype(np.float32)
    arrays["mask"] = labelled
    return SplitData(arrays)


# --- contact sheet ------------------------------------------------------------------------------------------

def _colour(index: int) -> tuple[int, int, int]:
    from .contact_sheet import LEFT, MIDDLE, RIGHT

    name = COCO17_NAMES[index]
    return LEFT if name.startswith("left_") else RIGHT if name.startswith("right_") else MIDDLE


def draw_skeleton(image: np.ndarray, points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """COCO-17 limbs and joints on an RGB image (points in its pixels), left joints in one colour and right in
    another (contact_sheet's colours), so a swapped left/right or a wrong joint order shows."""
    image = image.copy()
    fixed = np.round(np.nan_to_num(points) * 16).astype(np.int32)  # 4 fractional bits for cv2's shift
    for a, b in COCO17_LIMBS:
        if mask[a] and mask[b]:
            colour = _colour(a) if _colour(a) == _colour(b) else (245, 245, 245)
            cv2.line(image, tuple(fixed[a]), tuple(fixed[b]), (0, 0, 0), 4, cv2.LINE_AA, shift=4)
            cv2.line(image, tuple(fixed[a]), tuple(fixed[b]), colour, 2, cv2.LINE_AA, shift=4)
    for joint in np.flatnonzero(mask):
        cv2.circle(image, tuple(fixed[joint]), 4 * 16, (0, 0, 0), -1, cv2.LINE_AA, shift=4)
        cv2.circle(image, tuple(fixed[joint]), 3 * 16, _colour(int(joint)), -1, cv2.LINE_AA, shift=4)
    return image


def check_sheet(dataset_root: Path, reference_path: Path, out: Path, per_scene: int = 4, tile: int = 240) -> None:
    """Per scene, `per_scene` evenly spaced labelled person-frames: the crop with the teacher's skeleton beside
    the same crop with BlazePose's, captioned with the OKS of the teacher against BlazePose."""
    dataset = ExLowDataset(dataset_root)
    split = dataset.split("test")
    reference = load_reference(reference_path, split)

    scenes = scene_of_rows(dataset, split)
    teacher_px = teacher_pixels(split)
    box = split.arrays["box"].astype(np.float64)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    oks = object_keypoint_similarity(teacher_px, np.nan_to_num(reference.keypoints),
                                     reference.mask & split.arrays["mask"], area)
    picked = []
    for scene in dict.fromkeys(scenes.tolist()):
        candidates = np.flatnonzero((scenes == scene) & reference.labelled)
        picked += candidates[np.linspace(0, len(candidates) - 1, min(per_scene, len(candidates))).astype(int)
                             ].tolist() if len(candidates) else []
    picked_rows = np.array(sorted(picked), np.int64)
    settings = Settings(**json.loads(str(np.load(reference_path)["meta"]))["settings"])
    crops, squares = collect_crops(dataset, split, picked_rows, settings)
    tiles = []
    for crop, square, row in zip(crops, squares, picked_rows, strict=True):
        factor = settings.crop_pixels / square[2]  # full-resolution pixels -> crop pixels
        blazepose_joints = (reference.visibility[row] >= JOINT_VISIBILITY) & ~np.isnan(reference.keypoints[row, :, 0])
        panels = [draw_skeleton(crop, (teacher_px[row] - square[:2]) * factor, split.arrays["mask"][row]),
                  draw_skeleton(crop, (reference.keypoints[row] - square[:2]) * factor, blazepose_joints)]
        pair = cv2.resize(np.concatenate(panels, axis=1), (2 * tile, tile), interpolation=cv2.INTER_AREA)
        caption = np.full((18, 2 * tile, 3), 255, np.uint8)
        status = f"OKS {oks[row]:.2f}" if reference.found[row] else "BlazePose: not found"
        cv2.putText(caption, f"{scenes[row]} f{split.arrays['frame'][row]}: teacher | BlazePose  {status}",
                    (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([caption, pair], axis=0))
    columns = 3
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (tile + 22), columns * (2 * tile + 6), 3), 255, np.uint8)
    for number, image in enumerate(tiles):
        y, x = (number // columns) * (tile + 22), (number % columns) * (2 * tile + 6)
        sheet[y:y + image.shape[0], x:x + image.shape[1]] = image
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


# --- command --------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", type=Path, default=REPO / "results" / "datasets" / "scenes_test",
                        help="unseen-scene datasets (exlow-pose-data scenes --roles test); labels its teacher/ test "
                             "person-frames")
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON,
                        help="the interpreter with mediapipe 0.10.21 (scripts/setup_blazepose.sh)")
    parser.add_argument("--every", type=int, default=1,
                        help="label only frames whose number is a multiple of this (a deterministic subsample)")
    parser.add_argument("--margin", type=float, default=Settings.margin)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--force", action="store_true", help="relabel even when the cache has these labels")
    parser.add_argument("--sheet", type=Path, default=REPO / "results" / "report" / "blazepose_check.png",
                        help="contact sheet of crops with both skeletons ('none': skip)")


def run(args: argparse.Namespace) -> int:
    root = args.scenes / "teacher"
    if not (root / "manifest.json").is_file():
        print(f"{root} has no dataset: run exlow-pose-data scenes --roles test --out {args.scenes}", file=sys.stderr)
        return 2
    settings = Settings(margin=args.margin, every=args.every)
    out = cache_path(root, settings, args.cache)
    if out.is_file() and not args.force:
        print(f"cached: {out}")
    else:
        if not args.python.is_file():
            print(f"{args.python} not found: run bash scripts/setup_blazepose.sh (never install mediapipe in .venv)",
                  file=sys.stderr)
            return 2
        meta = label(root, settings, args.python, out)
        print(f"labelled {meta['labelled']} of {meta['persons']} person-frames in {meta['seconds']:.0f} s "
              f"(BlazePose {meta['blazepose_seconds']:.0f} s): {out}")
    teacher = ExLowDataset(root).split("test")
    reference = load_reference(out, teacher)
    print(f"BlazePose found {reference.found.sum()} of {reference.labelled.sum()} labelled person-frames "
          f"(detected {reference.meta['detected']}, rejected off-centre {reference.meta['rejected_off_centre']})")
    if str(args.sheet) != "none":
        check_sheet(root, out, args.sheet)
        print(f"wrote {args.sheet}")
    return 0
