"""Pose Transition Encoder-Decoder (seed 000, Sec. 3.3): a 5-frame pose sequence <-> an M-dim vector.

f_e and f_d are two fully connected layers each, with a middle layer of 85 and M = 40 (the paper's
values). The paper does not name the activation; ReLU is the default and `activation` a config option.
Masked joints enter the encoder as 0 (their coordinates are unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from exlow_pose_ros.core.keypoints import NUM_KEYPOINTS

from .losses import pose_loss

WINDOW = 5

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass
class AutoencoderConfig:
    latent: int = 40
    hidden: int = 85
    activation: str = "relu"
    frames: int = WINDOW
    joints: int = NUM_KEYPOINTS


class PoseTransitionDecoder(nn.Module):
    """f_d: latent (B, M) -> poses (B, T, J, 2)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.Sequential(nn.Linear(config.latent, config.hidden), ACTIVATIONS[config.activation](),
                                    nn.Linear(config.hidden, config.frames * config.joints * 2))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent).view(-1, self.config.frames, self.config.joints, 2)


class PoseTransitionEncoder(nn.Module):
    """f_e: poses (B, T, J, 2) with mask (B, T, J) -> latent (B, M)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(config.frames * config.joints * 2, config.hidden),
                                    ACTIVATIONS[config.activation](), nn.Linear(config.hidden, config.latent))

    def forward(self, poses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        visible = poses * mask.unsqueeze(-1).to(poses.dtype)
        return self.layers(visible.flatten(1))


class PoseTransitionAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderConfig()
        self.encoder = PoseTransitionEncoder(self.config)
        self.decoder = PoseTransitionDecoder(self.config)

    def forward(self, poses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(poses, mask))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5: reconstruct the ground-truth sequence, counting visible joints only."""
        reconstructed = self(batch["keypoints"], batch["mask"])
        return pose_loss(reconstructed, batch["keypoints"], batch["mask"]), reconstructed
