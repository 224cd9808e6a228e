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

Detector fusion (option, our extension for the product): the tracker already runs a pose detector
(YOLO11n-pose) whose own keypoints are good on people of 24 px and more and poor below. With
`detector_input`, each frame's token also embeds the detector's keypoints and confidences (in crop
coordinates; all zero when there are none, e.g. another tracker feeds the crops). Per frame and joint
the output blends the detector's keypoint with the pose-transition prior (the decoded, aligned pose),
by a gate that starts from the detector's confidence, plus a small learned correction. At the start of
training the output is the detector's keypoint where it is confident and the prior elsewhere.

Keypoints only (use_crops: false): the tokens carry the detector's keypoints alone and the crops are
ignored. The crop features of the full fusion model learn the training scenes' look and, on scenes it
never saw, pull good detector keypoints towards a worse prior (README "Results"); the keypoint sequence
is the same kind of evidence in every scene.

Confidence (option): per frame and joint, the probability that the keypoint is right, defined as a
per-keypoint OKS of at least 0.5 (COCO sigmas, the labelled box area as scale). Trained with binary
cross-entropy against that event; `predict` returns it, and it ranks detections for AP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from exlow_pose_ros.core.keypoints import COCO17_SIGMAS, NUM_KEYPOINTS

from .image_encoder import ExLowImageEncoder, ImageEncoderConfig
from .losses import pose_loss
from .pose_autoencoder import AutoencoderConfig, PoseTransitionAutoencoder, PoseTransitionDecoder

CORRECT_OKS = 0.5          # a keypoint counts as right at per-keypoint OKS >= this
CONFIDENCE_LOSS_WEIGHT = 0.2
DETECTOR_DROPOUT = 0.2     # share of training windows whose detector keypoints are hidden
GATE_GAIN = 6.0            # initial gate logit per unit of detector confidence above 0.5


def keypoint_oks(predicted: torch.Tensor, target: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Per-keypoint OKS exp(-d^2 / (2 s^2 k^2)) with COCO's k = 2 sigma; (B, T, J) from (B, T, J, 2), area (B, T)."""
    variances = (2 * torch.as_tensor(COCO17_SIGMAS, dtype=predicted.dtype, device=predicted.device)) ** 2
    squared = ((predicted - target) ** 2).sum(dim=-1)
    return torch.exp(-squared / (2 * area.clamp_min(1e-6)[..., None] * variances))


class PoseTransitionEmbeddingNetwork(nn.Module):
    """crops (B, 5, 3, 16, 16) in [0, 1] -> poses (B, 5, 17, 2) in [-1, 1] crop coordinates."""

    def __init__(self, encoder: ImageEncoderConfig | None = None, decoder: AutoencoderConfig | None = None,
                 frame_alignment: bool = False, detector_input: bool = False, confidence: bool = False,
                 use_crops: bool = True) -> None:
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
        self.detector_input = detector_input
        if not use_crops and not detector_input:
            raise ValueError("a model without crops needs detector_input")
        self.use_crops = use_crops
        if detector_input:
            joints, embed = NUM_KEYPOINTS, encoder.embed
            self.keypoint_embed = nn.Sequential(nn.Linear(joints * 3, embed), nn.GELU(), nn.Linear(embed, embed))
            self.gate = nn.Linear(embed, joints)
            self.gate_gain = nn.Parameter(torch.tensor(GATE_GAIN))
            self.correction = nn.Linear(embed, joints * 2)
            for layer in (self.keypoint_embed[-1], self.gate, self.correction):  # start: gate by confidence alone
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.confidence: nn.Linear | None = None
        if confidence:
            self.confidence = nn.Linear(encoder.embed + (NUM_KEYPOINTS if detector_input else 0), NUM_KEYPOINTS)

    def load_pretrained_decoder(self, autoencoder: PoseTransitionAutoencoder) -> None:
        self.decoder.load_state_dict(autoencoder.decoder.state_dict())

    def forward(self, crops: torch.Tensor, detector: torch.Tensor | None = None) -> torch.Tensor:
        return self.predict(crops, detector)[0]

    def predict(self, crops: torch.Tensor, detector: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Poses (B, 5, 17, 2) and, with the confidence option, confidence logits (B, 5, 17).
        detector (B, 5, 17, 3): the detector's keypoints and confidences, zeros where absent."""
        if self.frame_alignment is None and not self.detector_input and self.confidence is None:
            return self.decoder(self.image_encoder(crops)), None
        if self.detector_input and detector is None:
            detector = crops.new_zeros(*crops.shape[:2], NUM_KEYPOINTS, 3)
        extra = self.keypoint_embed(detector.flatten(2)) if self.detector_input else None
        embedding, frame_tokens = self.image_encoder.encode(crops, extra, self.use_crops)
        poses = self.decoder(embedding)  # (B, T, J, 2): the pose-transition prior
        if self.frame_alignment is not None:
            alignment = self.frame_alignment(frame_tokens)  # (B, T, 3)
            scale = torch.exp(alignment[..., 2:])[..., None, :]
            poses = poses * scale + alignment[..., None, :2]
        if self.detector_input:
            detector_confidence = detector[..., 2]
            gate = torch.sigmoid(self.gate(frame_tokens) + self.gate_gain * (detector_confidence - 0.5))[..., None]
            correction = self.correction(frame_tokens).unflatten(-1, (NUM_KEYPOINTS, 2))
            poses = gate * detector[..., :2] + (1 - gate) * poses + correction
        logits = None
        if self.confidence is not None:
            features = torch.cat([frame_tokens, detector[..., 2]], dim=-1) if self.detector_input else frame_tokens
            logits = self.confidence(features)
        return poses, logits

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        detector = batch.get("detector") if self.detector_input else None
        if detector is not None and self.training:  # some windows without the detector: crop-only must work too
            keep = torch.rand(detector.shape[0], device=detector.device) >= DETECTOR_DROPOUT
            detector = detector * keep[:, None, None, None].to(detector.dtype)
        poses, logits = self.predict(batch["crops"], detector)
        loss = pose_loss(poses, batch["keypoints"], batch["mask"])
        if logits is not None:
            correct = (keypoint_oks(poses.detach(), batch["keypoints"], batch["area"]) >= CORRECT_OKS).to(logits.dtype)
            weight = batch["mask"].to(logits.dtype)
            bce = F.binary_cross_entropy_with_logits(logits, correct, weight=weight, reduction="none")
            loss = loss + CONFIDENCE_LOSS_WEIGHT * bce.sum(dim=(1, 2)).mean()
        return loss, poses
