"""CMU Graphics Lab motion capture (ASF skeleton + AMC motion) -> MotionClip3D.

Forward kinematics as in the shared data README: each bone's world rotation is
parent_R @ C @ R(dof) @ C^T with C = R(ASF axis), and its end is parent end + length * world_R @ direction.
CMU is y up with the subject facing +z in the rest pose (left = +x); clips are returned z up
(x_w, y_w, z_w) = (x, -z, y), a proper rotation, so left and right are preserved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clip import CLIP_POINT_NAMES, MotionClip3D

SOURCE_FPS = 120.0
INCH = 0.0254
# CMU (y up, forward +z) -> clip world (z up): x stays, y_w = -z, z_w = y. det = +1.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# Clip point -> (bone, where): "end" is the bone's distal end, "start" its proximal end (= parent's end).
# COCO hips and shoulders are the ball joints: the ends of hipjoint (pelvis -> femur head) and of
# clavicle (sternum -> humeral head), not the root or the thorax where those bones start.
POINT_BONES: dict[str, tuple[str, str]] = {
    "left_shoulder": ("lclavicle", "end"), "right_shoulder": ("rclavicle", "end"),
    "left_elbow": ("lhumerus", "end"), "right_elbow": ("rhumerus", "end"),
    # CMU's forearm bone is "radius"; its end is the wrist joint ("wrist" is the first hand segment).
    "left_wrist": ("lradius", "end"), "right_wrist": ("rradius", "end"),
    "left_hip": ("lhipjoint", "end"), "right_hip": ("rhipjoint", "end"),
    "left_knee": ("lfemur", "end"), "right_knee": ("rfemur", "end"),
    "left_ankle": ("ltibia", "end"), "right_ankle": ("rtibia", "end"),
    "head_top": ("head", "end"),
    # Base of the neck between the clavicles, like the "neck" of COCO+neck layouts (mid-shoulders).
    "neck": ("thorax", "end"),
    "pelvis": ("root", "end"),
    "left_toe": ("ltoes", "end"), "right_toe": ("rtoes", "end"),
    # End of "hand" (the knuckles), not "fingers": CMU's finger bone is barely tracked.
    "left_hand": ("lhand", "end"), "right_hand": ("rhand", "end"),
}

# Face points in the head's frame (metres): (forward, left, up) from the head_top point, forward/left/up
# being the CMU rest-pose axes +z, +x, +y turned by the head bone's world rotation. Adult head: eyes
# ~11 cm below the vertex and ~3 cm either side of the midline, nose tip ~3.5 cm lower and ~2 cm
# in front of the eyes, ears (tragus) at eye height ~7.5 cm to the sides, level with the head axis.
FACE_OFFSETS: dict[str, tuple[float, float, float]] = {
    "nose": (0.105, 0.0, -0.145),
    "left_eye": (0.085, 0.032, -0.11),
    "right_eye": (0.085, -0.032, -0.11),
    "left_ear": (0.0, 0.075, -0.115),
    "right_ear": (0.0, -0.075, -0.115),
}
HEAD_FORWARD, HEAD_LEFT, HEAD_UP = np.eye(3)[2], np.eye(3)[0], np.eye(3)[1]  # CMU rest-pose axes


@dataclass
class Bone:
    name: str
    direction: np.ndarray  # unit vector in the rest pose (CMU world)
    length: float          # metres
    axis: np.ndarray       # C: rest-pose frame of the bone's dofs
    dofs: tuple[str, ...]  # e.g. ("rx", "ry", "rz")
    order: str = "XYZ"
    parent: str | None = None
    children: list[str] = field(default_factory=list)


@dataclass
class Skeleton:
    bones: dict[str, Bone]  # "root" first, then the ASF bones
    root_order: tuple[str, ...]
    length_to_metres: float
    degrees: bool

    def topological(self) -> list[str]:
        """Bone names, parents before children."""
        order, stack = [], ["root"]
        while stack:
            name = stack.pop()
            order.append(name)
            stack.extend(reversed(self.bones[name].children))
        return order


def rotation(angles: np.ndarray, order: str) -> np.ndarray:
    """Euler angles (..., 3) in radians about x, y, z, applied in `order` (e.g. "XYZ": x first) -> (..., 3, 3)."""
    angles = np.asarray(angles, dtype=np.float64)
    result = np.broadcast_to(np.eye(3), (*angles.shape[:-1], 3, 3))
    for axis in order.upper():
        k = "XYZ".index(axis)
        c, s = np.cos(angles[..., k]), np.sin(angles[..., k])
        m = np.zeros((*angles.shape[:-1], 3, 3))
        i, j = [a for a in range(3) if a != k]
        m[..., k, k] = 1.0
        m[..., i, i] = c
        m[..., j, j] = c
        # Right-handed rotation about axis k: for x (i=1, j=2) and z (i=0, j=1) -s sits at [i, j], for y at [j, i].
        sign = -1.0 if k != 1 else 1.0
        m[..., i, j] = sign * s
        m[..., j, i] = -sign * s
        result = m @ result  # later axes multiply from the left
    return result


def parse_asf(path: str | Path) -> Skeleton:
    text = Path(path).read_text()
    units = dict(re.findall(r"^\s*(mass|length|angle)\s+(\S+)", text.split(":units", 1)[1].split(":", 1)[0], re.M))
    length_unit = float(units.get("length", 1.0))
    degrees = units.get("angle", "deg").lower().startswith("deg")
    to_metres = INCH / length_unit
    root_block = text.split(":root", 1)[1].split(":bonedata", 1)[0]
    root_order = tuple(re.search(r"order\s+(.+)", root_block).group(1).lower().split())
    root_axis_order = re.search(r"axis\s+(\w+)", root_block).group(1).upper()
    orientation = np.array(re.search(r"orientation\s+(.+)", root_block).group(1).split(), dtype=float)
    if degrees:
        orientation = np.deg2rad(orientation)
    bones = {"root": Bone("root", np.zeros(3), 0.0, rotation(orientation, root_axis_order),
                          tuple(d for d in root_order if d.startswith("r")), root_axis_order)}
    bone_text = text.split(":bonedata", 1)[1].split(":hierarchy", 1)[0]
    for block in re.findall(r"begin(.*?)end", bone_text, re.S):
        fields = {}
        for line in block.strip().splitlines():
            key, *values = line.split()
            fields[key] = values
        axis_values = fields["axis"]
        axis_angles = np.array(axis_values[:3], dtype=float)
        if degrees:
            axis_angles = np.deg2rad(axis_angles)
        direction = np.array(fields["direction"], dtype=float)
        bones[fields["name"][0]] = Bone(
            name=fields["name"][0],
            direction=direction / np.linalg.norm(direction),
            length=float(fields["length"][0]) * to_metres,
            axis=rotation(axis_angles, axis_values[3]),
            dofs=tuple(d.lower() for d in fields.get("dof", [])),
            order=axis_values[3].upper(),
        )
    hierarchy = text.split(":hierarchy", 1)[1].split("begin", 1)[1].split("end", 1)[0]
    for line in hierarchy.strip().splitlines():
        parent, *children = line.split()
        for child in children:
            bones[child].parent = parent
            bones[parent].children.append(child)
    return Skeleton(bones, root_order, to_metres, degrees)


def parse_amc(path: str | Path, skeleton: Skeleton) -> dict[str, np.ndarray]:
    """AMC -> {bone: (T, ndof) values as in the file}. Vectorised: every frame lists the same bones."""
    lines = Path(path).read_text().splitlines()
    body = [line for line in lines if line.strip() and not line.startswith(("#", ":"))]
    # The first frame fixes the per-frame layout (frame number, then one line per bone).
    second = next(i for i in range(1, len(body)) if body[i].strip().isdigit())
    layout = [line.split()[0] for line in body[1:second]]
    stride = second
    if len(body) % stride:
        raise ValueError(f"{path}: frames do not all list the same bones")
    frames = len(body) // stride
    table = np.array(body, dtype=object).reshape(frames, stride)
    result = {}
    for column, name in enumerate(layout, start=1):
        # Joining a column and splitting once is ~20x faster than parsing line by line.
        tokens = " ".join(table[:, column]).split()
        ncols = len(tokens) // frames
        values = np.array(tokens, dtype=object).reshape(frames, ncols)
        if not np.all(values[:, 0] == name):
            raise ValueError(f"{path}: bone order changes between frames")
        result[name] = values[:, 1:].astype(np.float64)
    expected = len(skeleton.root_order)
    if result["root"].shape[1] != expected:
        raise ValueError(f"{path}: root has {result['root'].shape[1]} values, ASF order has {expected}")
    return result


def forward_kinematics(skeleton: Skeleton, motion: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Bone end positions (T, 3) in metres and world rotations (T, 3, 3), both in CMU's y-up frame."""
    root = motion["root"]
    frames = root.shape[0]
    scale = np.pi / 180.0 if skeleton.degrees else 1.0
    positions, rotations = {}, {}
    for name in skeleton.topological():
        bone = skeleton.bones[name]
        values = root if name == "root" else motion.get(name, np.zeros((frames, 0)))
        dof_names = skeleton.root_order if name == "root" else bone.dofs
        angles = np.zeros((frames, 3))
        translation = np.zeros((frames, 3))
        for column, dof in enumerate(dof_names):
            axis = "xyz".index(dof[1])
            if dof[0] == "r":
                angles[:, axis] = values[:, column] * scale
            else:
                translation[:, axis] = values[:, column] * skeleton.length_to_metres
        local = bone.axis @ rotation(angles, bone.order) @ bone.axis.T
        if name == "root":
            rotations[name] = local
            positions[name] = translation
            continue
        world = rotations[bone.parent] @ local
        rotations[name] = world
        positions[name] = positions[bone.parent] + bone.length * (world @ bone.direction)
    return positions, rotations


