"""`exlow-pose-data synthetic`: synthetic ex-low tracks with exact ground truth.

Each track is one motion-clip segment (a subject drawn uniformly, then one of its clips by duration;
resampled to 10-30 fps, mirrored half the time), one body shape and appearance, one
virtual camera (fixed, or panning to follow the person) and one background view, sometimes with a
static occluder (post, car, wall) between camera and person. Frames where the person is not usably in
view are left out (a gap in frame numbers), so no 5-frame window spans them.

Splits: motion by subject with the motion corpus's mapping (motion/corpus.py, default 01, 02 train and
03 val; CMU has no test subject there, so the synthetic test split is empty unless --cmu-splits names
one), backgrounds by time block of each video (backgrounds.py). Track randomness comes from
(seed, split, track number) alone, so the dataset is the same for any number of workers.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from exlow_pose_ros.core.provenance import file_sha256

from ..dataset_format import SPLITS, WINDOW_LENGTH, DatasetWriter, parse_fractions
from ..motion import cmu_mocap
from ..motion.cameras import HORIZONTAL_FOV_DEG, PROFILES, PinholeCamera, look_at, project
from ..motion.clip import CLIP_POINT_NAMES, MotionClip3D
from ..motion.corpus import CMU_LICENCE, DEFAULT_CMU_SPLITS, parse_cmu_splits
from ..scenes import load_registry, video_licence
from . import backgrounds
from .body import build_body, sample_appearance, sample_shape
from .render import Effects, Occluder, render_frame, sample_effects

GENERATOR = "exlow_pose_training.synthetic.build"
GENERATOR_VERSION = 1
REPO = Path(__file__).resolve().parents[3]
DEFAULT_MOTION = REPO.parent / "shared" / "data" / "cmu_mocap" / "subjects"
DEFAULT_CACHE = REPO / "results" / "cache" / "synthetic_backgrounds"

PERSON_HEIGHT_PX = (12.0, 150.0)   # the ex-low range, person height in the source frame (log-uniform)
TRACK_FRAMES = (16, 64)
FPS_RANGE = (10.0, 30.0)
MIN_VISIBLE = 0.4       # a frame counts when this much of the silhouette is in view ...
MIN_KEYPOINTS = 5       # ... with this many labelled keypoints
P_PANNING, P_OCCLUDER, P_BORDER, P_MIRROR = 0.2, 0.25, 0.1, 0.5
_I = {name: index for index, name in enumerate(CLIP_POINT_NAMES)}
# Mirroring a motion swaps the body's sides: left_x <-> right_x.
MIRROR = np.array([_I[n.replace("left_", "right_") if n.startswith("left_") else n.replace("right_", "left_")]
                   for n in CLIP_POINT_NAMES])


@dataclass(frozen=True)
class TrackCamera:
    """The camera of each frame (a panning camera turns), and the background's shift per frame."""

    cameras: list[PinholeCamera]
    shifts: np.ndarray   # (T, 2) px
    info: dict


def segment(rng: np.random.Generator, clip: MotionClip3D) -> tuple[np.ndarray, dict]:
    """A random stretch of `clip` resampled to a random frame rate: points (T, P, 3)."""
    fps = float(rng.uniform(*FPS_RANGE))
    wanted = int(rng.integers(TRACK_FRAMES[0], TRACK_FRAMES[1] + 1))
    available = int((clip.num_frames - 1) / clip.fps * fps) + 1
    count = min(wanted, available)
    span = (count - 1) / fps
    start = float(rng.uniform(0.0, (clip.num_frames - 1) / clip.fps - span))
    first = int(start * clip.fps)
    last = min(clip.num_frames, math.ceil((start + span) * clip.fps) + 2)
    points = cmu_mocap.resample(clip.points[first:last].astype(np.float64), clip.fps, fps, start - first / clip.fps)
    points = points[:count]
    mirrored = bool(rng.random() < P_MIRROR)
    if mirrored:
        points = points[:, MIRROR] * np.array([1.0, -1.0, 1.0])
    return points, {"clip": clip.name, "fps": round(fps, 3), "start_s": round(start, 3), "mirrored": mirrored}


def _offset_rotation(ray: np.ndarray) -> np.ndarray:
    """Rotation taking the optical axis (0, 0, 1) to unit `ray` (camera frame), by the shortest turn."""
    axis = np.cross([0.0, 0.0, 1.0], ray)
    sine, cosine = np.linalg.norm(axis), ray[2]
    if sine < 1e-12:
        return np.eye(3)
    k = axis / sine
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sine * cross + (1 - cosine) * cross @ cross


