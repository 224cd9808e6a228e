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

`--preset v1` (default) renders exactly what generator version 1 did. `--preset wide` (issue 11) widens it:
camera views from steep high surveillance to close handheld (VIEWS; yaw uniform over 360 deg), an anchor
frame drawn by pose class (upright, arms up, bent, low: sitting/squatting) instead of by clip duration,
shoulders moved down to COCO height, upper-body framing, desks and other people as occluders, clean sharp
cameras, and each background video equally often; `--backgrounds all-train` adds plates of every training
scene (single frames with the teacher's people painted over where the camera moves). The manifest's
provenance counts what the kept tracks show (kept_tracks_show).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from ..scenes import SceneRegistry, load_registry, video_licence
from . import backgrounds
from .body import build_body, sample_appearance, sample_shape
from .render import Effects, Occluder, PersonOccluder, render_frame, sample_effects

GENERATOR = "exlow_pose_training.synthetic.build"
GENERATOR_VERSION = 2  # 2: the Variety knobs (preset v1 renders what version 1 did)
REPO = Path(__file__).resolve().parents[3]
DEFAULT_MOTION = REPO.parent / "shared" / "data" / "cmu_mocap" / "subjects"
DEFAULT_CACHE = REPO / "results" / "cache" / "synthetic_backgrounds"
DEFAULT_PERSON_BOXES = REPO / "results" / "datasets" / "scenes_train" / "teacher"

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


# Camera views of preset "wide" (issue 11: high surveillance, close handheld, side and back views). Each:
# elevation of the camera above the person's pelvis (deg, uniform; None: a height range in m instead) or its
# height (m), and the person's height in the source frame (px, log-uniform). Yaw is uniform over 360 deg
# around the person in every view, so the person is seen from the front, the side and the back alike.
VIEWS: dict[str, dict[str, tuple[float, float] | None]] = {
    "surveillance": {"height": PROFILES["surveillance"]["height"], "elevation": None, "person_px": (12.0, 150.0)},
    "high": {"height": None, "elevation": (25.0, 65.0), "person_px": (14.0, 160.0)},
    "robot": {"height": PROFILES["robot"]["height"], "elevation": None, "person_px": (12.0, 150.0)},
    "handheld": {"height": (1.2, 1.9), "elevation": None, "person_px": (50.0, 300.0)},
}
# Pose classes of a clip frame (pose_classes): the first that applies, in this order.
POSE_CLASSES = ("low", "bent", "arms_up", "upright")
LOW_THIGH_DEG = 55.0   # a thigh this far from vertical: sitting, squatting, kneeling, a high kick
BENT_TORSO_DEG = 35.0  # pelvis -> neck this far from vertical: bending over, leaning, lying
DESK_TOP = (0.68, 0.8)  # m
PERSON_OCCLUDER_NEAR = (0.35, 0.85)  # where the other person walks, as a share of the camera-person distance


@dataclass(frozen=True)
class Variety:
    """What tracks show beyond the version-1 renderer. Preset "v1" (the default) changes nothing: same
    random draws, same data. Preset "wide" (issue 11) widens views, poses, framing, occluders, sharpness."""

    views: dict[str, float] | None = None        # view -> probability (VIEWS); None: version 1's two profiles
    pose_mix: dict[str, float] | None = None     # pose class -> probability of the track's anchor frame; None:
    #                                              version 1 (subject uniformly, clip by duration, random stretch)
    shoulder_drop: float = 0.0    # m the shoulder points move down the torso (CMU clavicle ends sit above COCO's)
    p_upper_body: float = 0.0     # framing with the hips at the frame's bottom edge (webcam, close handheld)
    p_desk: float = 0.0           # a desk or table just in front of the person (its top at DESK_TOP)
    p_person_occluder: float = 0.0  # another person walking between the camera and the person
    p_sharp: float = 0.0          # a clean camera: no defocus, short exposure, little noise, mild JPEG
    plates_by_video: bool = False  # each background video equally often (else each plate)
    preset: str = "v1"

    def describe(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, Variety] = {
    "v1": Variety(),
    "wide": Variety(views={"surveillance": 0.3, "high": 0.2, "robot": 0.2, "handheld": 0.3},
                    pose_mix={"upright": 0.5, "arms_up": 0.15, "bent": 0.15, "low": 0.2},
                    shoulder_drop=0.09, p_upper_body=0.12, p_desk=0.1, p_person_occluder=0.15, p_sharp=0.35,
                    plates_by_video=True, preset="wide"),
}


def _angle_from_vertical(vectors: np.ndarray) -> np.ndarray:
    norm = np.maximum(np.linalg.norm(vectors, axis=-1), 1e-9)
    return np.degrees(np.arccos(np.clip(vectors[..., 2] / norm, -1.0, 1.0)))


def pose_classes(points: np.ndarray) -> np.ndarray:
    """Class index (into POSE_CLASSES) of each frame of clip points (T, P, 3), z up."""
    p = {name: points[:, index] for name, index in _I.items()}
    thigh = np.maximum(_angle_from_vertical(p["left_hip"] - p["left_knee"]),
                       _angle_from_vertical(p["right_hip"] - p["right_knee"]))
    torso = _angle_from_vertical(p["neck"] - p["pelvis"])
    arms = np.maximum(p["left_wrist"][:, 2], p["right_wrist"][:, 2]) > p["neck"][:, 2]
    out = np.full(len(points), POSE_CLASSES.index("upright"))
    out[arms] = POSE_CLASSES.index("arms_up")
    out[torso > BENT_TORSO_DEG] = POSE_CLASSES.index("bent")
    out[thigh > LOW_THIGH_DEG] = POSE_CLASSES.index("low")
    return out


def drop_shoulders(points: np.ndarray, drop: float) -> np.ndarray:
    """Points (T, P, 3) with both shoulders moved `drop` m along the neck -> pelvis direction."""
    if drop == 0.0:
        return points
    out = points.copy()
    down = out[:, _I["pelvis"]] - out[:, _I["neck"]]
    down /= np.maximum(np.linalg.norm(down, axis=-1, keepdims=True), 1e-9)
    for name in ("left_shoulder", "right_shoulder"):
        out[:, _I[name]] += drop * down
    return out

@dataclass(frozen=True)
class TrackCamera:
    """The camera of each frame (a panning camera turns), and the background's shift per frame."""

    cameras: list[PinholeCamera]
    shifts: np.ndarray   # (T, 2) px
    info: dict


def segment(rng: np.random.Generator, clip: MotionClip3D, anchor: int | None = None) -> tuple[np.ndarray, dict]:
    """A random stretch of `clip` resampled to a random frame rate: points (T, P, 3); with `anchor` (a clip
    frame), a stretch that holds that frame."""
    fps = float(rng.uniform(*FPS_RANGE))
    wanted = int(rng.integers(TRACK_FRAMES[0], TRACK_FRAMES[1] + 1))
    available = int((clip.num_frames - 1) / clip.fps * fps) + 1
    count = min(wanted, available)
    span = (count - 1) / fps
    if anchor is None:
        start = float(rng.uniform(0.0, (clip.num_frames - 1) / clip.fps - span))
    else:
        start = float(np.clip(anchor / clip.fps - rng.uniform(0.0, span), 0.0, (clip.num_frames - 1) / clip.fps - span))
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


def sample_track_camera(rng: np.random.Generator, points: np.ndarray, size: tuple[int, int],
                        variety: Variety | None = None) -> TrackCamera:
    """A camera whose frame (`size`) shows the person PERSON_HEIGHT_PX tall somewhere in the image (or as
    `variety.views` say: a view's height or elevation and person size)."""
    variety = variety or PRESETS["v1"]
    width, height = size
    if variety.views is None:
        profile = str(rng.choice(list(PROFILES), p=[0.6, 0.4]))
        view = {"height": PROFILES[profile]["height"], "elevation": None, "person_px": PERSON_HEIGHT_PX}
    else:
        names = sorted(variety.views)
        weights = np.array([variety.views[n] for n in names], float)
        profile = names[rng.choice(len(names), p=weights / weights.sum())]
        view = VIEWS[profile]
    fov = np.deg2rad(rng.uniform(*HORIZONTAL_FOV_DEG))
    focal = width / 2 / math.tan(fov / 2)
    pelvis = points[:, _I["pelvis"]]
    # Vertical extent of the body: the head's volume reaches ~0.12 m above the highest point, the soles below.
    extent = float(np.median(points[..., 2].max(axis=1) - points[..., 2].min(axis=1))) + 0.12
    pixel_height = math.exp(rng.uniform(*np.log(view["person_px"])))
    distance = focal * max(extent, 0.5) / pixel_height
    target = np.array([*pelvis[:, :2].mean(axis=0), float(np.median(pelvis[:, 2]))])
    if view["elevation"] is None:
        camera_z = rng.uniform(*view["height"])
        horizontal = math.sqrt(max(distance ** 2 - (camera_z - target[2]) ** 2, 1.0))
    else:
        elevation = np.deg2rad(rng.uniform(*view["elevation"]))
        camera_z = target[2] + distance * math.sin(elevation)
        horizontal = max(distance * math.cos(elevation), 1.0)
    yaw = rng.uniform(0, 2 * np.pi)
    position = target + np.array([horizontal * math.cos(yaw), horizontal * math.sin(yaw), 0.0])
    position[2] = camera_z
    # Where the person appears: anywhere in the image, sometimes at (or over) its border.
    if rng.random() < P_BORDER:
        u = rng.choice([rng.uniform(-0.04, 0.06), rng.uniform(0.94, 1.04)]) * width
    else:
        u = rng.uniform(0.1, 0.9) * width
    v = rng.uniform(0.3, 0.8) * height
    upper_body = bool(variety.p_upper_body > 0 and rng.random() < variety.p_upper_body)
    if upper_body:
        # Framed at the upper body: the pelvis at the frame's bottom edge, the legs below the frame.
        v = rng.uniform(0.9, 1.0) * height
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
            "person_px": round(pixel_height, 1), "panning": panning,
            "elevation_deg": round(float(np.degrees(math.atan2(camera_z - target[2], horizontal))), 2),
            "yaw_deg": round(float(np.degrees(yaw)) % 360.0, 2), "upper_body": upper_body,
            "view_deg": round(view_angle(points, position), 1)}
    return TrackCamera(cameras, shifts, info)


