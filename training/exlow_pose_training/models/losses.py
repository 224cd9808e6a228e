"""Masked Euclidean pose losses of the paper (seed 000, eqs. 5-7)."""

from __future__ import annotations

import torch


def masked_joint_distance_sum(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eqs. 5-7: per window, the sum over frames and visible joints of the Euclidean distance.

    predicted, target: (B, T, J, 2); mask: (B, T, J) bool. Returns (B,).
    """
    distance = torch.linalg.vector_norm(predicted - target, dim=-1)
    return (distance * mask.to(distance.dtype)).sum(dim=(1, 2))


def pose_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of eq. 5 / eq. 7 (the batch mean only sets the learning-rate scale)."""
    return masked_joint_distance_sum(predicted, target, mask).mean()
