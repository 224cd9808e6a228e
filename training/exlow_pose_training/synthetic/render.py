"""Rendering one frame: a volumetric person over a background patch, then the camera's degradations,
then the 16x16 crop cut by the crop convention (exlow_pose_ros.core.crop) exactly as for real video.

Only a patch of the virtual frame around the person is made: the crop square plus a margin, at the
frame's own resolution, so a 12 px person costs as little as a 150 px one. Parts are drawn far to near
(painter's order by mean sphere depth), so near limbs cover far ones. Small people are drawn on a
supersampled canvas and shrunk with area averaging, which gives exact partial pixel coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from exlow_pose_ros.core.crop import SquareRegion, cut_crop, normalise_keypoints, square_region
from exlow_pose_ros.core.keypoints import NUM_KEYPOINTS

from ..motion.cameras import PinholeCamera, project
from ..motion.clip import CLIP_POINT_NAMES
from .body import BodyModel

SHIFT = 3                  # fractional bits of the coordinates given to cv2's polygon fill
CIRCLE = np.stack([np.cos(a := np.linspace(0, 2 * np.pi, 16, endpoint=False)), np.sin(a)], axis=1)
GROUND_CIRCLE = np.stack([np.cos(b := np.linspace(0, 2 * np.pi, 8, endpoint=False)), np.sin(b),
                          np.zeros(8)], axis=1)
SUPERSAMPLED_SIZE = 64     # people smaller than this (px) are drawn up to 4x larger and shrunk
NEAREST_DEPTH = 0.3        # m: nearer spheres make a frame unusable (the camera would be inside the person)
LARGEST_EXTENT = 400.0     # px: a person larger than this has walked up to the camera, far beyond ex-low sizes
MAX_BLUR = 24.0            # px: longest motion blur streak
_NECK, _PELVIS = CLIP_POINT_NAMES.index("neck"), CLIP_POINT_NAMES.index("pelvis")


@dataclass(frozen=True)
class Effects:
    """Per-track lighting and camera degradations."""

    gain: float                 # exposure / scene brightness
    gamma: float
    tint: tuple[float, float, float]   # white balance
    drift: float                # amplitude of a slow brightness change over the track (clouds, auto exposure)
    drift_period: float         # frames
    drift_phase: float
    flicker: float              # std of a frame-to-frame brightness jitter
    person_light: float         # the person's brightness relative to the scene (in shade, in sun)
    light: tuple[float, float, float]  # unit vector towards the light (world), for shading and shadows
    shadow: float               # ground shadow opacity (0: overcast)
    exposure: float             # shutter time as a fraction of the frame interval: motion blur length
    defocus: float              # Gaussian blur sigma in source pixels (optics, focus)
    noise: float                # sensor noise sigma (0..255)
    colour_noise: float         # share of the noise that is independent per channel
    jpeg: int                   # JPEG quality, 0 for none

    def brightness(self, frame: int, rng: np.random.Generator) -> float:
        slow = 1.0 + self.drift * math.sin(2 * math.pi * frame / self.drift_period + self.drift_phase)
        return self.gain * slow * (1.0 + self.flicker * float(rng.standard_normal()))


NO_EFFECTS = Effects(gain=1.0, gamma=1.0, tint=(1.0, 1.0, 1.0), drift=0.0, drift_period=1.0, drift_phase=0.0,
                     flicker=0.0, person_light=1.0, light=(0.0, 0.0, 1.0), shadow=0.0, exposure=0.0, defocus=0.0,
                     noise=0.0, colour_noise=0.0, jpeg=0)


def sample_effects(rng: np.random.Generator) -> Effects:
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.deg2rad(30), np.deg2rad(75))
    light = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    dark = rng.random() < 0.2  # dusk, indoors, shade: darker and noisier
    return Effects(
        gain=float(rng.uniform(0.35, 0.75) if dark else rng.uniform(0.75, 1.3)),
        gamma=float(rng.uniform(0.8, 1.25)),
        tint=tuple(float(v) for v in rng.normal(1.0, 0.05, 3).clip(0.85, 1.15)),
        drift=float(rng.uniform(0.0, 0.12)), drift_period=float(rng.uniform(20, 200)),
        drift_phase=float(rng.uniform(0, 2 * np.pi)),
        flicker=float(rng.uniform(0.0, 0.025)),
        person_light=float(rng.uniform(0.75, 1.2)),
        light=light,
        shadow=float(rng.uniform(0.25, 0.6) if rng.random() < 0.5 else rng.uniform(0.0, 0.15)),
        exposure=float(rng.uniform(0.0, 0.6)),
        defocus=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(3.0, 12.0) if dark else rng.uniform(0.5, 5.0)),
        colour_noise=float(rng.uniform(0.0, 0.6)),
        jpeg=int(rng.integers(30, 96)) if rng.random() < 0.85 else 0,
    )


@dataclass(frozen=True)
class Occluder:
    """A static object between the camera and the person: convex solids, each its world corners."""

    kind: str                                        # "post", "car", "wall"
    solids: tuple[tuple[np.ndarray, tuple[float, float, float]], ...]  # ((K, 3) corners, RGB)

    def polygons(self, camera: PinholeCamera, t: int = 0) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
        """Each solid's projected corners and colour (a static occluder is the same at every frame `t`)."""
        out = []
        for corners, colour in self.solids:
            pixels, depth = project(camera, corners)
            if np.all(depth > 0.05):
                out.append((pixels, colour))
        return out