def sample_track_camera(rng: np.random.Generator, points: np.ndarray, size: tuple[int, int]) -> TrackCamera:
    """A camera whose frame (`size`) shows the person PERSON_HEIGHT_PX tall somewhere in the image."""
    width, height = size
    profile = str(rng.choice(list(PROFILES), p=[0.6, 0.4]))
    fov = np.deg2rad(rng.uniform(*HORIZONTAL_FOV_DEG))
    focal = width / 2 / math.tan(fov / 2)
    pelvis = points[:, _I["pelvis"]]
    # Vertical extent of the body: the head's volume reaches ~0.12 m above the highest point, the soles below.
    extent = float(np.median(points[..., 2].max(axis=1) - points[..., 2].min(axis=1))) + 0.12
    pixel_height = math.exp(rng.uniform(*np.log(PERSON_HEIGHT_PX)))
    distance = focal * max(extent, 0.5) / pixel_height
    camera_z = rng.uniform(*PROFILES[profile]["height"])
    target = np.array([*pelvis[:, :2].mean(axis=0), float(np.median(pelvis[:, 2]))])
    horizontal = math.sqrt(max(distance ** 2 - (camera_z - target[2]) ** 2, 1.0))
    yaw = rng.uniform(0, 2 * np.pi)
    position = target + np.array([horizontal * math.cos(yaw), horizontal * math.sin(yaw), 0.0])
    position[2] = camera_z
    # Where the person appears: anywhere in the image, sometimes at (or over) its border.
    if rng.random() < P_BORDER:
        u = rng.choice([rng.uniform(-0.04, 0.06), rng.uniform(0.94, 1.04)]) * width
    else:
        u = rng.uniform(0.1, 0.9) * width
    v = rng.uniform(0.3, 0.8) * height
    ray = np.array([(u - width / 2) / focal, (v - height / 2) / focal, 1.0])
    offset = _offset_rotation(ray / np.linalg.norm(ray))

    def camera(aim: np.ndarray) -> PinholeCamera:
        rotation = offset @ look_at(position, aim)
        return PinholeCamera(width=width, height=height, fx=focal, fy=focal, cx=width / 2, cy=height / 2,
                             rotation=rotation, translation=-rotation @ position)

    panning = bool(rng.random() < P_PANNING)
    if panning:
        # A robot or PTZ camera turning after the person with some lag (exponential smoothing).
        follow = rng.uniform(0.05, 0.3)
        aims, aim = [], np.array([*pelvis[0, :2], target[2]])
        for point in pelvis:
            aim = aim + follow * (np.array([point[0], point[1], target[2]]) - aim)
            aims.append(aim.copy())
        cameras = [camera(a) for a in aims]
    else:
        cameras = [camera(target)] * len(points)
    # A panning camera moves the (distant) background like a fixed direction: the first optical axis.
    axis = cameras[0].rotation[2]
    shifts = np.array([[c.fx * (c.rotation @ axis)[0] / (c.rotation @ axis)[2],
                        c.fy * (c.rotation @ axis)[1] / (c.rotation @ axis)[2]] for c in cameras])
    shifts -= shifts[0]
    info = {"profile": profile, "hfov_deg": round(float(np.degrees(fov)), 2), "size": [width, height],
            "height_m": round(float(camera_z), 3), "distance_m": round(float(horizontal), 2),
            "person_px": round(pixel_height, 1), "panning": panning}
    return TrackCamera(cameras, shifts, info)


def _box_corners(centre: np.ndarray, yaw: float, half: tuple[float, float, float]) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * np.array(half)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return corners @ rotation.T + centre


