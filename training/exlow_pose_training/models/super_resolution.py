"""A super-resolution front end cascaded with a pose network: 16x16 crops -> 64x64 images -> CAL heatmaps and
offsets (seed 001, pose-driven super-resolution), and a temporal variant in the spirit of STAR-Pose (seed 003).

- Per frame (seed 001's cascade): a light ESPCN-style network (3x3 convolutions and residual blocks at 16 px,
  then a 4x pixel shuffle) predicts the 64x64 image as a residual over the bilinear up-sampling of the crop.
  A CAL network at 64x64 (a stride-2 stem, stages at 32, 16 and 8 px, 32x32 heatmaps) reads it.
- Temporal (STAR-Pose's spirit, `temporal: true`): the 16 px feature maps of all 5 frames become one token
  sequence (frame x row x column, with learned frame and position embeddings) for a spatio-temporal
  transformer with LeakyReLU linear attention (cost linear in the 1,280 tokens). A parallel CNN branch keeps
  each frame's local texture, and an adaptive fusion gate (per pixel and channel, from both branches) mixes
  the two before the pixel shuffle. Every frame's 64x64 image thus draws on its neighbours.

What the seeds' text leaves open, and what our data forces (all config fields):
- No high-resolution crops: our datasets store the 16x16 crop of each person-frame, so the reconstruction
  loss of an SR network has no target. The SR output is trained by the pose loss through the pose network
  (the "pose-driven" part: the SR learns whatever helps the keypoints) and by a back-projection term: the
  64x64 image, averaged back over 4x4 blocks (what INTER_AREA does at an integer factor), must give the
  input crop. This keeps the front end an up-sampler of the crop rather than a free feature map. Adding
  high-resolution crops to the datasets would allow seed 001's reconstruction and perceptual losses.
- Seed 003's linear attention is described only as "LeakyReLU-modified": the feature map here is
  LeakyReLU(x) + 1, floored at 1e-3 so the attention normaliser stays positive; one transformer layer,
  4 heads, 32 channels.
- The whole cascade is trained end to end from scratch, at the same budget as every other method
  (the seed papers pre-train the SR network and the pose network separately).
- Training reads the pose network's loss on the centre frame only (with stride-1 windows every frame is
  some window's centre), and the back-projection on every super-resolved frame; inference decodes all 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cal import CALConfig, HeatmapOffsetNetwork, HeatmapOffsetPose
from .image_encoder import PIXEL_MEAN, PIXEL_STD
from .pose_autoencoder import WINDOW

ATTENTION_FLOOR = 1e-3


@dataclass
class SuperResolutionConfig:
    scale: int = 4
    channels: int = 32
    blocks: int = 3
    temporal: bool = False
    heads: int = 4
    attention_layers: int = 1
    back_projection_weight: float = 1.0
    input_size: int = 16


def cascade_pose_config(**options) -> CALConfig:
    """The pose network that reads the 64x64 images: CAL with a stride-2 stem and 32x32 heatmaps."""
    return CALConfig(**{"input_size": 64, "stem_stride": 2, "radius": 3.0, "sigma": 1.5, **options})


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class LinearAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose attention is linear in the number of tokens: softmax(QK^T)V replaced by
    phi(Q) (phi(K)^T V) / (phi(Q) sum phi(K)), phi = LeakyReLU + 1 (floored)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.feedforward = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(),
                                         nn.Linear(2 * channels, channels))

    @staticmethod
    def feature_map(x: torch.Tensor) -> torch.Tensor:
        return (F.leaky_relu(x, 0.1) + 1).clamp_min(ATTENTION_FLOOR)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, channels = tokens.shape
        q, k, v = self.qkv(self.norm1(tokens)).view(batch, length, 3, self.heads, -1).unbind(2)  # (B, N, H, D)
        q, k = self.feature_map(q), self.feature_map(k)
        context = torch.einsum("bnhd,bnhe->bhde", k, v)              # (B, H, D, D)
        normaliser = torch.einsum("bnhd,bhd->bnh", q, k.sum(dim=1))  # (B, N, H)
        attended = torch.einsum("bnhd,bhde->bnhe", q, context) / normaliser[..., None]
        tokens = tokens + self.out(attended.reshape(batch, length, channels))
        return tokens + self.feedforward(self.norm2(tokens))


class SuperResolution(nn.Module):
    """(B, T, 3, 16, 16) in [0, 1] -> (B, T, 3, 64, 64), per frame or over the window (temporal)."""

    def __init__(self, config: SuperResolutionConfig) -> None:
        super().__init__()
        self.config = c = config
        self.stem = nn.Sequential(nn.Conv2d(3, c.channels, 3, padding=1), nn.ReLU(inplace=True))
        self.local = nn.Sequential(*(ResidualBlock(c.channels) for _ in range(c.blocks)))
        self.attention: nn.ModuleList | None = None
        if c.temporal:
            positions = c.input_size * c.input_size
            self.frame_embedding = nn.Parameter(torch.zeros(WINDOW, 1, c.channels))
            self.position_embedding = nn.Parameter(torch.zeros(1, positions, c.channels))
            nn.init.trunc_normal_(self.frame_embedding, std=0.02)
            nn.init.trunc_normal_(self.position_embedding, std=0.02)
            self.attention = nn.ModuleList(LinearAttentionLayer(c.channels, c.heads) for _ in range(c.attention_layers))
            self.fusion_gate = nn.Conv2d(2 * c.channels, c.channels, 1)
        self.tail = nn.Conv2d(c.channels, 3 * c.scale ** 2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(c.scale)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        batch, frames = crops.shape[:2]
        images = crops.flatten(0, 1)
        features = self.stem((images - PIXEL_MEAN) / PIXEL_STD)
        local = self.local(features)
        if self.attention is not None:
            channels, size = local.shape[1], local.shape[-1]
            tokens = features.unflatten(0, (batch, frames)).flatten(3).transpose(2, 3)  # (B, T, hw, C)
            tokens = (tokens + self.frame_embedding[:frames] + self.position_embedding).flatten(1, 2)
            for layer in self.attention:
                tokens = layer(tokens)
            attended = tokens.view(batch * frames, size * size, channels).transpose(1, 2).reshape(local.shape)
            gate = torch.sigmoid(self.fusion_gate(torch.cat([local, attended], dim=1)))
            local = gate * local + (1 - gate) * attended
        residual = self.shuffle(self.tail(local))
        upsampled = F.interpolate(images, scale_factor=self.config.scale, mode="bilinear", align_corners=False)
        return (upsampled + residual).unflatten(0, (batch, frames))


def back_projection_error(images: torch.Tensor, crops: torch.Tensor, scale: int) -> torch.Tensor:
    """Per window, the mean absolute difference between the images averaged over scale x scale blocks and the
    crops: (B, T, 3, sS, sS), (B, T, 3, S, S) -> (B,)."""
    down = F.avg_pool2d(images.flatten(0, 1), scale).unflatten(0, images.shape[:2])
    return (down - crops).abs().mean(dim=(1, 2, 3, 4))


class SuperResolutionPose(HeatmapOffsetPose):
    """crops (B, 5, 3, 16, 16) -> poses (B, 5, 17, 2) through 64x64 super-resolved images; `predict` adds the
    per-joint confidence logits (the pose network's heatmap peaks)."""

    def __init__(self, sr: SuperResolutionConfig | None = None, pose: CALConfig | None = None) -> None:
        super().__init__(pose or cascade_pose_config())
        self.sr_config = sr or SuperResolutionConfig()
        self.pose_config = self.decoding
        if self.pose_config.temporal:
            raise ValueError("the cascade's pose network is per frame; set temporal on the super-resolution")
        if self.pose_config.input_size != self.sr_config.input_size * self.sr_config.scale:
            raise ValueError("the pose network's input size must be the super-resolved size")
        self.super_resolution = SuperResolution(self.sr_config)
        self.pose = HeatmapOffsetNetwork(self.pose_config)

    def maps(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pose(self.super_resolution(crops))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        crops = batch["crops"]
        centre = crops.shape[1] // 2
        frames = slice(centre, centre + 1)
        inputs = crops if self.sr_config.temporal else crops[:, frames]  # per frame: only the centre is needed
        images = self.super_resolution(inputs)
        heatmaps, offsets = self.pose(images[:, frames] if self.sr_config.temporal else images)
        loss, poses = self.heatmap_loss(heatmaps, offsets, batch, frames)
        back_projection = back_projection_error(images, inputs, self.sr_config.scale).mean()
        return loss + self.sr_config.back_projection_weight * back_projection, poses