def view_angle(points: np.ndarray, position: np.ndarray) -> float:
    """Angle (deg, 0..180) between where the person faces (median over the track; from the shoulders and
    hips, z up) and the direction to the camera: 0 a front view, 90 a side view, 180 a back view."""
    left = (points[:, _I["left_shoulder"]] - points[:, _I["right_shoulder"]]
            + points[:, _I["left_hip"]] - points[:, _I["right_hip"]])
    forward = np.cross(left, [0.0, 0.0, 1.0])[:, :2]
    forward = np.median(forward / np.maximum(np.linalg.norm(forward, axis=1, keepdims=True), 1e-9), axis=0)
    toward = position[:2] - points[:, _I["pelvis"], :2].mean(axis=0)
    cosine = float(forward @ toward) / max(float(np.linalg.norm(forward) * np.linalg.norm(toward)), 1e-9)
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def _box_corners(centre: np.ndarray, yaw: float, half: tuple[float, float, float]) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * np.array(half)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return corners @ rotation.T + centre


def _ground_line(rng: np.random.Generator, points: np.ndarray, camera: PinholeCamera
                 ) -> tuple[float, np.ndarray, np.ndarray]:
    """On the ground, from the camera to the person at a random frame: distance (m), the unit direction and the
    unit direction to its side (where an occluder may stand)."""
    person = points[rng.integers(len(points)), _I["pelvis"]]
    eye = camera.position
    toward = np.array([person[0] - eye[0], person[1] - eye[1], 0.0])
    distance = float(np.linalg.norm(toward))
    toward /= max(distance, 1e-9)
    return distance, toward, np.array([-toward[1], toward[0], 0.0])