def clip_points(skeleton: Skeleton, motion: dict[str, np.ndarray]) -> np.ndarray:
    """(T, len(CLIP_POINT_NAMES), 3) clip points, z up, metres, CMU's floor height kept (see load_clip)."""
    positions, rotations = forward_kinematics(skeleton, motion)
    frames = positions["root"].shape[0]
    points = np.zeros((frames, len(CLIP_POINT_NAMES), 3))
    for index, name in enumerate(CLIP_POINT_NAMES):
        if name in POINT_BONES:
            bone, where = POINT_BONES[name]
            points[:, index] = positions[bone] if where == "end" else positions[skeleton.bones[bone].parent]
    head = rotations["head"]
    head_top = positions["head"]
    for name, (forward, left, up) in FACE_OFFSETS.items():
        offset = forward * HEAD_FORWARD + left * HEAD_LEFT + up * HEAD_UP
        points[:, CLIP_POINT_NAMES.index(name)] = head_top + head @ offset
    return points @ Y_UP_TO_Z_UP.T


def resample(points: np.ndarray, fps_in: float, fps_out: float, start: float = 0.0) -> np.ndarray:
    """Linear interpolation of point tracks at times start + k / fps_out (seconds from the first frame)."""
    duration = (points.shape[0] - 1) / fps_in
    times = np.arange(start, duration + 1e-9, 1.0 / fps_out)
    position = times * fps_in
    lower = np.minimum(np.floor(position).astype(int), points.shape[0] - 1)
    upper = np.minimum(lower + 1, points.shape[0] - 1)
    weight = (position - lower)[:, None, None]
    return (1.0 - weight) * points[lower] + weight * points[upper]


