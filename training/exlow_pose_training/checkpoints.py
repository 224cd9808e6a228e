"""Training checkpoints: model weights with what is needed to rebuild the model, plus resume state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import build_model

CHECKPOINT_FORMAT = "exlow_pose_checkpoint"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper, or the model itself."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str | Path, model: nn.Module, method: str, model_options: dict[str, Any],
                    **state: Any) -> None:
    """Write atomically, so an interrupted job never leaves a half-written checkpoint to resume from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "method": method, "model_options": model_options,
               "state_dict": unwrap(model).state_dict(), **state}
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    payload = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an exlow_pose checkpoint")
    return payload


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, str]:
    """The checkpoint's model in eval mode on `device`, and its method name."""
    payload = load_checkpoint(path, device)
    model = build_model(payload["method"], payload["model_options"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload["method"]