def sample_occluder(rng: np.random.Generator, points: np.ndarray, camera: PinholeCamera) -> Occluder | None:
    """A post, car or wall on the ground between the camera and where the person is at a random frame."""
    distance, toward, side = _ground_line(rng, points, camera)
    kind = str(rng.choice(["post", "car", "wall"], p=[0.45, 0.3, 0.25]))
    if kind == "post":
        near = distance * rng.uniform(0.35, 0.92)
        if near < 0.8:
            return None
        base = camera.position + toward * near + side * rng.normal(0, 0.15)
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
    centre = camera.position + toward * near + side * rng.normal(0, length / 3)
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


def sample_desk(rng: np.random.Generator, points: np.ndarray, camera: PinholeCamera) -> Occluder:
    """A desk or table just in front of the person (towards the camera): hides the legs of someone seated."""
    person = points[:, _I["pelvis"]].mean(axis=0)
    eye = camera.position
    toward = np.array([eye[0] - person[0], eye[1] - person[1], 0.0])
    toward /= max(float(np.linalg.norm(toward)), 1e-9)
    depth_half = rng.uniform(0.3, 0.45)
    centre = person + toward * (depth_half + rng.uniform(0.2, 0.45))
    top = rng.uniform(*DESK_TOP)
    yaw = math.atan2(toward[1], toward[0]) + np.pi / 2 + rng.normal(0, 0.15)
    colour = tuple(float(v) for v in np.clip(
        rng.choice([(150, 110, 70), (190, 170, 140), (210, 210, 205), (90, 90, 95), (60, 45, 35)])
        * rng.uniform(0.8, 1.15), 0, 255))
    return Occluder("desk", ((_box_corners(np.array([centre[0], centre[1], top / 2]), yaw,
                                           (rng.uniform(0.5, 1.0), depth_half, top / 2)), colour),))


