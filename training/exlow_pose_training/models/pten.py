"""Pose Transition Embedding Network (seed 000, Sec. 3.4) and its CNNTransformer ablation.

PTEN = Ex-Low Image Encoding Transformer f_i followed by the Pose Transition Decoder f_d, whose
weights come from the pretrained autoencoder and are fine-tuned end to end with eq. 7.
CNNTransformer is the same network with f_d randomly initialised (no pretraining).

Frame alignment (option, off in the paper's model): each frame's crop is cut around that frame's
detector box, so box jitter moves and scales the person inside the crop from frame to frame. On real
video this accounts for most of the frame-to-frame change of crop-coordinate keypoints (about 0.04 of
0.065 per frame on vtest), and a single 40-d embedding decoded into a smooth transition cannot follow
it. With `frame_alignment`, each frame's transformer token predicts a shift and a scale of that
frame's decoded pose; the pose itself, and so its plausibility, still comes from the decoder. The
head starts at zero, so training starts from the paper's model.
"""

from __future__ import annotations

import torch
from torch import nn

from .image_encoder import ExLowImageEncoder, ImageEncoderConfig
from .losses import pose_loss
from .pose_autoencoder import AutoencoderConfig, PoseTransitionAutoencoder, PoseTransitionDecoder


class PoseTransitionEmbeddingNetwork(nn.Module):
    """crops (B, 5, 3, 16, 16) in [0, 1] -> poses (B, 5, 17, 2) in [-1, 1] crop coordinates."""

    def __init__(self, encoder: ImageEncoderConfig | None = None, decoder: AutoencoderConfig | None = None,
                 frame_alignment: bool = False) -> None:
        super().__init__()
        decoder = decoder or AutoencoderConfig()
        encoder = encoder or ImageEncoderConfig(latent=decoder.latent, frames=decoder.frames)
        if encoder.latent != decoder.latent:
            raise ValueError(f"image encoder latent {encoder.latent} != decoder latent {decoder.latent}")
        self.image_encoder = ExLowImageEncoder(encoder)
        self.decoder = PoseTransitionDecoder(decoder)
        self.frame_alignment: nn.Linear | None = None
        if frame_alignment:  # per frame: shift (x, y) and log-scale of the decoded pose
            self.frame_alignment = nn.Linear(encoder.embed, 3)
            nn.init.zeros_(self.frame_alignment.weight)
            nn.init.zeros_(self.frame_alignment.bias)

    def load_pretrained_decoder(self, autoencoder: PoseTransitionAutoencoder) -> None:
        self.decoder.load_state_dict(autoencoder.decoder.state_dict())

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.frame_alignment is None:
            return self.decoder(self.image_encoder(crops))
        embedding, frame_tokens = self.image_encoder.encode(crops)
        poses = self.decoder(embedding)  # (B, T, J, 2)
        alignment = self.frame_alignment(frame_tokens)  # (B, T, 3)
        scale = torch.exp(alignment[..., 2:])[..., None, :]
        return poses * scale + alignment[..., None, :2]

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        poses = self(batch["crops"])
        return pose_loss(poses, batch["keypoints"], batch["mask"]), poses
