"""Training augmentations of crop windows, the same for all frames of a window.

Works on torch tensors, batched or not, on any device:

    crops      (..., T, 3, 16, 16) float in [0, 1]   (optional: motion windows have none)
    keypoints  (..., T, 17, 2)     float, [-1, 1] crop coordinates (u right, v down)
    mask       (..., T, 17)        bool

Geometry (flip, similarity jitter) moves crops and keypoints together, so a keypoint stays on the
image content it labels; photometric changes (colour, blur, noise) leave keypoints alone. Each
window draws its own parameters and applies them to all its T frames (a person does not change
colour or jump between frames); sensor noise alone is drawn per pixel and frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from exlow_pose_ros.core.crop import FILL_VALUE
from exlow_pose_ros.core.keypoints import COCO17_FLIP_PERMUTATION

# RGB <-> YIQ: hue is a rotation and saturation a scaling of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                           dtype=torch.float64)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (p) and magnitudes; each transform is applied to a window with its own p."""

    flip_p: float = 0.5
    # Similarity jitter: content scaled by s in `scale` (>1 zooms in), rotated by up to +-rotate_deg
    # and shifted by up to +-shift per axis in crop units (the crop spans 2, so 0.1 = 0.8 px at 16 px).
    affine_p: float = 0.8
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.1
    rotate_deg: float = 5.0
    # Keypoints pushed out of the crop by the jitter keep their label unless this is set.
    mask_outside: bool = False
    # Colour: brightness and contrast factors in [1 - x, 1 + x], saturation likewise, hue rotation
    # of up to +-hue of a full turn.
    colour_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    # Gaussian blur with sigma (pixels of the 16x16 crop) drawn from blur_sigma.
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    # Additive Gaussian noise with standard deviation (in [0, 1] intensity) drawn from noise_std.
    noise_p: float = 0.5
    noise_std: tuple[float, float] = (0.005, 0.04)

    @classmethod
    def geometry_only(cls) -> AugmentConfig:
        return cls(colour_p=0.0, blur_p=0.0, noise_p=0.0)

    @classmethod
    def photometric_only(cls) -> AugmentConfig:
        return cls(flip_p=0.0, affine_p=0.0)


def as_generator(seed: int | torch.Generator | np.random.Generator | None,
                 device: torch.device | str = "cpu") -> torch.Generator | None:
    """A torch.Generator from a seed, a numpy Generator (one draw from it) or a Generator; None stays None
    (then the global torch RNG is used, which DataLoader seeds per worker)."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(0, 2**63 - 1))
    return torch.Generator(device=device).manual_seed(int(seed))


class Augment:
    """Callable transform: `Augment(config)(window, generator)` -> augmented copy of the window dict.

    Keys other than crops, keypoints and mask pass through unchanged.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, window: Mapping[str, torch.Tensor],
                 generator: int | torch.Generator | np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        return augment_window(window, self.config, generator)

    def __repr__(self) -> str:
        return f"Augment({self.config})"