# Ground: the floor is where the lowest foot point spends its lowest moments. A low percentile of the
# per-frame minimum over toes and ankles, not the minimum, so a single glitchy frame does not move it.
FOOT_POINTS = tuple(CLIP_POINT_NAMES.index(n) for n in ("left_toe", "right_toe", "left_ankle", "right_ankle"))
GROUND_PERCENTILE = 2.0


def load_clip(asf_path: str | Path, amc_path: str | Path, fps_out: float | None = None,
              skeleton: Skeleton | None = None) -> MotionClip3D:
    """One AMC take as a MotionClip3D (z up, ground near z = 0); fps_out resamples from 120 fps."""
    skeleton = skeleton or parse_asf(asf_path)
    points = clip_points(skeleton, parse_amc(amc_path, skeleton))
    # CMU's floor is near y = 0 but not exactly; put the clip's lowest foot level at z = 0.
    points[..., 2] -= np.percentile(points[:, FOOT_POINTS, 2].min(axis=1), GROUND_PERCENTILE)
    fps = SOURCE_FPS
    if fps_out is not None and fps_out != SOURCE_FPS:
        points = resample(points, SOURCE_FPS, fps_out)
        fps = float(fps_out)
    stem = Path(amc_path).stem  # e.g. "01_02"
    subject = stem.split("_")[0]
    return MotionClip3D(name=f"cmu_{stem}", subject=f"cmu_{subject}", fps=fps, points=points.astype(np.float32))


def load_cmu_clips(root: str | Path, subjects: list[str] | None = None,
                   fps_out: float | None = None) -> list[MotionClip3D]:
    """All takes under root/<subject>/ (subject folders "01", ...; `subjects` as "01" or "cmu_01")."""
    root = Path(root)
    wanted = None if subjects is None else {s.removeprefix("cmu_") for s in subjects}
    clips = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if wanted is not None and folder.name not in wanted:
            continue
        asf = next(iter(sorted(folder.glob("*.asf"))), None)
        if asf is None:
            continue
        skeleton = parse_asf(asf)
        clips.extend(load_clip(asf, amc, fps_out, skeleton) for amc in sorted(folder.glob("*.amc")))
    return clips
