"""Confidence-Aware Learning (CAL; seed 002, "Low-resolution Human Pose Estimation") at 16x16, per frame and
over the 5-frame window.

CAL is an offset-based method: per joint a heatmap gives the coarse position (its argmax) and an offset field
adds the sub-pixel displacement read at that position (eq. 9), which avoids most of the quantisation error that
hurts heatmaps at low resolution. Its two confidence-aware parts, as the paper describes them:

- Gaussian heatmap weighing (eq. 10): the target is the binary disk of radius r around the joint, scaled by a
  Gaussian of the distance, so pixels closer to the joint are more confident and the argmax is consistent
  with training.
- Gaussian offset weighing (eqs. 11-13, 15, Algorithm 1): in the second training stage the offset loss at each
  pixel is weighted by a mixed Gaussian mask (MGM). Per mini-batch the displacements from the predicted
  heatmaps' argmax to the ground truth are collected, a Gaussian mixture is fitted to them by EM, and each
  joint's mask is that density evaluated at (joint - pixel): the pixels where the coarse prediction is likely
  to land get the offset training. The first stage weighs offsets by the binary disk (UDP's rule, eq. 14).

The text in seed 002 lacks its equations, so these are choices (all config fields):
- Backbone: the paper uses HRNet at 128x96. Here a ResNet of BasicBlocks at 16, 8 and 4 px (16-32-64 channels,
  about the FLOPs of PTEN's frame CNN) and two 4x4 deconvolutions back to a 16x16 heatmap: at 16 px a coarser
  heatmap would leave the offsets a whole-crop job.
- Heatmap loss: squared error, summed over pixels and divided by the disk's area (pi r^2), so one joint's
  heatmap and offset terms are of one scale and lambda = 1. Offset loss: L1 of the offset in units of r
  (the paper picks the plain Lp loss over smooth L1 because smooth L1 distorts the MGM weights), as the
  weighted mean over the mask. r = 2 heatmap px, Gaussian sigma 1 px.
- Two stages: the MGM replaces the disk in the epochs whose middle lies in the last 16 % of training (the
  paper: 40 of 250 epochs; a run of 4 to 9 epochs gets its last one).
  One mixture component, as the paper uses for low-resolution input (EM then reduces to the sample mean
  and covariance); more are a config field. A covariance floor keeps the mask from collapsing to a point.
- Confidence: the heatmap's peak value, which the Gaussian-weighted target makes a confidence by
  construction, divided by the target's value at the predicted sub-pixel distance from the peak pixel
  (so a sure joint gives 1 whatever its sub-pixel phase). `predict` returns it as a logit through
  `PeakConfidence`, whose scale and bias start at 1 and 0 and are only changed by temperature scaling at export.
- No flip test: the runtime runs one pass per window.
- 5-frame variant (`temporal: true`, our extension): the frames' 4 px feature maps are fused over the window by
  residual 3D convolutions (frame x row x column) before the deconvolutions, so each frame's heatmap sees its
  neighbours. It is trained on every frame of the window; the per-frame model, like SimpleBaseline, on the
  centre frame (with stride-1 windows every frame is some window's centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from exlow_pose_ros.core.keypoints import NUM_KEYPOINTS

from .baselines import BasicBlock
from .image_encoder import PIXEL_MEAN, PIXEL_STD

PEAK_FLOOR = 1e-4           # heatmap peaks are clamped into [floor, 1 - floor] before the logit
COVARIANCE_FLOOR = 0.1      # heatmap px^2 added to each mixture component's covariance
STABLE_PEAK_MARGIN = 1e-5   # parity: a peak this far above the runner-up decodes the same in any runtime
                            # (runtimes differ by about 1e-7 here)


@dataclass
class CALConfig:
    widths: tuple[int, ...] = (16, 32, 64)  # ResNet stages; each after the first halves the resolution
    blocks_per_stage: int = 2
    input_size: int = 16
    stem_stride: int = 1                    # 2 for the 64x64 images of the super-resolution cascade
    deconv_channels: int = 32
    deconv_layers: int = 2                  # 4 px -> 16 px heatmaps at 16x16 input
    radius: float = 2.0                     # activation disk, heatmap px
    sigma: float = 1.0                      # Gaussian heatmap weighing, heatmap px
    offset_weight: float = 1.0              # lambda of eqs. 14/15
    second_stage_from: float = 0.84         # share of training after which the MGM weighs the offsets
    mixture_components: int = 1
    temporal: bool = False                  # the 5-frame variant
    temporal_blocks: int = 2

    @property
    def heatmap_size(self) -> int:
        return self.input_size // self.stem_stride // 2 ** (len(self.widths) - 1) * 2 ** self.deconv_layers


class TemporalFusion(nn.Module):
    """Residual 3D convolution over (frame, row, column): (B, T, C, h, w) -> (B, T, C, h, w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.transpose(1, 2)  # (B, C, T, h, w)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + x).transpose(1, 2)


class HeatmapOffsetNetwork(nn.Module):
    """Images (B, T, 3, S, S) -> heatmaps (B, F, J, h, w) and offsets (B, F, J, 2, h, w) in units of the radius,
    for the frames `frames` selects (all by default)."""

    def __init__(self, config: CALConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.input_size % (c.stem_stride * 2 ** (len(c.widths) - 1)):
            raise ValueError(f"input {c.input_size} px does not divide into {len(c.widths)} stages")
        layers: list[nn.Module] = [nn.Conv2d(3, c.widths[0], 3, c.stem_stride, 1, bias=False),
                                   nn.BatchNorm2d(c.widths[0]), nn.ReLU(inplace=True)]
        previous = c.widths[0]
        for stage, width in enumerate(c.widths):
            for block in range(c.blocks_per_stage):
                layers.append(BasicBlock(previous, width, 2 if stage > 0 and block == 0 else 1))
                previous = width
        self.backbone = nn.Sequential(*layers)
        self.fusion = (nn.Sequential(*(TemporalFusion(previous) for _ in range(c.temporal_blocks)))
                       if c.temporal else None)
        upsampling: list[nn.Module] = []
        for _ in range(c.deconv_layers):
            upsampling += [nn.ConvTranspose2d(previous, c.deconv_channels, 4, 2, 1, bias=False),
                           nn.BatchNorm2d(c.deconv_channels), nn.ReLU(inplace=True)]
            previous = c.deconv_channels
        self.upsampling = nn.Sequential(*upsampling)
        self.head = nn.Conv2d(previous, NUM_KEYPOINTS * 3, 1)  # J heatmaps, then J (dx, dy) offset fields

    def forward(self, images: torch.Tensor, frames: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        batch = images.shape[0]
        if self.fusion is None:  # per frame: only the wanted frames need computing
            images = images[:, frames]
        features = self.backbone((images.flatten(0, 1) - PIXEL_MEAN) / PIXEL_STD)
        features = features.unflatten(0, (batch, -1))
        if self.fusion is not None:
            features = self.fusion(features)[:, frames]
        maps = self.head(self.upsampling(features.flatten(0, 1)))
        maps = maps.unflatten(0, (batch, -1))  # (B, F, 3J, h, w)
        heatmaps = maps[:, :, :NUM_KEYPOINTS]
        offsets = maps[:, :, NUM_KEYPOINTS:].unflatten(2, (NUM_KEYPOINTS, 2))
        return heatmaps, offsets


class PeakConfidence(nn.Module):
    """Heatmap peak -> confidence logit: scale * logit(peak) + bias. By construction the peak is the confidence
    (scale 1, bias 0); export's temperature scaling divides both by T, as for PTEN's confidence layer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(()))
        self.register_buffer("bias", torch.zeros(()))

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:
        return torch.logit(peaks.clamp(PEAK_FLOOR, 1 - PEAK_FLOOR)) * self.weight + self.bias


def heatmap_pixel_coordinates(keypoints: torch.Tensor, size: int) -> torch.Tensor:
    """Crop coordinates ([-1, 1]) -> heatmap pixel-index coordinates (pixel centres at integers)."""
    return (keypoints + 1) / 2 * size - 0.5


def decode(heatmaps: torch.Tensor, offsets: torch.Tensor, radius: float, sigma: float
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: argmax of each heatmap plus the offset read there -> keypoints (..., J, 2) in crop coordinates; and
    each peak divided by the target's value at that sub-pixel distance (..., J). A perfect prediction's peak is
    exp(-d^2 / 2 sigma^2), d the joint's distance to the nearest pixel centre (up to half a pixel diagonal), so
    the raw peak would tell the joint's sub-pixel phase as much as its certainty; d is capped at that half
    diagonal, so a wild offset cannot inflate the confidence."""
    heatmaps, offsets = heatmaps.float(), offsets.float()  # bf16 indices are coarse beyond 8 px
    height, width = heatmaps.shape[-2:]
    peaks, index = heatmaps.flatten(-2).max(dim=-1)
    flat_offsets = offsets.flatten(-2)  # (..., J, 2, h*w)
    offset = flat_offsets.gather(-1, index[..., None, None].expand(*index.shape, 2, 1))[..., 0] * radius
    x = (index % width).to(heatmaps.dtype) + offset[..., 0]
    y = (index // width).to(heatmaps.dtype) + offset[..., 1]
    phase = torch.exp(-(offset ** 2).sum(dim=-1).clamp_max(0.5) / (2 * sigma ** 2))
    return torch.stack([(x + 0.5) / width * 2 - 1, (y + 0.5) / height * 2 - 1], dim=-1), peaks / phase


def stable_peaks(heatmaps: torch.Tensor, margin: float = STABLE_PEAK_MARGIN) -> torch.Tensor:
    """(..., J) bool: the peak beats the runner-up by `margin`, so any runtime takes the same argmax. Two
    near-equal peaks can swap between torch and ONNX Runtime, which moves the keypoint by whole pixels."""
    top = heatmaps.flatten(-2).topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1]) > margin


def fit_gaussian_mixture(points: torch.Tensor, components: int, iterations: int = 30
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM fit of a Gaussian mixture to points (N, 2): weights (K,), means (K, 2), covariances (K, 2, 2). With one
    component EM's fixed point is the sample mean and covariance, which is what it returns."""
    points = points.double()
    eye = torch.eye(2, dtype=points.dtype, device=points.device)
    if components == 1 or len(points) < 4 * components:
        mean = points.mean(dim=0)
        centred = points - mean
        covariance = centred.T @ centred / max(1, len(points)) + COVARIANCE_FLOOR * eye
        return torch.ones(1, dtype=points.dtype, device=points.device), mean[None], covariance[None]
    # Start from points spread over the sorted distances from the median (deterministic).
    order = (points - points.median(dim=0).values).norm(dim=-1).argsort()
    means = points[order[torch.linspace(0, len(points) - 1, components).long()]]
    covariances = torch.cov(points.T).expand(components, 2, 2).clone() + COVARIANCE_FLOOR * eye
    weights = torch.full((components,), 1.0 / components, dtype=points.dtype, device=points.device)
    for _ in range(iterations):
        log_density = _log_gaussian(points[:, None], means, covariances) + weights.log()  # (N, K)
        responsibility = torch.softmax(log_density, dim=1)
        mass = responsibility.sum(dim=0).clamp_min(1e-9)
        weights = mass / len(points)
        means = (responsibility.T @ points) / mass[:, None]
        centred = points[:, None] - means  # (N, K, 2)
        covariances = torch.einsum("nk,nki,nkj->kij", responsibility, centred, centred) / mass[:, None, None]
        covariances = covariances + COVARIANCE_FLOOR * eye
    return weights, means, covariances


def _log_gaussian(points: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor) -> torch.Tensor:
    """log N(points; means, covariances) with broadcasting over leading dimensions; points (..., K, 2)."""
    centred = points - means
    precision = torch.linalg.inv(covariances)  # (K, 2, 2); one inverse, not one solve per pixel
    quadratic = torch.einsum("...ki,kij,...kj->...k", centred, precision, centred)
    return -0.5 * quadratic - 0.5 * torch.logdet(covariances) - math.log(2 * math.pi)


def mixture_density(displacements: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                    covariances: torch.Tensor) -> torch.Tensor:
    """The fitted mixture's density at displacements (..., 2) -> (...)."""
    log_density = _log_gaussian(displacements.double()[..., None, :], means, covariances) + weights.log()
    return torch.logsumexp(log_density, dim=-1).exp().to(displacements.dtype)


def cal_loss(heatmaps: torch.Tensor, offsets: torch.Tensor, keypoints: torch.Tensor, mask: torch.Tensor,
             config: CALConfig, second_stage: bool) -> torch.Tensor:
    """Eq. 14 (first stage) or eq. 15 (second stage) for maps (B, F, J, h, w) / (B, F, J, 2, h, w) and labels
    (B, F, J, 2) in crop coordinates with mask (B, F, J). Mean over the batch of the sum over frames and joints."""
    size = heatmaps.shape[-1]
    centres = heatmap_pixel_coordinates(keypoints, size)  # (B, F, J, 2)
    grid = torch.arange(size, dtype=heatmaps.dtype, device=heatmaps.device)
    to_x = centres[..., 0:1] - grid  # joint - pixel, (B, F, J, w)
    to_y = centres[..., 1:2] - grid  # (B, F, J, h)
    squared = to_y[..., :, None] ** 2 + to_x[..., None, :] ** 2  # (B, F, J, h, w)
    disk = (squared <= config.radius ** 2).to(heatmaps.dtype)
    target = disk * torch.exp(-squared / (2 * config.sigma ** 2))  # eq. 10
    weight = mask.to(heatmaps.dtype)
    area = math.pi * config.radius ** 2
    heatmap_term = ((heatmaps - target) ** 2).sum(dim=(-1, -2)) / area

    offset_target = torch.stack([to_x[..., None, :].expand_as(squared), to_y[..., :, None].expand_as(squared)],
                                dim=-3) / config.radius  # (B, F, J, 2, h, w)
    offset_error = (offsets - offset_target).abs().sum(dim=-3)  # L1 over (dx, dy)
    # First stage: the mean over the disk (UDP). Second stage: the mixture's density, which sums to about 1
    # over the grid for a joint inside it and is not renormalised: a joint near or beyond the edge keeps only
    # the share of its mask that falls on the heatmap, as the paper's one normalised mask shifted to each joint.
    inside = ((centres > -0.5) & (centres < size - 0.5)).all(dim=-1) & mask
    if second_stage and bool(inside.any()):
        pixel_weight = mixed_gaussian_masks(heatmaps.detach(), centres, inside, to_x, to_y, config)
        offset_term = (offset_error * pixel_weight).sum(dim=(-1, -2))
    else:
        offset_term = (offset_error * disk).sum(dim=(-1, -2)) / disk.sum(dim=(-1, -2)).clamp_min(1.0)
    per_joint = heatmap_term + config.offset_weight * offset_term
    return (per_joint * weight).sum(dim=(1, 2)).mean()


def mixed_gaussian_masks(heatmaps: torch.Tensor, centres: torch.Tensor, mask: torch.Tensor, to_x: torch.Tensor,
                         to_y: torch.Tensor, config: CALConfig) -> torch.Tensor:
    """Algorithm 1: displacements from each labelled joint's predicted argmax to its ground truth, over the
    mini-batch (`mask`: the labelled joints inside the heatmap, since the argmax cannot reach one beyond its
    edge); a Gaussian mixture fitted to them; per joint the mixture's density at (joint - pixel)."""
    width = heatmaps.shape[-1]
    index = heatmaps.float().flatten(-2).argmax(dim=-1)
    coarse = torch.stack([index % width, index // width], dim=-1).to(centres.dtype)
    displacements = (centres - coarse)[mask]  # (N, 2)
    weights, means, covariances = fit_gaussian_mixture(displacements, config.mixture_components)
    weights, means, covariances = (t.to(heatmaps.device) for t in (weights, means, covariances))
    grid = torch.stack(torch.broadcast_tensors(to_x[..., None, :], to_y[..., :, None]), dim=-1)  # (B,F,J,h,w,2)
    return mixture_density(grid, weights, means, covariances)


class HeatmapOffsetPose(nn.Module):
    """What CAL and the super-resolution cascade share: decoding by eq. 9, the peak as confidence, the training
    stage. Subclasses give `maps(crops)` -> heatmaps, offsets and `decoding`, the CALConfig of those maps."""

    detector_input = False

    def __init__(self, decoding: CALConfig) -> None:
        super().__init__()
        self.decoding = decoding
        self.confidence = PeakConfidence()
        self.register_buffer("second_stage", torch.zeros((), dtype=torch.bool))

    def maps(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def set_progress(self, progress: float) -> None:
        """Training calls this at the start of each epoch with the share of training done at its middle (so
        250 epochs give the paper's 40 second-stage epochs, and a short run still gets its last epoch)."""
        self.second_stage.fill_(progress >= self.decoding.second_stage_from)

    def predict(self, crops: torch.Tensor, detector: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Poses (B, 5, 17, 2) and confidence logits (B, 5, 17); `detector` is ignored (no detector input)."""
        heatmaps, offsets = self.maps(crops)
        poses, peaks = decode(heatmaps, offsets, self.decoding.radius, self.decoding.sigma)
        return poses, self.confidence(peaks)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.predict(crops)[0]

    def stable_joints(self, crops: torch.Tensor) -> torch.Tensor:
        return stable_peaks(self.maps(crops)[0])

    def heatmap_loss(self, heatmaps: torch.Tensor, offsets: torch.Tensor, batch: dict[str, torch.Tensor],
                     frames: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 14 or 15 on the given frames' maps, and their decoded poses."""
        loss = cal_loss(heatmaps, offsets, batch["keypoints"][:, frames], batch["mask"][:, frames], self.decoding,
                        bool(self.second_stage))
        return loss, decode(heatmaps.detach(), offsets.detach(), self.decoding.radius, self.decoding.sigma)[0]


class ConfidenceAwareLearning(HeatmapOffsetPose):
    """crops (B, 5, 3, 16, 16) in [0, 1] -> poses (B, 5, 17, 2) in crop coordinates; `predict` adds the per-joint
    confidence logits."""

    def __init__(self, config: CALConfig | None = None) -> None:
        super().__init__(config or CALConfig())
        self.config = self.decoding
        self.network = HeatmapOffsetNetwork(self.config)

    def maps(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(crops)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        centre = batch["crops"].shape[1] // 2
        frames = slice(None) if self.config.temporal else slice(centre, centre + 1)
        heatmaps, offsets = self.network(batch["crops"], frames)
        return self.heatmap_loss(heatmaps, offsets, batch, frames)