def sample_person_occluder(rng: np.random.Generator, clips: list[MotionClip3D], points: np.ndarray,
                           camera: PinholeCamera) -> PersonOccluder | None:
    """Another person from the split's clips, walking its own motion between the camera and the person."""
    clip = clips[rng.integers(len(clips))]
    other, _ = segment(rng, clip)
    if len(other) < len(points):  # a shorter stretch stands still at its end
        other = np.concatenate([other, np.repeat(other[-1:], len(points) - len(other), axis=0)])
    other = other[:len(points)]
    distance, toward, side = _ground_line(rng, points, camera)
    near = distance * rng.uniform(*PERSON_OCCLUDER_NEAR)
    if near < 1.2:
        return None
    where = camera.position + toward * near + side * rng.normal(0, 0.35)
    turn = rng.uniform(0, 2 * np.pi)
    c, s = math.cos(turn), math.sin(turn)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    middle = other[:, _I["pelvis"]].mean(axis=0) * np.array([1.0, 1.0, 0.0])
    other = (other - middle) @ rotation.T + np.array([where[0], where[1], 0.0])
    return PersonOccluder(build_body(other, sample_shape(rng), sample_appearance(rng)))


_POSE_INDEX: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def pose_index(clips: list[MotionClip3D]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip index, frame, pose class) of every frame of `clips` (cached per clip list)."""
    key = tuple(clip.name for clip in clips)
    if key not in _POSE_INDEX:
        classes = [pose_classes(clip.points.astype(np.float64)) for clip in clips]
        _POSE_INDEX[key] = (np.concatenate([np.full(len(c), i) for i, c in enumerate(classes)]),
                            np.concatenate([np.arange(len(c)) for c in classes]), np.concatenate(classes))
    return _POSE_INDEX[key]


def pick_clip(rng: np.random.Generator, clips: list[MotionClip3D], variety: Variety
              ) -> tuple[MotionClip3D, int | None, str | None]:
    """The track's clip, and with `variety.pose_mix` an anchor frame of a pose class drawn by the mix."""
    if variety.pose_mix is None:
        # Subjects equally often (CMU 01 has four times the footage of 02), clips by duration within one.
        subjects = sorted({clip.subject for clip in clips})
        subject = subjects[rng.integers(len(subjects))]
        own = [clip for clip in clips if clip.subject == subject]
        weights = np.array([clip.num_frames / clip.fps for clip in own])
        return own[rng.choice(len(own), p=weights / weights.sum())], None, None
    clip_of, frame_of, class_of = pose_index(clips)
    present = [name for name in POSE_CLASSES if variety.pose_mix.get(name, 0.0) > 0
               and np.any(class_of == POSE_CLASSES.index(name))]
    weights = np.array([variety.pose_mix[name] for name in present], float)
    wanted = present[rng.choice(len(present), p=weights / weights.sum())]
    frames = np.flatnonzero(class_of == POSE_CLASSES.index(wanted))
    pick = frames[rng.integers(len(frames))]
    return clips[int(clip_of[pick])], int(frame_of[pick]), wanted


