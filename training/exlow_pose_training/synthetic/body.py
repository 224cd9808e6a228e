"""A volumetric person around a motion clip's skeleton: body shape, appearance and the 3D spheres
whose projected convex hulls draw each body part.

Every part (head, torso, each limb segment, shoes, hair, clothes, carried objects) is the convex hull
of a few spheres. A capsule is the hull of two spheres; the torso is the hull of spheres at the
shoulders, chest, waist and hips, so it has width from the front and depth from the side. Projected,
a sphere is (nearly) a circle, so a part's silhouette is the 2D convex hull of its circles. Sphere
centres are computed for a whole track at once; only the drawing is per frame (render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..motion.clip import CLIP_POINT_NAMES

_I = {name: index for index, name in enumerate(CLIP_POINT_NAMES)}
UP = np.array([0.0, 0.0, 1.0])

# Reference RGB colours; each draw jitters them a little.
SKIN_TONES = np.array([(250, 222, 200), (236, 196, 160), (222, 170, 120), (196, 140, 96), (160, 105, 70),
                       (120, 80, 55), (88, 58, 40)], dtype=np.float32)
HAIR_COLOURS = np.array([(22, 18, 16), (40, 28, 20), (70, 48, 32), (110, 80, 52), (180, 150, 100),
                         (130, 60, 35), (140, 138, 135), (210, 208, 200)], dtype=np.float32)
HAIR_WEIGHTS = np.array([0.3, 0.22, 0.16, 0.1, 0.08, 0.04, 0.06, 0.04])
# Clothes in the street are mostly dark or neutral; the rest are drawn from HSV.
NEUTRAL_CLOTHES = np.array([(22, 22, 25), (45, 45, 50), (70, 70, 75), (120, 120, 122), (200, 200, 196),
                            (235, 235, 230), (28, 36, 70), (55, 75, 115), (90, 110, 150), (185, 165, 130),
                            (95, 70, 45), (80, 85, 50), (120, 30, 35)], dtype=np.float32)
SHOE_COLOURS = np.array([(20, 20, 20), (45, 35, 30), (90, 70, 50), (225, 225, 225), (60, 60, 70)],
                        dtype=np.float32)


@dataclass(frozen=True)
class BodyShape:
    """Proportions relative to an average adult; the motion's own bone lengths set the skeleton."""

    scale: float       # uniform scale of the whole motion about the ground (child .. tall adult)
    girth: float       # torso width and depth
    belly: float       # extra waist / belly depth
    hips: float        # pelvis and thigh width
    shoulders: float   # upper torso breadth
    limbs: float       # arm and leg thickness
    head: float        # head size


@dataclass(frozen=True)
class Appearance:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: str                      # "short", "long", "bald", "cap"
    top: tuple[float, float, float]      # shirt / jacket / dress colour
    sleeves: str                         # "long", "short", "none"
    bottom: tuple[float, float, float]   # trousers / shorts / skirt colour
    lower: str                           # "trousers", "shorts", "skirt", "dress", "coat"
    hem: float                           # skirt / coat / dress length, fraction of the thigh past the hip
    shoes: tuple[float, float, float]
    carried: str                         # "none", "handbag", "shoulder_bag", "backpack"
    carried_colour: tuple[float, float, float]
    carried_side: int                    # +1 left, -1 right
    carried_size: float                  # multiplier of the object's dimensions
    shading: float                       # how strongly the light direction shades parts across the body


@dataclass(frozen=True)
class Part:
    """One drawable part: the convex hull of spheres `spheres` (indices into BodyModel.radii)."""

    name: str
    spheres: np.ndarray   # int indices
    colour: np.ndarray    # (3,) float RGB, 0..255
    depth_bias: float     # metres added to the part's mean depth when sorting (negative: drawn later)
    carried: bool = False


@dataclass
class BodyModel:
    """Sphere centres for every frame of a track, and the parts that draw them."""

    centres: np.ndarray   # (T, S, 3) world metres
    radii: np.ndarray     # (S,) metres
    parts: list[Part]
    points: np.ndarray    # (T, P, 3) the (scaled) clip points the ground truth comes from
    shadow_parts: list[int]  # indices of the parts that cast a ground shadow (all but the head's layers)
    shading: float           # strength of the directional light's shading across the body (Appearance.shading)

    @cached_property
    def membership(self) -> np.ndarray:
        """(parts, spheres) matrix whose rows average a part's spheres (depth keys, part centres)."""
        matrix = np.zeros((len(self.parts), len(self.radii)))
        for row, part in enumerate(self.parts):
            matrix[row, part.spheres] = 1.0 / len(part.spheres)
        return matrix

    @cached_property
    def depth_bias(self) -> np.ndarray:
        return np.array([part.depth_bias for part in self.parts])


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-9)