def augment_window(window: Mapping[str, torch.Tensor], config: AugmentConfig,
                   generator: int | torch.Generator | np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """An augmented copy of `window` (one window or a batch; see the module doc). `generator`: a seed, a
    numpy or torch Generator, or None for the global torch RNG of the tensors' device."""
    keypoints = window["keypoints"]
    crops = window.get("crops")
    batched = keypoints.dim() == 4
    out = dict(window)
    if not batched:  # one window: give it a batch axis of 1
        keypoints = keypoints.unsqueeze(0)
        crops = None if crops is None else crops.unsqueeze(0)
    mask = window["mask"] if batched else window["mask"].unsqueeze(0)
    device = keypoints.device
    generator = as_generator(generator)
    draw_device = generator.device if generator is not None else device
    count = keypoints.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(count, generator=generator, device=draw_device)).to(device)

    def chance(p: float) -> torch.Tensor:
        return uniform(0.0, 1.0) < p

    # Draw every parameter up front in a fixed order, so results depend only on the seed.
    flip = chance(config.flip_p)
    affine = chance(config.affine_p)
    scale = uniform(*config.scale)
    angle = uniform(-1.0, 1.0) * math.radians(config.rotate_deg)
    shift = torch.stack([uniform(-config.shift, config.shift), uniform(-config.shift, config.shift)], dim=-1)
    colour = chance(config.colour_p)
    brightness = uniform(1 - config.brightness, 1 + config.brightness)
    contrast = uniform(1 - config.contrast, 1 + config.contrast)
    saturation = uniform(1 - config.saturation, 1 + config.saturation)
    hue = uniform(-config.hue, config.hue) * 2 * math.pi
    blur = chance(config.blur_p)
    sigma = uniform(*config.blur_sigma)
    noise = chance(config.noise_p)
    noise_std = uniform(*config.noise_std)

    keypoints, mask = _flip_keypoints(keypoints, mask, flip)
    matrix = _similarity(scale, angle, affine)  # (B, 2, 2); identity where not applied
    offset = torch.where(affine[:, None], shift, torch.zeros_like(shift))
    keypoints = keypoints @ matrix.transpose(1, 2)[:, None] + offset[:, None, None, :]
    if config.mask_outside:
        mask = mask & (keypoints.abs() <= 1).all(dim=-1)
    keypoints = torch.where(mask[..., None], keypoints, torch.zeros_like(keypoints))  # format: 0 where unlabelled

    if "detector" in window:  # the detector's own keypoints move with the image; absent ones stay all-zero
        detector = window["detector"] if batched else window["detector"].unsqueeze(0)
        present = detector.abs().sum(dim=-1, keepdim=True) > 0
        permutation = torch.as_tensor(COCO17_FLIP_PERMUTATION, device=device)
        mirrored = detector[:, :, permutation] * torch.tensor([-1.0, 1.0, 1.0], device=device)
        flipped = flip[:, None, None, None]
        detector, present = torch.where(flipped, mirrored, detector), torch.where(flipped, present[:, :, permutation],
                                                                                 present)
        moved = detector[..., :2] @ matrix.transpose(1, 2)[:, None] + offset[:, None, None, :]
        detector = torch.where(present, torch.cat([moved, detector[..., 2:]], dim=-1), torch.zeros_like(detector))
        out["detector"] = detector if batched else detector[0]

    if crops is not None:
        crops = _where(flip, lambda c, i: c.flip(-1), crops)
        crops = _where(affine, lambda c, i: _warp(c, matrix[i], offset[i]), crops)
        crops = _where(colour, lambda c, i: _colour(c, brightness[i], contrast[i], saturation[i], hue[i]), crops)
        crops = _where(blur, lambda c, i: _blur(c, sigma[i]), crops)
        crops = _where(noise, lambda c, i: c + noise_std[i][:, None, None, None, None] * torch.randn(
            c.shape, generator=generator, device=draw_device).to(device), crops)
        out["crops"] = (crops.clamp(0.0, 1.0) if batched else crops[0].clamp(0.0, 1.0))
    out["keypoints"] = keypoints if batched else keypoints[0]
    out["mask"] = mask if batched else mask[0]
    return out