def sample_occluder(rng: np.random.Generator, points: np.ndarray, camera: PinholeCamera) -> Occluder | None:
    """A post, car or wall on the ground between the camera and where the person is at a random frame."""
    person = points[rng.integers(len(points)), _I["pelvis"]]
    eye = camera.position
    toward = np.array([person[0] - eye[0], person[1] - eye[1], 0.0])
    distance = float(np.linalg.norm(toward))
    toward /= max(distance, 1e-9)
    side = np.array([-toward[1], toward[0], 0.0])
    kind = str(rng.choice(["post", "car", "wall"], p=[0.45, 0.3, 0.25]))
    if kind == "post":
        near = distance * rng.uniform(0.35, 0.92)
        if near < 0.8:
            return None
        base = eye + toward * near + side * rng.normal(0, 0.15)
        base[2] = 0.0
        half = rng.uniform(0.04, 0.15)
        tall = rng.uniform(2.0, 6.0)
        grey = rng.uniform(40, 170)
        colour = tuple(float(v) for v in np.clip(grey * rng.normal(1, 0.12, 3), 0, 255))
        corners = _box_corners(base + np.array([0.0, 0.0, tall / 2]), rng.uniform(0, np.pi), (half, half, tall / 2))
        return Occluder(kind, ((corners, colour),))
    length = rng.uniform(3.8, 4.8) if kind == "car" else rng.uniform(3.0, 10.0)
    depth_half = rng.uniform(0.8, 0.95) if kind == "car" else rng.uniform(0.1, 0.3)
    near = distance - depth_half - rng.uniform(0.7, 3.0)
    if near < 1.5:
        return None
    centre = eye + toward * near + side * rng.normal(0, length / 3)
    yaw = math.atan2(side[1], side[0]) + rng.normal(0, 0.3 if kind == "wall" else 1.0)
    if kind == "wall":
        tall = rng.uniform(0.5, 1.3)
        colour = tuple(float(v) for v in rng.choice([(120, 115, 105), (150, 80, 60), (50, 85, 40), (170, 165, 150)])
                       * rng.uniform(0.8, 1.15))
        return Occluder(kind, ((_box_corners(np.array([centre[0], centre[1], tall / 2]), yaw,
                                             (length / 2, depth_half, tall / 2)), colour),))
    paint = tuple(float(v) for v in np.clip(rng.choice([(200, 200, 200), (30, 30, 35), (150, 20, 25), (40, 60, 120),
                                                         (120, 120, 125), (235, 235, 235)]) * rng.uniform(0.8, 1.1),
                                            0, 255))
    glass = (35.0, 40.0, 50.0)
    body_top, roof = rng.uniform(0.85, 1.0), rng.uniform(1.35, 1.6)
    return Occluder(kind, (
        (_box_corners(np.array([centre[0], centre[1], 0.16]), yaw, (length / 2 - 0.1, depth_half - 0.05, 0.16)),
         (25.0, 25.0, 25.0)),  # tyres and the shadow under the car
        (_box_corners(np.array([centre[0], centre[1], (0.3 + body_top) / 2]), yaw,
                      (length / 2, depth_half, (body_top - 0.3) / 2)), paint),
        (_box_corners(np.array([centre[0], centre[1], (body_top + roof) / 2]), yaw,
                      (length * 0.27, depth_half * 0.9, (roof - body_top) / 2)), glass)))


def make_track(rng: np.random.Generator, clips: list[MotionClip3D], plates: list[backgrounds.Plate]
               ) -> tuple[dict[str, np.ndarray] | None, dict]:
    """One track's frame arrays (None if fewer than a window's frames are usable) and how it was made."""
    # Subjects equally often (CMU 01 has four times the footage of 02), clips by duration within one.
    subjects = sorted({clip.subject for clip in clips})
    subject = subjects[rng.integers(len(subjects))]
    own = [clip for clip in clips if clip.subject == subject]
    weights = np.array([clip.num_frames / clip.fps for clip in own])
    clip = own[rng.choice(len(own), p=weights / weights.sum())]
    points, motion = segment(rng, clip)
    shape, look = sample_shape(rng), sample_appearance(rng)
    body = build_body(points, shape, look)
    plate = plates[rng.integers(len(plates))]
    view = backgrounds.sample_view(rng, plate)
    track_camera = sample_track_camera(rng, body.points, view.size)
    effects: Effects = sample_effects(rng)
    occluder = sample_occluder(rng, body.points, track_camera.cameras[0]) if rng.random() < P_OCCLUDER else None
    info = {"clip": clip.name, "subject": clip.subject, "video": plate.video, "plate_split": plate.split,
            "motion": motion, "camera": track_camera.info, "occluder": occluder.kind if occluder else None,
            "carried": look.carried, "lower": look.lower}

    pelvis = body.points[:, _I["pelvis"]]
    image_pelvis = np.array([project(c, p)[0] for c, p in zip(track_camera.cameras, pelvis, strict=True)])
    velocity = np.gradient(image_pelvis, axis=0) if len(points) > 1 else np.zeros_like(image_pelvis)
    rows = []
    for t, camera in enumerate(track_camera.cameras):
        rendered = render_frame(body, t, camera, view, effects, rng, shift=tuple(track_camera.shifts[t]),
                                velocity=velocity[t], occluder=occluder, frame=t)
        if rendered is None or rendered.visible_fraction < MIN_VISIBLE or rendered.mask.sum() < MIN_KEYPOINTS:
            continue
        rows.append((t, rendered))
    if len(rows) < WINDOW_LENGTH:
        return None, info
    arrays = {
        "keypoints": np.stack([r.keypoints for _, r in rows]).astype(np.float32),
        "mask": np.stack([r.mask for _, r in rows]),
        "box": np.stack([r.box for _, r in rows]).astype(np.float32),
        "region": np.array([(r.region.x0, r.region.y0, r.region.side) for _, r in rows], dtype=np.int32),
        "score": np.ones(len(rows), dtype=np.float32),
        "frame": np.array([t for t, _ in rows], dtype=np.int64),
        "crops": np.stack([r.crop for _, r in rows]),
    }
    info["person_px"] = round(float(np.median(arrays["box"][:, 3] - arrays["box"][:, 1])), 1)
    return arrays, info