def _orthogonal(vectors: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Unit component of `vectors` perpendicular to unit `axis` (row-wise)."""
    return _unit(vectors - np.sum(vectors * axis, axis=-1, keepdims=True) * axis)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> tuple[float, float, float]:
    value = np.clip(colour * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount * 40, 3), 0, 255)
    return tuple(float(c) for c in value)


def _hsv_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.25, 0.9), rng.uniform(0.25, 0.95)
    rgb = np.clip(np.abs((hue * 6 + np.array([0.0, 4.0, 2.0])) % 6 - 3) - 1, 0, 1)  # hue -> pure colour
    return 255 * value * (1 - saturation + saturation * rgb)


def _clothes_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.6:
        return NEUTRAL_CLOTHES[rng.integers(len(NEUTRAL_CLOTHES))]
    return _hsv_colour(rng)


def sample_shape(rng: np.random.Generator) -> BodyShape:
    # Mostly adults; a few children (scale ~0.6-0.8), whose heads are relatively larger.
    child = rng.random() < 0.06
    scale = rng.uniform(0.62, 0.82) if child else float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    girth = float(np.clip(rng.lognormal(0.0, 0.12), 0.8, 1.45))
    return BodyShape(scale=scale, girth=girth, belly=float(np.clip(rng.lognormal(0.0, 0.12), 0.85, 1.5)),
                     hips=float(rng.uniform(0.9, 1.15)), shoulders=float(rng.uniform(0.9, 1.12)),
                     limbs=float(np.clip(girth * rng.uniform(0.85, 1.1), 0.75, 1.4)),
                     head=float(rng.uniform(0.95, 1.08) * (1.12 if child else 1.0)))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    skin_base = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    lower = str(rng.choice(["trousers", "shorts", "skirt", "dress", "coat"], p=[0.58, 0.1, 0.1, 0.07, 0.15]))
    sleeves = str(rng.choice(["long", "short", "none"], p=[0.6, 0.32, 0.08]))
    hem = {"skirt": rng.uniform(0.4, 1.05), "dress": rng.uniform(0.5, 1.1), "coat": rng.uniform(0.3, 0.9)}.get(
        lower, 0.0)
    if lower == "coat":
        sleeves = "long"
    carried = str(rng.choice(["none", "handbag", "shoulder_bag", "backpack"], p=[0.6, 0.12, 0.12, 0.16]))
    return Appearance(
        skin=_jitter(rng, skin_base, 0.06),
        hair=_jitter(rng, HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)], 0.1),
        hair_style=str(rng.choice(["short", "long", "bald", "cap"], p=[0.55, 0.28, 0.07, 0.1])),
        top=_jitter(rng, _clothes_colour(rng), 0.08),
        sleeves=sleeves,
        bottom=_jitter(rng, _clothes_colour(rng), 0.08),
        lower=lower,
        hem=float(hem),
        shoes=_jitter(rng, SHOE_COLOURS[rng.integers(len(SHOE_COLOURS))], 0.1),
        carried=carried,
        carried_colour=_jitter(rng, _clothes_colour(rng), 0.1),
        carried_side=int(rng.choice([-1, 1])),
        carried_size=float(rng.uniform(0.8, 1.25)),
        shading=float(rng.uniform(0.2, 0.9)),
    )


class _Spheres:
    """Collects spheres (track-long centre arrays and radii) while the parts are being defined."""

    def __init__(self) -> None:
        self.centres: list[np.ndarray] = []
        self.radii: list[float] = []

    def add(self, centre: np.ndarray, radius: float) -> int:
        self.centres.append(centre)
        self.radii.append(float(radius))
        return len(self.radii) - 1

    def box(self, centre: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray],
            half: tuple[float, float, float]) -> list[int]:
        """Eight tiny spheres at the corners of an oriented box: its hull is the box."""
        ids = []
        for sx in (-1, 1):
            for sy in (-1, 1):
                for sz in (-1, 1):
                    corner = centre + sx * half[0] * axes[0] + sy * half[1] * axes[1] + sz * half[2] * axes[2]
                    ids.append(self.add(corner, 0.01))
        return ids


def build_body(points: np.ndarray, shape: BodyShape, look: Appearance) -> BodyModel:
    """Spheres and parts for clip points (T, P, 3) of one track (already in the track's world frame)."""
    points = np.asarray(points, dtype=np.float64)
    # Scale about the ground point under the track's mean pelvis: a smaller person taking smaller steps.
    anchor = points[:, _I["pelvis"]].mean(axis=0) * np.array([1.0, 1.0, 0.0])
    points = anchor + shape.scale * (points - anchor)
    p = {name: points[:, index] for name, index in _I.items()}

    # Local frames: torso (from shoulders), pelvis (from hips), head (from ears and nose).
    torso_up = _unit(p["neck"] - p["pelvis"])
    torso_left = _orthogonal(p["left_shoulder"] - p["right_shoulder"], torso_up)
    torso_fwd = np.cross(torso_left, torso_up)
    hip_left = _orthogonal(p["left_hip"] - p["right_hip"], torso_up)
    hip_fwd = np.cross(hip_left, torso_up)
    ear_mid = 0.5 * (p["left_ear"] + p["right_ear"])
    head_up = _unit(p["head_top"] - ear_mid)
    head_fwd = _orthogonal(p["nose"] - ear_mid, head_up)

    s = _Spheres()
    parts: list[Part] = []
    skin, top, bottom = np.array(look.skin), np.array(look.top), np.array(look.bottom)

    def part(name: str, ids: list[int], colour: np.ndarray, bias: float = 0.0, carried: bool = False) -> None:
        parts.append(Part(name, np.asarray(ids, dtype=np.int64), np.asarray(colour, dtype=np.float32), bias, carried))

    def capsule(a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> list[int]:
        return [s.add(a, ra), s.add(b, rb)]

    g, lim = shape.girth, shape.limbs
    # Head: cranium and jaw, face forward; hair is a slightly larger cranium shifted up and back, so
    # the face covers it from the front and it covers the face from behind (painter's order).
    head_r = 0.088 * shape.head
    cranium = ear_mid + head_up * 0.025 - head_fwd * 0.005
    part("face", [s.add(ear_mid - head_up * 0.02 + head_fwd * 0.02, head_r * 0.93),
                  s.add(ear_mid - head_up * 0.07 + head_fwd * 0.035, head_r * 0.7)], skin)
    if look.hair_style in ("short", "long"):
        hair = [s.add(cranium + head_up * 0.012 - head_fwd * 0.014, head_r * 1.04)]
        if look.hair_style == "long":
            hair += [s.add(ear_mid - head_fwd * 0.05 - head_up * 0.1, head_r * 0.85),
                     s.add(ear_mid - head_fwd * 0.055 - head_up * 0.16, head_r * 0.75)]
        part("hair", hair, look.hair)
    elif look.hair_style == "cap":
        # The cap takes the top's colour with red and blue swapped: another colour, no extra draw.
        part("cap", [s.add(cranium + head_up * 0.015, head_r * 1.02),
                     s.add(cranium + head_fwd * 0.08, head_r * 0.45)], look.top[::-1])
    else:
        part("scalp", [s.add(cranium + head_up * 0.008 - head_fwd * 0.01, head_r * 0.98)], skin)
    part("neck", capsule(p["neck"] + torso_up * 0.02, ear_mid - head_up * 0.06, 0.05 * g, 0.045 * g), skin, 0.04)

    # Torso: the upper half in the top's colour, the pelvis in the bottom's (or the top's for a dress).
    spine = lambda t: p["neck"] + t * (p["pelvis"] - p["neck"])  # noqa: E731  (0 neck .. 1 pelvis)
    sh_in = 0.015 * shape.shoulders
    upper = [s.add(p["left_shoulder"] - torso_left * sh_in - torso_up * 0.01, 0.062 * g),
             s.add(p["right_shoulder"] + torso_left * sh_in - torso_up * 0.01, 0.062 * g),
             s.add(spine(0.3) + torso_fwd * 0.015 + torso_left * 0.075 * shape.shoulders, 0.1 * g),
             s.add(spine(0.3) + torso_fwd * 0.015 - torso_left * 0.075 * shape.shoulders, 0.1 * g),
             s.add(spine(0.62) + torso_fwd * 0.02 * shape.belly, 0.1 * g * shape.belly)]
    waist = [spine(0.68) + torso_left * 0.06 * g, spine(0.68) - torso_left * 0.06 * g]
    upper += [s.add(w, 0.085 * g) for w in waist]
    part("torso", upper, top, -0.01)
    hips_r = 0.095 * g * shape.hips
    pelvis = [s.add(w, 0.08 * g) for w in waist] + [
        s.add(p["left_hip"] + hip_left * 0.01 * shape.hips, hips_r),
        s.add(p["right_hip"] - hip_left * 0.01 * shape.hips, hips_r),
        s.add(p["pelvis"] - hip_fwd * 0.02 - torso_up * 0.02, 0.1 * g * shape.hips)]
    part("pelvis", pelvis, top if look.lower == "dress" else bottom)

    # Arms: sleeves follow the top; hands are skin.
    for side in ("left", "right"):
        shoulder, elbow, wrist, hand = (p[f"{side}_{j}"] for j in ("shoulder", "elbow", "wrist", "hand"))
        upper_colour = skin if look.sleeves == "none" else top
        fore_colour = top if look.sleeves == "long" else skin
        part(f"{side}_upper_arm", capsule(shoulder, elbow, 0.052 * lim, 0.042 * lim), upper_colour)
        part(f"{side}_forearm", capsule(elbow, wrist, 0.042 * lim, 0.032 * lim), fore_colour)
        part(f"{side}_hand", capsule(wrist, hand, 0.034 * lim, 0.03 * lim), skin, -0.005)

    # Legs: each thigh is two segments so shorts can end at mid-thigh; shoes cover ankle to toe.
    bare_legs = look.lower in ("skirt", "dress")
    leg_colour = skin if bare_legs else bottom
    for side in ("left", "right"):
        hip, knee, ankle, toe = (p[f"{side}_{j}"] for j in ("hip", "knee", "ankle", "toe"))
        mid = 0.5 * (hip + knee)
        thigh_r = 0.085 * lim * np.sqrt(shape.hips)
        part(f"{side}_thigh", capsule(hip, mid, thigh_r, 0.07 * lim), bottom if look.lower != "dress" else skin)
        part(f"{side}_lower_thigh", capsule(mid, knee, 0.07 * lim, 0.056 * lim),
             skin if look.lower == "shorts" else leg_colour)
        part(f"{side}_shin", capsule(knee, ankle, 0.054 * lim, 0.04 * lim),
             skin if look.lower == "shorts" else leg_colour)
        foot_fwd = _unit(toe - ankle)
        part(f"{side}_shoe", [s.add(ankle, 0.045), s.add(ankle - foot_fwd * 0.035 - UP * 0.04, 0.035),
                              s.add(toe, 0.035)], look.shoes, -0.01)

    # Skirts, dresses and coat tails hang from the hips to `hem` of the way to the knees, flaring a
    # little; biased nearer so they cover the thighs they surround.
    if look.lower in ("skirt", "dress", "coat"):
        colour = bottom if look.lower == "skirt" else top
        flare = 0.1 * g * shape.hips
        skirt = [s.add(w, 0.085 * g) for w in waist]
        for side, sign in (("left", 1.0), ("right", -1.0)):
            hip, knee = p[f"{side}_hip"], p[f"{side}_knee"]
            skirt.append(s.add(hip + sign * hip_left * 0.01, hips_r))
            hem = hip + look.hem * (knee - hip)
            skirt.append(s.add(hem + sign * hip_left * 0.03 - hip_fwd * 0.01, flare * (1 + 0.3 * look.hem)))
        part("skirt", skirt, colour, -0.15)

    _carried_object(s, part, p, look, torso_up, torso_left, torso_fwd, spine, g)

    radii = np.asarray(s.radii, dtype=np.float64)
    centres = np.stack(s.centres, axis=1)
    shadow = [i for i, q in enumerate(parts) if q.name not in ("face", "hair", "cap", "scalp")]
    return BodyModel(centres=centres, radii=radii, parts=parts, points=points.astype(np.float32), shadow_parts=shadow,
                     shading=look.shading)


def _carried_object(s: _Spheres, part, p: dict[str, np.ndarray], look: Appearance, up: np.ndarray,
                    left: np.ndarray, fwd: np.ndarray, spine, girth: float) -> None:
    if look.carried == "none":
        return
    side = "left" if look.carried_side > 0 else "right"
    k = look.carried_size
    colour = np.array(look.carried_colour)
    if look.carried == "handbag":
        # Hangs from the hand: vertical, its top at the hand.
        horizontal_fwd = _orthogonal(fwd, np.broadcast_to(UP, fwd.shape))
        horizontal_left = np.cross(UP, horizontal_fwd)
        half = (0.15 * k, 0.05 * k, 0.13 * k)
        centre = p[f"{side}_hand"] - UP * (half[2] + 0.02)
        part("handbag", s.box(centre, (horizontal_fwd, horizontal_left, np.broadcast_to(UP, fwd.shape)), half),
             colour, carried=True)
    elif look.carried == "shoulder_bag":
        half = (0.13 * k, 0.05 * k, 0.11 * k)
        centre = p[f"{side}_hip"] + look.carried_side * left * (0.13 * girth + 0.05) + up * 0.08
        part("shoulder_bag", s.box(centre, (fwd, left, up), half), colour, carried=True)
        # The strap: a thin band from the far shoulder across the chest to the bag.
        other = "right" if side == "left" else "left"
        part("strap", [s.add(p[f"{other}_shoulder"] + fwd * 0.06, 0.015), s.add(centre + up * half[2], 0.015)],
             colour * 0.7, -0.03, carried=True)
    elif look.carried == "backpack":
        half = (0.08 * k, 0.15 * k, 0.2 * k)
        centre = spine(0.38) - fwd * (0.11 * girth + half[0])
        part("backpack", s.box(centre, (fwd, left, up), half), colour, carried=True)