def sharpen(rng: np.random.Generator, effects: Effects) -> Effects:
    """The effects of a clean, well-exposed camera (high-resolution footage shrunk, as in the teacher crops)."""
    return dataclasses.replace(effects, gain=float(rng.uniform(0.85, 1.2)), defocus=0.0,
                               exposure=float(rng.uniform(0.0, 0.15)), noise=float(rng.uniform(0.3, 2.0)),
                               flicker=0.0, jpeg=int(rng.integers(75, 96)) if rng.random() < 0.7 else 0)


def make_track(rng: np.random.Generator, clips: list[MotionClip3D], plates: list[backgrounds.Plate],
               variety: Variety | None = None) -> tuple[dict[str, np.ndarray] | None, dict]:
    """One track's frame arrays (None if fewer than a window's frames are usable) and how it was made."""
    variety = variety or PRESETS["v1"]
    clip, anchor, pose_class = pick_clip(rng, clips, variety)
    points, motion = segment(rng, clip, anchor)
    points = drop_shoulders(points, variety.shoulder_drop)
    shape, look = sample_shape(rng), sample_appearance(rng)
    body = build_body(points, shape, look)
    if variety.plates_by_video:
        videos = sorted({p.video for p in plates})
        video = videos[rng.integers(len(videos))]
        own_plates = [p for p in plates if p.video == video]
        plate = own_plates[rng.integers(len(own_plates))]
    else:
        plate = plates[rng.integers(len(plates))]
    view = backgrounds.sample_view(rng, plate)
    track_camera = sample_track_camera(rng, body.points, view.size, variety)
    effects: Effects = sample_effects(rng)
    occluder = sample_occluder(rng, body.points, track_camera.cameras[0]) if rng.random() < P_OCCLUDER else None
    sharp = False
    if variety.preset != "v1":
        if rng.random() < variety.p_sharp:
            effects, sharp = sharpen(rng, effects), True
        draw = rng.random()
        if draw < variety.p_desk:
            occluder = sample_desk(rng, body.points, track_camera.cameras[0])
        elif draw < variety.p_desk + variety.p_person_occluder:
            occluder = sample_person_occluder(rng, clips, body.points, track_camera.cameras[0]) or occluder
    info = {"clip": clip.name, "subject": clip.subject, "video": plate.video, "plate_split": plate.split,
            "motion": motion, "camera": track_camera.info, "occluder": occluder.kind if occluder else None,
            "carried": look.carried, "lower": look.lower, "pose_class": pose_class,
            "sharp": sharp}

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
_VARIETY: Variety = PRESETS["v1"]


def _init_worker(clips: dict[str, list[MotionClip3D]], plates: dict[str, list[backgrounds.Plate]],
                 variety: Variety | None = None) -> None:
    global _CLIPS, _PLATES, _VARIETY
    _CLIPS, _PLATES, _VARIETY = clips, plates, variety or PRESETS["v1"]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only fight over them


def _track_job(job: tuple[int, str, int]) -> tuple[str, int, dict[str, np.ndarray] | None, dict]:
    seed, split, number = job
    rng = np.random.default_rng([seed, SPLITS.index(split), number])
    arrays, info = make_track(rng, _CLIPS[split], _PLATES[split], _VARIETY)
    return split, number, arrays, info


def summary_add(summary: dict, info: dict) -> None:
    """Count what a kept track shows into `summary` (per split, into the manifest's provenance)."""
    camera = info["camera"]
    view = camera["view_deg"]
    facing = "front" if view < 45 else "back" if view > 135 else "side"
    for name, value in (("profile", camera["profile"]), ("facing", facing), ("pose_class", info["pose_class"]),
                        ("occluder", info["occluder"]), ("video", info["video"]), ("clip", info["clip"]),
                        ("upper_body", camera["upper_body"]), ("sharp", info["sharp"])):
        counts = summary.setdefault(name, {})
        counts[str(value)] = counts.get(str(value), 0) + 1
    for name, value in (("elevation_deg", camera["elevation_deg"]), ("person_px", camera["person_px"])):
        low, high = summary.get(name, (math.inf, -math.inf))
        summary[name] = (min(low, value), max(high, value))