# Worker state, set once per process by _init_worker.
_CLIPS: dict[str, list[MotionClip3D]] = {}
_PLATES: dict[str, list[backgrounds.Plate]] = {}


def _init_worker(clips: dict[str, list[MotionClip3D]], plates: dict[str, list[backgrounds.Plate]]) -> None:
    global _CLIPS, _PLATES
    _CLIPS, _PLATES = clips, plates
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only fight over them


def _track_job(job: tuple[int, str, int]) -> tuple[str, int, dict[str, np.ndarray] | None, dict]:
    seed, split, number = job
    rng = np.random.default_rng([seed, SPLITS.index(split), number])
    arrays, info = make_track(rng, _CLIPS[split], _PLATES[split])
    return split, number, arrays, info


def _windows(arrays: dict[str, np.ndarray]) -> int:
    frames = arrays["frame"]
    starts = np.arange(len(frames) - WINDOW_LENGTH + 1)
    return int(np.sum(frames[starts + WINDOW_LENGTH - 1] - frames[starts] == WINDOW_LENGTH - 1))


def build(out: Path, clips: list[MotionClip3D], plates: list[backgrounds.Plate], windows: int, seed: int = 0,
          workers: int = 1, subject_splits: dict[str, str] | None = None,
          fractions: dict[str, float] | None = None, provenance: dict | None = None, progress: bool = True) -> dict:
    """Render tracks until each split holds its share of `windows`; write the dataset; return the manifest.

    `subject_splits` maps a clip's subject ("cmu_01" or "01") to a split; `fractions` shares the
    windows among splits (splits with a share need clips and plates of their own).
    """
    subject_splits = {k.removeprefix("cmu_"): v for k, v in (subject_splits or {}).items()}
    clips_by_split = {s: [c for c in clips if subject_splits.get(c.subject.removeprefix("cmu_")) == s] for s in SPLITS}
    plates_by_split = {s: [p for p in plates if p.split == s] for s in SPLITS}
    fractions = fractions or {"train": 0.85, "val": 0.15, "test": 0.0}
    targets = {s: math.ceil(windows * fractions.get(s, 0.0)) for s in SPLITS}
    for split, target in targets.items():
        if target and not (clips_by_split[split] and plates_by_split[split]):
            raise ValueError(f"split {split} should get {target} windows but has no motion clips or no background "
                             f"plates (subjects {sorted({c.subject for c in clips_by_split[split]})})")
    writer = DatasetWriter(out, "synthetic", GENERATOR, provenance={
        **(provenance or {}),
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "windows_requested": windows,
        "split_fractions": fractions,
        "motion": {"subject_splits": subject_splits,
                   "clips": {s: [c.name for c in clips_by_split[s]] for s in SPLITS}},
        "backgrounds": [p.describe() for p in plates],
        "background_splits": "time blocks of each video: " + ", ".join(
            f"{s} {f:.0%}" for s, f in backgrounds.BLOCK_FRACTIONS.items()) + " (as teacher_dataset --split-by time)",
        "ground_truth": "exact projections of the clip's COCO-17 points; mask false outside the frame or behind an "
                        "occluder (post, car, wall), true when self-occluded or behind a carried bag (as COCO)",
        "box": "bounding box of the rendered silhouette (person and carried object) not hidden by an occluder, "
               "clipped to the frame, at the exposure's centre (before motion blur)",
        "clip_sampling": "subject uniformly among the split's subjects, then a clip by duration, a random stretch",
        "ranges": {"person_px": PERSON_HEIGHT_PX, "track_frames": TRACK_FRAMES, "fps": FPS_RANGE,
                   "p_panning": P_PANNING, "p_occluder": P_OCCLUDER, "p_border": P_BORDER, "p_mirror": P_MIRROR},
    })
    sources: dict[tuple[str, str, str], int] = {}
    stats = {s: {"tracks_tried": 0, "tracks_kept": 0} for s in SPLITS}
    started = time.time()
    total = sum(targets.values())
    bar = tqdm(total=total, unit="window", desc="synthetic", disable=not progress, smoothing=0.05)
    pool = None
    if workers > 1:
        # Spawned, not forked: OpenCV's thread pool in this process would deadlock a forked child.
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker,
                                                         initargs=(clips_by_split, plates_by_split))
    else:
        _init_worker(clips_by_split, plates_by_split)
    try:
        for split in SPLITS:
            done, number = 0, 0
            while done < targets[split]:
                # A batch sized from the windows still missing (about 30 per track), so little is wasted.
                batch = max(workers * 2, int((targets[split] - done) / 28) + workers)
                jobs = [(seed, split, n) for n in range(number, number + batch)]
                number += batch
                results = pool.imap(_track_job, jobs, chunksize=2) if pool else map(_track_job, jobs)
                for _, _, arrays, info in results:
                    stats[split]["tracks_tried"] += 1
                    if arrays is None or done >= targets[split]:
                        continue
                    key = (info["clip"], info["video"], split)
                    if key not in sources:
                        sources[key] = writer.add_source(f"{info['clip']}@{info['video']}", split, clip=info["clip"],
                                                         subject=info["subject"], video=info["video"],
                                                         background_block=info["plate_split"])
                    writer.add_track(sources[key], arrays)
                    stats[split]["tracks_kept"] += 1
                    added = _windows(arrays)
                    done += added
                    bar.update(min(added, total - bar.n))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    writer.provenance["track_stats"] = stats
    writer.provenance["render_seconds"] = round(time.time() - started, 1)
    return writer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new dataset folder")
    parser.add_argument("--windows", type=int, default=100_000, help="5-frame windows to make, over all splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    parser.add_argument("--motion", type=Path, default=DEFAULT_MOTION,
                        help="CMU mocap subjects folder (ASF/AMC per subject); default ../shared beside the repo")
    parser.add_argument("--cmu-splits", type=parse_cmu_splits, default=parse_cmu_splits(DEFAULT_CMU_SPLITS),
                        metavar="SUBJECT=SPLIT,...",
                        help=f"split of each CMU subject, as the motion corpus (default {DEFAULT_CMU_SPLITS})")
    parser.add_argument("--fractions", type=parse_fractions, default=parse_fractions("train=0.85,val=0.15,test=0"),
                        help="share of the windows per split")
    parser.add_argument("--videos", type=Path, nargs="+", default=load_registry().background_videos(),
                        help="videos whose people-free plates are the backgrounds (default: the fixed-camera "
                             "training scenes of training/configs/scenes.yaml; never an unseen test scene)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder for the background plates")