@dataclass(frozen=True)
class PersonOccluder:
    """Another person between the camera and the rendered one: a second body moving with its own clip,
    drawn flat (no shading) over everything like the static occluders, near parts over far ones."""

    body: BodyModel
    kind: str = "person"

    def polygons(self, camera: PinholeCamera, t: int = 0) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
        t = min(t, len(self.body.centres) - 1)
        centres, depth = project(camera, self.body.centres[t])
        radii = camera.fx * self.body.radii / np.maximum(depth, 1e-6)
        keys = self.body.membership @ depth
        out = []
        for index in np.argsort(-keys, kind="stable"):
            part = self.body.parts[index]
            if not np.all(depth[part.spheres] > NEAREST_DEPTH):
                continue
            outline = centres[part.spheres][:, None, :] + radii[part.spheres][:, None, None] * CIRCLE
            out.append((outline.reshape(-1, 2), tuple(float(v) for v in part.colour)))
        return out


@dataclass
class RenderedFrame:
    image: np.ndarray          # the patch after all effects, RGB uint8; frame pixel (x, y) is image[y - y0, x - x0]
    origin: tuple[int, int]    # (x0, y0): the patch's top-left pixel in the frame
    box: np.ndarray            # (4,) person box: bbox of the visible rendered silhouette, frame pixels
    region: SquareRegion       # crop square in frame pixels (exlow_pose_ros.core.crop.square_region(box))
    crop: np.ndarray           # (16, 16, 3) RGB uint8
    pixels: np.ndarray         # (17, 2) exact projected keypoints, frame pixels
    keypoints: np.ndarray      # (17, 2) crop coordinates (normalise_keypoints(pixels, region))
    mask: np.ndarray           # (17,) in the frame and not behind an occluder
    visible_fraction: float    # about how much of the person is in view (not occluded, inside the frame)
    scale: int                 # supersampling factor of the canvas
    labels: np.ndarray | None = field(default=None, repr=False)  # canvas of part index + 1 (0: none), if asked


def _to_cv(points: np.ndarray) -> np.ndarray:
    # Continuous pixel coordinates have pixel centres at k + 0.5; cv2 draws with centres at integers.
    return np.round((points - 0.5) * (1 << SHIFT)).astype(np.int32)


def _fill(canvas: np.ndarray, points: np.ndarray, value) -> None:
    cv2.fillConvexPoly(canvas, cv2.convexHull(points.reshape(-1, 1, 2)), value, cv2.LINE_8, SHIFT)