def _windows(arrays: dict[str, np.ndarray]) -> int:
    frames = arrays["frame"]
    starts = np.arange(len(frames) - WINDOW_LENGTH + 1)
    return int(np.sum(frames[starts + WINDOW_LENGTH - 1] - frames[starts] == WINDOW_LENGTH - 1))


def build(out: Path, clips: list[MotionClip3D], plates: list[backgrounds.Plate], windows: int, seed: int = 0,
          workers: int = 1, subject_splits: dict[str, str] | None = None,
          fractions: dict[str, float] | None = None, provenance: dict | None = None, progress: bool = True,
          variety: Variety | None = None) -> dict:
    """Render tracks until each split holds its share of `windows`; write the dataset; return the manifest.

    `subject_splits` maps a clip's subject ("cmu_01" or "01") to a split; `fractions` shares the
    windows among splits (splits with a share need clips and plates of their own). `variety`: what the
    tracks may show (PRESETS; default "v1", the version-1 renderer).
    """
    variety = variety or PRESETS["v1"]
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
        "variety": variety.describe(),
        "views": VIEWS if variety.views else None,
        "pose_classes": {"order": POSE_CLASSES, "low_thigh_deg": LOW_THIGH_DEG, "bent_torso_deg": BENT_TORSO_DEG,
                         "arms_up": "a wrist above the neck"} if variety.pose_mix else None,
        "ranges": {"person_px": PERSON_HEIGHT_PX, "track_frames": TRACK_FRAMES, "fps": FPS_RANGE,
                   "p_panning": P_PANNING, "p_occluder": P_OCCLUDER, "p_border": P_BORDER, "p_mirror": P_MIRROR},
    })
    sources: dict[tuple[str, str, str], int] = {}
    stats = {s: {"tracks_tried": 0, "tracks_kept": 0} for s in SPLITS}
    shown = {s: {} for s in SPLITS}  # what the kept tracks show (summary_add)
    started = time.time()
    total = sum(targets.values())
    bar = tqdm(total=total, unit="window", desc="synthetic", disable=not progress, smoothing=0.05)
    pool = None
    if workers > 1:
        # Spawned, not forked: OpenCV's thread pool in this process would deadlock a forked child.
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker,
                                                         initargs=(clips_by_split, plates_by_split, variety))
    else:
        _init_worker(clips_by_split, plates_by_split, variety)
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
                    summary_add(shown[split], info)
                    added = _windows(arrays)
                    done += added
                    bar.update(min(added, total - bar.n))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    writer.provenance["track_stats"] = stats
    writer.provenance["kept_tracks_show"] = shown
    writer.provenance["render_seconds"] = round(time.time() - started, 1)
    return writer.close()


def _mix(text: str) -> dict[str, float]:
    """`name=weight,...` -> dict."""
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        out[name.strip()] = float(value)
    return out


def variety_from_args(args: argparse.Namespace) -> Variety:
    """The preset, with any knob given on the command line replacing the preset's value."""
    variety = PRESETS[args.preset]
    knobs = ("views", "pose_mix", "shoulder_drop", "p_upper_body", "p_desk", "p_person_occluder", "p_sharp")
    changes = {name: getattr(args, name) for name in knobs if getattr(args, name) is not None}
    if changes:
        for name in ("views", "pose_mix"):
            unknown = set(changes.get(name) or {}) - set(VIEWS if name == "views" else POSE_CLASSES)
            if unknown:
                raise ValueError(f"--{name.replace('_', '-')}: unknown {sorted(unknown)}")
        variety = dataclasses.replace(variety, **changes, preset=f"{variety.preset}+custom")
    return variety


def unseen_videos(registry: SceneRegistry) -> set[str]:
    """File names of the unseen (test) scenes' videos: never a background."""
    return {clip.video.name for clip in registry.by_role("test")}


