"""Ex-Low Image Encoding Transformer (seed 000, Sec. 3.2): 5 crops of 16x16 -> an M-dim vector.

Per frame: four 3x3 conv layers with 16, 32, 64, 128 channels, then a 1x1 conv to 64 (the paper's
layers); an MLP embeds the flattened features into E dimensions. A learned aggregation token joins
the 5 frame tokens in a 4-layer transformer; its output, projected to M, is the embedding v.

Choices the paper leaves open (all config options): BatchNorm + ReLU after each conv; 2x2 max
pooling after the 2nd and 4th conv, so D = 64 x 4 x 4 = 1024 (keeps the MLP small while the first
layers still see every pixel); E = 128, 4 heads, feed-forward 2E, dropout 0.1, pre-norm layers and
learned frame-position embeddings (the transformer needs the frame order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .pose_autoencoder import WINDOW

# Fixed input normalisation inside the model, so the ONNX contract is plain RGB in [0, 1].
PIXEL_MEAN = 0.45
PIXEL_STD = 0.25


@dataclass
class FrameCNNConfig:
    channels: tuple[int, ...] = (16, 32, 64, 128)
    out_channels: int = 64
    pool_after: tuple[int, ...] = (1, 3)  # 0-based conv indices followed by 2x2 max pooling
    input_size: int = 16

    @property
    def feature_dim(self) -> int:
        side = self.input_size // (2 ** len(self.pool_after))
        return self.out_channels * side * side


class FrameCNN(nn.Module):
    """Per-frame CNN for ex-low images: (N, C_in, 16, 16) -> (N, D)."""

    def __init__(self, config: FrameCNNConfig | None = None, in_channels: int = 3) -> None:
        super().__init__()
        self.config = config or FrameCNNConfig()
        layers: list[nn.Module] = []
        previous = in_channels
        for index, channels in enumerate(self.config.channels):
            layers += [nn.Conv2d(previous, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
            if index in self.config.pool_after:
                layers.append(nn.MaxPool2d(2))
            previous = channels
        layers += [nn.Conv2d(previous, self.config.out_channels, 1), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers((images - PIXEL_MEAN) / PIXEL_STD).flatten(1)


@dataclass
class ImageEncoderConfig:
    embed: int = 128        # E
    latent: int = 40        # M
    layers: int = 4
    heads: int = 4
    feedforward: int = 256
    dropout: float = 0.1
    frames: int = WINDOW
    cnn: FrameCNNConfig | None = None


class ExLowImageEncoder(nn.Module):
    """f_i: crops (B, T, 3, 16, 16) in [0, 1] -> embedding (B, M)."""

    def __init__(self, config: ImageEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or ImageEncoderConfig()
        c = self.config
        self.cnn = FrameCNN(c.cnn)
        self.embed = nn.Sequential(nn.Linear(self.cnn.config.feature_dim, c.embed), nn.GELU(), nn.Dropout(c.dropout))
        self.aggregation_token = nn.Parameter(torch.zeros(1, 1, c.embed))
        self.position = nn.Parameter(torch.zeros(1, c.frames + 1, c.embed))
        nn.init.trunc_normal_(self.aggregation_token, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(c.embed, c.heads, c.feedforward, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.embed)
        self.to_latent = nn.Linear(c.embed, c.latent)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.encode(crops)[0]

    def encode(self, crops: torch.Tensor, extra: torch.Tensor | None = None,
               use_crops: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding (B, M) and the transformer's output token of each frame (B, T, E). `extra` (B, T, E),
        if given, is added to each frame's image token before the transformer (other per-frame evidence);
        without `use_crops` the tokens are `extra` alone (the crops stay an input of the graph, unused)."""
        batch, frames = crops.shape[:2]
        if use_crops:
            features = self.embed(self.cnn(crops.flatten(0, 1))).view(batch, frames, -1)
            if extra is not None:
                features = features + extra
        else:
            features = extra + 0.0 * crops.sum(dim=(2, 3, 4))[..., None]
        tokens = torch.cat([self.aggregation_token.expand(batch, -1, -1), features], dim=1) + self.position
        encoded = self.norm(self.transformer(tokens))
        return self.to_latent(encoded[:, 0]), encoded[:, 1:]
