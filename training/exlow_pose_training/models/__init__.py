"""Models of exlow_pose training: PTEN, its ablations and the Table-1 baselines, built by name."""

from __future__ import annotations

from typing import Any

from torch import nn

from .baselines import ChannelCombinedCNN, IndependentCNN, SimpleBaseline, SimpleBaselineConfig
from .cal import CALConfig, ConfidenceAwareLearning
from .image_encoder import FrameCNNConfig, ImageEncoderConfig
from .pose_autoencoder import AutoencoderConfig, PoseTransitionAutoencoder
from .pten import PoseTransitionEmbeddingNetwork
from .super_resolution import SuperResolutionConfig, SuperResolutionPose, cascade_pose_config

# Table 1 of seed 000, top to bottom, plus the autoencoder the full model's decoder comes from.
METHODS = ("simple_baseline", "independent_cnn", "channel_combined_cnn", "cnn_transformer", "pten")
TABLE1_NAMES = {"simple_baseline": "SimpleBaseline", "independent_cnn": "IndependentCNN",
                "channel_combined_cnn": "ChannelCombinedCNN", "cnn_transformer": "CNNTransformer",
                "pten": "Full model (PTEN)"}
# The other seed papers' methods (seeds 002, 001 and 003), under the same contract and yardstick.
SEED_METHODS = ("cal", "sr_pose")


def build_model(method: str, options: dict[str, Any] | None = None) -> nn.Module:
    """A fresh model for `method` (METHODS, SEED_METHODS or 'autoencoder'); `options` override config fields."""
    options = dict(options or {})
    cnn = FrameCNNConfig(**options.pop("cnn")) if "cnn" in options else None
    if method == "autoencoder":
        return PoseTransitionAutoencoder(AutoencoderConfig(**options))
    if method in ("pten", "cnn_transformer"):
        decoder = AutoencoderConfig(**options.pop("decoder", {}))
        flags = {name: bool(options.pop(name, False)) for name in ("frame_alignment", "detector_input", "confidence")}
        flags["use_crops"] = bool(options.pop("use_crops", True))
        encoder = ImageEncoderConfig(latent=decoder.latent, frames=decoder.frames, cnn=cnn, **options)
        return PoseTransitionEmbeddingNetwork(encoder, decoder, **flags)
    if method == "independent_cnn":
        return IndependentCNN(cnn=cnn, **options)
    if method == "channel_combined_cnn":
        return ChannelCombinedCNN(cnn=cnn, **options)
    if method == "simple_baseline":
        return SimpleBaseline(SimpleBaselineConfig(**options))
    if method == "cal":
        return ConfidenceAwareLearning(CALConfig(**options))
    if method == "sr_pose":  # options: {sr: SuperResolutionConfig fields, pose: CALConfig fields}
        sr, pose = options.pop("sr", {}), options.pop("pose", {})
        if options:
            raise ValueError(f"sr_pose takes options 'sr' and 'pose' only, not {sorted(options)}")
        return SuperResolutionPose(SuperResolutionConfig(**sr), cascade_pose_config(**pose))
    known = ", ".join((*METHODS, *SEED_METHODS, "autoencoder"))
    raise ValueError(f"unknown method {method!r}; choose from {known}")


__all__ = ["METHODS", "SEED_METHODS", "TABLE1_NAMES", "PoseTransitionAutoencoder", "PoseTransitionEmbeddingNetwork",
           "build_model"]