def background_plates(registry: SceneRegistry, mode: str, videos: list[Path], person_boxes: Path | None,
                      cache: Path | None) -> tuple[list[backgrounds.Plate], list[dict]]:
    """Plates for `mode` "fixed" (median plates of `videos`) or "all-train" (those, and for every other
    training-scene clip single frames with the people the teacher found painted over). Refuses a video of
    an unseen scene. Returns the plates and what they came from."""
    banned = unseen_videos(registry)
    plates = backgrounds.load_plates(list(videos), cache)
    used = [{"video": str(v), "kind": "temporal median"} for v in videos]
    if mode == "all-train":
        from ..dataset_format import ExLowDataset

        fixed = {Path(v).name for v in videos}
        others = [clip for clip in registry.by_role("train") if clip.video.name not in fixed]
        boxes: dict[str, dict[int, list[np.ndarray]]] = {}
        if others:
            if person_boxes is None or not (person_boxes / "manifest.json").exists():
                raise FileNotFoundError(f"--backgrounds all-train needs person boxes of the training scenes "
                                        f"(--person-boxes, a teacher dataset of them): {person_boxes} not found")
            dataset = ExLowDataset(person_boxes)
            names = [source["name"] for source in dataset.manifest["sources"]]
            for split in SPLITS:
                data = dataset.split(split)
                for source, frame, box in zip(data.arrays["source"], data.arrays["frame"], data.arrays["box"],
                                              strict=True):
                    boxes.setdefault(names[int(source)], {}).setdefault(int(frame), []).append(box)
        for clip in others:
            if clip.video.name in banned:
                raise ValueError(f"{clip.video} belongs to an unseen scene")
            if clip.clip_name not in boxes:
                print(f"no person boxes for {clip.clip_name} in {person_boxes}: no plates from it", file=sys.stderr)
                continue
            made = backgrounds.load_frame_plates(clip.video, clip.frames, boxes[clip.clip_name], cache)
            plates.extend(made)
            used.append({"video": str(clip.video), "clip": clip.clip_name, "kind": "frames, teacher's people painted "
                         "over", "frames": sorted({p.frames[0] for p in made})})
    for plate in plates:
        if plate.video in banned:
            raise ValueError(f"background video {plate.video} belongs to an unseen scene")
    return plates, used


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="v1",
                        help="what tracks show: v1 = the version-1 renderer (default, same data as before); wide = "
                             "issue 11's widening (views, poses, framing, desks, other people, sharp cameras, "
                             "per-video backgrounds); the options below override single knobs")
    parser.add_argument("--views", type=_mix, default=None, metavar="VIEW=W,...",
                        help=f"camera view mix over {', '.join(VIEWS)}")
    parser.add_argument("--pose-mix", type=_mix, default=None, metavar="CLASS=W,...",
                        help=f"mix of the anchor frame's pose class over {', '.join(POSE_CLASSES)}")
    parser.add_argument("--shoulder-drop", type=float, default=None, help="m the shoulder points move down")
    parser.add_argument("--p-upper-body", type=float, default=None, help="share framed at the upper body")
    parser.add_argument("--p-desk", type=float, default=None, help="share with a desk in front of the person")
    parser.add_argument("--p-person-occluder", type=float, default=None, help="share with another person in front")
    parser.add_argument("--p-sharp", type=float, default=None, help="share with a clean, sharp camera")
    parser.add_argument("--backgrounds", choices=["fixed", "all-train"], default="fixed",
                        help="fixed: median plates of --videos (default); all-train: also single frames of every "
                             "other training scene, its people painted over (never an unseen scene)")
    parser.add_argument("--person-boxes", type=Path, default=DEFAULT_PERSON_BOXES,
                        help="teacher dataset of the training scenes whose boxes are painted over (all-train)")
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
    try:
        variety = variety_from_args(args)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    registry = load_registry()
    banned = unseen_videos(registry) & {v.name for v in args.videos}
    if banned:
        print(f"--videos names unseen-scene videos {sorted(banned)}: they may never back training data",
              file=sys.stderr)
        return 2
    subjects = sorted(args.cmu_splits)
    clips = cmu_mocap.load_cmu_clips(args.motion, subjects=subjects)
    plates, plate_sources = background_plates(registry, args.backgrounds, list(args.videos), args.person_boxes,
                                              args.cache)
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
        "background_sources": plate_sources,
    }
    manifest = build(args.out, clips, plates, args.windows, seed=args.seed, workers=args.workers,
                     subject_splits=args.cmu_splits, fractions=args.fractions, provenance=provenance,
                     variety=variety)
    for split, counts in manifest["splits"].items():
        print(f"{split:>5}: {counts['windows']:7d} windows {counts['tracks']:5d} tracks {counts['frames']:7d} frames")
    print(f"dataset written to {args.out} in {time.time() - started:.1f} s")
    return 0
