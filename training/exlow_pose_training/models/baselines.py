"""The paper's Table-1 comparison methods, all on 16x16 crops with the shared interface
`model(crops (B, 5, 3, 16, 16)) -> poses (B, 5, 17, 2)` and `model.loss(batch)`.

- IndependentCNN: the frame CNN + MLP regresses each frame's pose alone (no temporal information).
- ChannelCombinedCNN: the 5 frames stacked as 15 channels into one CNN + MLP regressing all 5 poses
  (temporal information, no transformer).
- SimpleBaseline (Xiao et al. 2018): a ResNet with deconvolution layers predicting one heatmap per
  joint, single frame, trained with masked heatmap MSE and decoded by argmax with the quarter-pixel
  shift toward the higher neighbour, as in the original. Adapted to 16x16 input: no stem down-sampling,
  stages at 16, 8, 4 px, and three 4x4 deconvolutions up to 32x32 heatmaps (a 16x16 heatmap would
  quantise joints to 1/8 of the crop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from exlow_pose_ros.core.keypoints import NUM_KEYPOINTS

from .image_encoder import PIXEL_MEAN, PIXEL_STD, FrameCNN, FrameCNNConfig
from .losses import pose_loss
from .pose_autoencoder import WINDOW


def _regression_head(features: int, outputs: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


class IndependentCNN(nn.Module):
    def __init__(self, hidden: int = 256, dropout: float = 0.1, cnn: FrameCNNConfig | None = None) -> None:
        super().__init__()
        self.cnn = FrameCNN(cnn)
        self.head = _regression_head(self.cnn.config.feature_dim, NUM_KEYPOINTS * 2, hidden, dropout)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        batch, frames = crops.shape[:2]
        return self.head(self.cnn(crops.flatten(0, 1))).view(batch, frames, NUM_KEYPOINTS, 2)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        poses = self(batch["crops"])
        return pose_loss(poses, batch["keypoints"], batch["mask"]), poses


class ChannelCombinedCNN(nn.Module):
    def __init__(self, hidden: int = 256, dropout: float = 0.1, frames: int = WINDOW,
                 cnn: FrameCNNConfig | None = None) -> None:
        super().__init__()
        self.frames = frames
        self.cnn = FrameCNN(cnn, in_channels=3 * frames)
        self.head = _regression_head(self.cnn.config.feature_dim, frames * NUM_KEYPOINTS * 2, hidden, dropout)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(self.cnn(crops.flatten(1, 2))).view(crops.shape[0], self.frames, NUM_KEYPOINTS, 2)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        poses = self(batch["crops"])
        return pose_loss(poses, batch["keypoints"], batch["mask"]), poses


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = (nn.Identity() if stride == 1 and inputs == outputs else
                         nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


@dataclass
class SimpleBaselineConfig:
    widths: tuple[int, ...] = (64, 128, 256)  # ResNet stages at 16, 8 and 4 px
    blocks_per_stage: int = 2
    deconv_channels: int = 128
    deconv_layers: int = 3                    # 4 px -> 32 px heatmaps
    heatmap_sigma: float = 1.0                # Gaussian target width in heatmap pixels


class SimpleBaseline(nn.Module):
    def __init__(self, config: SimpleBaselineConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or SimpleBaselineConfig()
        layers: list[nn.Module] = [nn.Conv2d(3, c.widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c.widths[0]),
                                   nn.ReLU(inplace=True)]
        previous = c.widths[0]
        for stage, width in enumerate(c.widths):
            for block in range(c.blocks_per_stage):
                layers.append(BasicBlock(previous, width, 2 if stage > 0 and block == 0 else 1))
                previous = width
        for _ in range(c.deconv_layers):
            layers += [nn.ConvTranspose2d(previous, c.deconv_channels, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c.deconv_channels), nn.ReLU(inplace=True)]
            previous = c.deconv_channels
        layers.append(nn.Conv2d(previous, NUM_KEYPOINTS, 1))
        self.network = nn.Sequential(*layers)

    def heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, 16, 16) -> (B, T, J, H, W)."""
        batch, frames = crops.shape[:2]
        maps = self.network((crops.flatten(0, 1) - PIXEL_MEAN) / PIXEL_STD)
        return maps.view(batch, frames, *maps.shape[1:])

    def target_heatmaps(self, keypoints: torch.Tensor, size: int) -> torch.Tensor:
        """Gaussians at the keypoints ((..., J, 2) in [-1, 1]) on a size x size grid of pixel centres."""
        centres = (keypoints + 1) / 2 * size - 0.5  # crop coordinates -> heatmap pixel index space
        grid = torch.arange(size, dtype=keypoints.dtype, device=keypoints.device)
        dx = (grid - centres[..., 0:1]) ** 2
        dy = (grid - centres[..., 1:2]) ** 2
        return torch.exp(-(dy.unsqueeze(-1) + dx.unsqueeze(-2)) / (2 * self.config.heatmap_sigma ** 2))

    @staticmethod
    def decode(heatmaps: torch.Tensor) -> torch.Tensor:
        """Argmax with the quarter-pixel shift toward the higher neighbour -> (..., J, 2) in [-1, 1]."""
        height, width = heatmaps.shape[-2:]
        flat = heatmaps.flatten(-2)
        index = flat.argmax(-1)
        y, x = (index // width), (index % width)

        def value(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
            return flat.gather(-1, (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)).unsqueeze(-1))[..., 0]

        shift_x = torch.sign(value(y, x + 1) - value(y, x - 1)) * 0.25
        shift_y = torch.sign(value(y + 1, x) - value(y - 1, x)) * 0.25
        px = x.to(heatmaps.dtype) + shift_x
        py = y.to(heatmaps.dtype) + shift_y
        return torch.stack([(px + 0.5) / width * 2 - 1, (py + 0.5) / height * 2 - 1], dim=-1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.decode(self.heatmaps(crops))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked heatmap MSE on each window's centre frame: a single-frame method, and with stride-1
        windows every frame is some window's centre, so the other four would only repeat the data."""
        centre = batch["crops"].shape[1] // 2
        heatmaps = self.heatmaps(batch["crops"][:, centre:centre + 1])
        target = self.target_heatmaps(batch["keypoints"][:, centre:centre + 1], heatmaps.shape[-1])
        weight = batch["mask"][:, centre:centre + 1].to(heatmaps.dtype)
        # Mean over pixels, sum over joints: the scale of the original's per-joint MSE.
        loss = (((heatmaps - target) ** 2).mean(dim=(-1, -2)) * weight).sum(dim=(1, 2)).mean()
        return loss, self.decode(heatmaps.detach())