def run(args: argparse.Namespace) -> int:
    started = time.time()
    for video in args.videos:
        if not video.is_file():
            print(f"background video {video} not found: run scripts/setup.sh, or pass --videos", file=sys.stderr)
            return 2
    if not args.motion.is_dir():
        print(f"motion folder {args.motion} not found: pass --motion", file=sys.stderr)
        return 2
    subjects = sorted(args.cmu_splits)
    clips = cmu_mocap.load_cmu_clips(args.motion, subjects=subjects)
    plates = backgrounds.load_plates(list(args.videos), args.cache)
    print(f"{len(clips)} clips, {len(plates)} background plates ready in {time.time() - started:.1f} s")
    provenance = {
        "method": "volumetric bodies (convex hulls of spheres around the clip skeleton) with varied shapes, skin, "
                  "hair, clothes and carried bags, over people-free real video plates; shadows, lighting changes, "
                  "occluders, motion blur, defocus, sensor noise, JPEG; crops by exlow_pose_ros.core.crop",
        "motion_source": {"root": str(args.motion), "dataset": "CMU Graphics Lab Motion Capture Database",
                          "licence": CMU_LICENCE},
        "videos": [{"path": str(v), "sha256": file_sha256(v),
                    "licence": video_licence(v)} for v in args.videos],
        "command": " ".join(sys.argv),
    }
    manifest = build(args.out, clips, plates, args.windows, seed=args.seed, workers=args.workers,
                     subject_splits=args.cmu_splits, fractions=args.fractions, provenance=provenance)
    for split, counts in manifest["splits"].items():
        print(f"{split:>5}: {counts['windows']:7d} windows {counts['tracks']:5d} tracks {counts['frames']:7d} frames")
    print(f"dataset written to {args.out} in {time.time() - started:.1f} s")
    return 0
