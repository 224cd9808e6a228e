"""Pose Transition Embedding Network (seed 000, Sec. 3.4) and its CNNTransformer ablation.

PTEN = Ex-Low Image Encoding Transformer f_i followed by the Pose Transition Decoder f_d, whose
weights come from the pretrained autoencoder and are fine-tuned end to end with eq. 7.
CNNTransformer is the same network with f_d randomly initialised (no pretraining).
"""

from __future__ import annotations

import torch
from torch import nn

from .image_encoder import ExLowImageEncoder, ImageEncoderConfig
from .losses import pose_loss
from .pose_autoencoder import AutoencoderConfig, PoseTransitionAutoencoder, PoseTransitionDecoder


class PoseTransitionEmbeddingNetwork(nn.Module):
    """crops (B, 5, 3, 16, 16) in [0, 1] -> poses (B, 5, 17, 2) in [-1, 1] crop coordinates."""

    def __init__(self, encoder: ImageEncoderConfig | None = None, decoder: AutoencoderConfig | None = None) -> None:
        super().__init__()
        decoder = decoder or AutoencoderConfig()
        encoder = encoder or ImageEncoderConfig(latent=decoder.latent, frames=decoder.frames)
        if encoder.latent != decoder.latent:
            raise ValueError(f"image encoder latent {encoder.latent} != decoder latent {decoder.latent}")
        self.image_encoder = ExLowImageEncoder(encoder)
        self.decoder = PoseTransitionDecoder(decoder)

    def load_pretrained_decoder(self, autoencoder: PoseTransitionAutoencoder) -> None:
        self.decoder.load_state_dict(autoencoder.decoder.state_dict())

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.image_encoder(crops))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        poses = self(batch["crops"])
        return pose_loss(poses, batch["keypoints"], batch["mask"]), poses