def flip_window(window: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mirror a window (batched or not) left-right: crops flipped, u -> -u, left/right joints swapped."""
    out = dict(window)
    keypoints, mask = window["keypoints"], window["mask"]
    batched = keypoints.dim() == 4
    if not batched:
        keypoints, mask = keypoints.unsqueeze(0), mask.unsqueeze(0)
    everyone = torch.ones(keypoints.shape[0], dtype=torch.bool, device=keypoints.device)
    keypoints, mask = _flip_keypoints(keypoints, mask, everyone)
    out["keypoints"] = keypoints if batched else keypoints[0]
    out["mask"] = mask if batched else mask[0]
    if window.get("crops") is not None:
        out["crops"] = window["crops"].flip(-1)
    return out


def _flip_keypoints(keypoints: torch.Tensor, mask: torch.Tensor,
                    flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # The mirror image of the left wrist is where the right wrist now is: negate u, then permute.
    permutation = torch.as_tensor(COCO17_FLIP_PERMUTATION, device=keypoints.device)
    mirrored = keypoints[:, :, permutation] * torch.tensor([-1.0, 1.0], device=keypoints.device)
    keypoints = torch.where(flip[:, None, None, None], mirrored, keypoints)
    mask = torch.where(flip[:, None, None], mask[:, :, permutation], mask)
    return keypoints, mask


def _where(selected: torch.Tensor, transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           crops: torch.Tensor) -> torch.Tensor:
    """crops with transform(crops[index], index) in place of the selected windows; the work is done only
    for those (on a CPU worker, computing every transform for every window and discarding most costs 2x)."""
    index = torch.nonzero(selected).squeeze(1)
    if len(index) == 0:
        return crops
    if len(index) == len(crops):
        return transform(crops, index)
    return crops.index_copy(0, index, transform(crops[index], index))


def _similarity(scale: torch.Tensor, angle: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
    """Forward maps p -> s R p, (B, 2, 2), in crop coordinates (square, so isotropic)."""
    scale = torch.where(applied, scale, torch.ones_like(scale))
    angle = torch.where(applied, angle, torch.zeros_like(angle))
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _warp(crops: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Resample crops so content at p moves to matrix @ p + offset; outside is the crop fill."""
    batch, frames, channels, height, width = crops.shape
    # affine_grid wants the inverse map (output -> input). With align_corners=False, -1 and 1 are the
    # outer edges of the border pixels, exactly the crop-coordinate convention.
    (a, b), (c, d) = matrix[:, 0].unbind(-1), matrix[:, 1].unbind(-1)
    inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / (a * d - b * c)[:, None, None]
    theta = torch.cat([inverse, -(inverse @ offset[..., None])], dim=-1)
    # One grid per window: its frames are just more channels to grid_sample.
    stacked = crops.reshape(batch, frames * channels, height, width)
    grid = F.affine_grid(theta, list(stacked.shape), align_corners=False)
    fill = FILL_VALUE / 255.0  # grid_sample pads with 0; shift so that the padding is the crop fill
    if fill:
        stacked = stacked - fill
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (warped + fill if fill else warped).reshape(crops.shape)


def _colour(crops: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
            hue: torch.Tensor) -> torch.Tensor:
    one = torch.ones_like(brightness)
    crops = crops * brightness[:, None, None, None, None]
    # Contrast around each frame's mean grey level, as torchvision does.
    luma = crops.mean(dim=(-2, -1)) @ _LUMA.to(crops)  # (B, T)
    crops = (crops - luma[..., None, None, None]) * contrast[:, None, None, None, None] + luma[..., None, None, None]
    # Hue rotation and saturation scaling of the chroma plane, one 3x3 colour matrix per window.
    cos, sin = torch.cos(hue) * saturation, torch.sin(hue) * saturation
    zero = torch.zeros_like(cos)
    chroma = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                          torch.stack([zero, sin, cos], -1)], -2)
    to_yiq, to_rgb = _RGB_TO_YIQ.to(crops), _YIQ_TO_RGB.to(crops)
    colour = to_rgb @ chroma @ to_yiq  # (B, 3, 3)
    # A batched (3x3) @ (3 x pixels) product; einsum picks a much slower layout for this on CPU.
    return (colour[:, None] @ crops.flatten(3)).view(crops.shape)


def _blur(crops: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    batch, frames, channels, height, width = crops.shape
    radius = 2  # covers sigma up to ~1 px; enough at 16x16
    taps = torch.arange(-radius, radius + 1, dtype=crops.dtype, device=crops.device)
    kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None].clamp_min(1e-3)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 5)
    # One depthwise separable convolution over all windows, frames and channels at once.
    per_plane = kernel.repeat_interleave(frames * channels, dim=0)
    planes = crops.reshape(1, batch * frames * channels, height, width)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="replicate")
    groups = planes.shape[1]
    planes = F.conv2d(planes, per_plane[:, None, None, :], groups=groups)
    planes = F.conv2d(planes, per_plane[:, None, :, None], groups=groups)
    return planes.reshape(crops.shape)