def _motion_kernel(velocity: np.ndarray, length: float) -> np.ndarray:
    """A normalised line kernel of `length` px along `velocity` (the shutter's exposure path)."""
    half = math.ceil(length / 2) + 1
    size = 2 * half + 1
    kernel = np.zeros((size * 4, size * 4), np.float32)
    direction = velocity / max(float(np.linalg.norm(velocity)), 1e-9) * length / 2
    centre = np.array([size * 2 - 0.5, size * 2 - 0.5])
    a, b = (centre - direction * 4) * 16, (centre + direction * 4) * 16
    cv2.line(kernel, tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b)), 1.0, 4, cv2.LINE_AA, 4)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / max(float(kernel.sum()), 1e-9)


def render_frame(body: BodyModel, t: int, camera: PinholeCamera, background, effects: Effects,
                 rng: np.random.Generator, *, shift: tuple[float, float] = (0.0, 0.0),
                 velocity: np.ndarray | None = None, occluder: Occluder | PersonOccluder | None = None,
                 frame: int | None = None,
                 clean: bool = False, labels: bool = False) -> RenderedFrame | None:
    """Frame `t` of `body` seen by `camera` over `background` (anything with BackgroundView.patch).

    `shift`: the background's pixel shift for a panning camera; `velocity`: the person's image motion
    (px per frame) for motion blur; `clean`: no shading, shadows, blur, lighting, noise or compression
    (for tests). Returns None when the person is not (usably) in the frame.
    """
    width, height = camera.width, camera.height
    centres, depth = project(camera, body.centres[t])
    if not np.all(depth > NEAREST_DEPTH):
        return None
    radii = camera.fx * body.radii / depth
    low = (centres - radii[:, None]).min(axis=0)
    high = (centres + radii[:, None]).max(axis=0)
    if high[0] <= 0 or high[1] <= 0 or low[0] >= width or low[1] >= height:
        return None
    extent = float(max(high - low))
    if extent > LARGEST_EXTENT:
        return None
    # Streaks longer than a quarter of the person would smear small people beyond what cameras show.
    blur = 0.0 if clean or velocity is None else min(float(np.linalg.norm(velocity)) * effects.exposure, MAX_BLUR,
                                                     0.25 * extent)
    # Margin: the crop square of any box inside [low, high] lies within 0.55 * extent of it.
    margin = 0.6 * extent + 3 + blur + (0 if clean else 3 * effects.defocus)
    x0, y0 = max(0, math.floor(low[0] - margin)), max(0, math.floor(low[1] - margin))
    x0, y0 = x0 - x0 % 8, y0 - y0 % 8  # on the 8x8 grid of the frame's JPEG blocks
    x1, y1 = min(width, math.ceil(high[0] + margin)), min(height, math.ceil(high[1] + margin))
    patch_w, patch_h = x1 - x0, y1 - y0
    if patch_w <= 0 or patch_h <= 0:
        return None
    scale = int(np.clip(math.ceil(SUPERSAMPLED_SIZE / max(extent, 1.0)), 1, 4))
    origin = np.array([x0, y0], dtype=np.float64)

    # Person: parts far to near on an RGB canvas and a coverage canvas.
    circles = _to_cv(((centres - origin) * scale)[:, None, :] + (radii * scale)[:, None, None] * CIRCLE)
    keys = body.membership @ depth + body.depth_bias
    part_centres = body.membership @ body.centres[t]
    if clean:
        shade = np.ones(len(body.parts))
    else:
        middle = 0.5 * (body.points[t, _NECK] + body.points[t, _PELVIS]).astype(np.float64)
        offsets = np.clip((part_centres - middle) / 0.3 @ np.asarray(effects.light), -1, 1)
        shade = effects.person_light * np.clip(1 + 0.35 * body.shading * offsets, 0.6, 1.4)
    canvas_shape = (patch_h * scale, patch_w * scale)
    colour = np.zeros((*canvas_shape, 3), np.uint8)
    cover = np.zeros(canvas_shape, np.uint8)
    label = np.zeros(canvas_shape, np.uint8) if labels else None
    for index in np.argsort(-keys, kind="stable"):
        part = body.parts[index]
        points = circles[part.spheres]
        value = tuple(float(v) for v in np.clip(part.colour * shade[index], 0, 255))
        _fill(colour, points, value)
        _fill(cover, points, 255)
        if label is not None:
            _fill(label, points, int(index) + 1)

    # Occluders in front of everything.
    occluder_colour = occluder_cover = None
    if occluder is not None:
        polygons = occluder.polygons(camera, t)
        if polygons:
            occluder_colour = np.zeros((*canvas_shape, 3), np.uint8)
            occluder_cover = np.zeros(canvas_shape, np.uint8)
            for pixels, rgb in polygons:
                points = _to_cv((pixels - origin) * scale)
                _fill(occluder_colour, points, rgb)
                _fill(occluder_cover, points, 255)

    silhouette = cover > 0
    visible = silhouette if occluder_cover is None else silhouette & (occluder_cover == 0)
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    if len(rows) == 0:
        return None
    box = np.array([x0 + cols[0] / scale, y0 + rows[0] / scale, x0 + (cols[-1] + 1) / scale,
                    y0 + (rows[-1] + 1) / scale], dtype=np.float32)
    # Share not hidden by an occluder, times the share of the person's extent inside the frame (the
    # canvas stops at the frame border, so what lies beyond is estimated from the circles' bounds).
    in_frame = np.prod(np.clip(np.minimum(high, (width, height)) - np.maximum(low, 0), 0, None)) / np.prod(high - low)
    visible_fraction = float(visible.sum()) / float(silhouette.sum()) * float(in_frame)

    pixels, key_depth = project(camera, body.points[t, :NUM_KEYPOINTS])
    inside = (key_depth > 0) & (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (
        pixels[:, 1] < height)
    mask = inside.copy()
    if occluder_cover is not None:
        cells = np.floor((np.nan_to_num(pixels) - origin) * scale).astype(np.int64)
        on_canvas = inside & (cells[:, 0] >= 0) & (cells[:, 0] < canvas_shape[1]) & (cells[:, 1] >= 0) & (
            cells[:, 1] < canvas_shape[0])
        hidden = np.zeros(NUM_KEYPOINTS, bool)
        hidden[on_canvas] = occluder_cover[cells[on_canvas, 1], cells[on_canvas, 0]] >= 128
        mask &= ~hidden

    region = square_region(box)
    # Pixels of the square outside the patch must be outside the frame too, so cut_crop's black fill
    # matches what cutting the whole frame would give.
    if ((region.x0 < x0 and x0 > 0) or (region.y0 < y0 and y0 > 0) or (region.x0 + region.side > x1 and x1 < width)
            or (region.y0 + region.side > y1 and y1 < height)):
        raise RuntimeError(f"crop square {region} leaves the rendered patch {(x0, y0, x1, y1)}")
    # Only the square, with room for blur and on the JPEG block grid, is composed and degraded.
    room = 4 + math.ceil(blur + (0 if clean else 3 * effects.defocus))
    sx0, sy0 = max(x0, region.x0 - room), max(y0, region.y0 - room)
    sx0, sy0 = sx0 - (sx0 - x0) % 8, sy0 - (sy0 - y0) % 8
    sx1, sy1 = min(x1, region.x0 + region.side + room), min(y1, region.y0 + region.side + room)
    window = (slice((sy0 - y0) * scale, (sy1 - y0) * scale), slice((sx0 - x0) * scale, (sx1 - x0) * scale))
    image = _compose(body, t, camera, background, effects, rng, shift, velocity, blur, clean, frame,
                     (sx0, sy0, sx1 - sx0, sy1 - sy0), scale, colour[window], cover[window],
                     None if occluder_colour is None else occluder_colour[window],
                     None if occluder_cover is None else occluder_cover[window])
    local = SquareRegion(region.x0 - sx0, region.y0 - sy0, region.side)
    return RenderedFrame(image=image, origin=(sx0, sy0), box=box, region=region, crop=cut_crop(image, local),
                         pixels=pixels.astype(np.float32), keypoints=normalise_keypoints(np.nan_to_num(pixels), region),
                         mask=mask, visible_fraction=visible_fraction, scale=scale,
                         labels=None if label is None else label[window])


def _compose(body: BodyModel, t: int, camera: PinholeCamera, background, effects: Effects,
             rng: np.random.Generator, shift, velocity, blur: float, clean: bool, frame: int | None,
             patch: tuple[int, int, int, int], scale: int, colour: np.ndarray, cover: np.ndarray,
             occluder_colour: np.ndarray | None, occluder_cover: np.ndarray | None) -> np.ndarray:
    """Background, shadow, person and occluder layers, then lighting, blur, noise and JPEG -> uint8 RGB."""
    x0, y0, patch_w, patch_h = patch

    def shrink(layer: np.ndarray) -> np.ndarray:
        layer = layer.astype(np.float32)
        return layer if scale == 1 else cv2.resize(layer, (patch_w, patch_h), interpolation=cv2.INTER_AREA)

    person = shrink(colour)              # black outside the body: premultiplied by coverage
    alpha = shrink(cover) * (1.0 / 255.0)
    image = background.patch(x0, y0, patch_w, patch_h, shift)
    if not clean and effects.shadow > 0:
        shadow = _ground_shadow(body, t, camera, effects, (x0, y0, patch_w, patch_h))
        if shadow is not None:
            image *= 1.0 - effects.shadow * shadow[..., None]
    if blur >= 0.75:
        kernel = _motion_kernel(np.asarray(velocity, float), blur)
        person = cv2.filter2D(person, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    image = image * (1.0 - alpha[..., None]) + person
    if occluder_colour is not None:
        occluder_alpha = shrink(occluder_cover)[..., None] * (1.0 / 255.0)
        image = image * (1.0 - occluder_alpha) + shrink(occluder_colour)
    if clean:
        return np.clip(np.round(image), 0, 255).astype(np.uint8)

    if effects.defocus > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), effects.defocus)
    gain = effects.brightness(t if frame is None else frame, rng)
    image = np.clip(image * (gain / 255.0) * np.asarray(effects.tint, np.float32), 0.0, 1.0)
    if effects.gamma != 1.0:
        image = image ** effects.gamma
    image *= 255.0
    if effects.noise > 0:
        luma = effects.noise * (1 - effects.colour_noise)
        chroma = effects.noise * effects.colour_noise
        image += rng.standard_normal((patch_h, patch_w, 1), dtype=np.float32) * luma
        image += rng.standard_normal((patch_h, patch_w, 3), dtype=np.float32) * chroma
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    if effects.jpeg:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, effects.jpeg])
        if ok:
            image = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image


def _ground_shadow(body: BodyModel, t: int, camera: PinholeCamera, effects: Effects,
                   patch: tuple[int, int, int, int]) -> np.ndarray | None:
    """Soft shadow mask (0..1) on the ground plane z = 0, cast along the light direction."""
    x0, y0, patch_w, patch_h = patch
    light = np.asarray(effects.light)
    centres = body.centres[t]
    ground = centres - np.maximum(centres[:, 2:3], 0.0) / light[2] * light
    ground[:, 2] = 0.0
    outline = ground[:, None, :] + body.radii[:, None, None] * GROUND_CIRCLE  # each sphere's shadow disc
    pixels, depth = project(camera, outline)
    if not np.all(depth > NEAREST_DEPTH):
        return None
    points = _to_cv(pixels - np.array([x0, y0]))
    mask = np.zeros((patch_h, patch_w), np.uint8)
    for index in body.shadow_parts:
        _fill(mask, points[body.parts[index].spheres], 255)
    return cv2.GaussianBlur(mask.astype(np.float32) * (1.0 / 255.0), (0, 0), 1.0)
