"""Torch backend: runs a training checkpoint directly. It lives with training (torch and the model classes) and
reaches the runtime's create_backend("torch") through the entry point group `exlow_pose.backends`
(training/pyproject.toml), so the runtime never imports training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exlow_pose_ros.core.backends.base import BackendError, PoseBackend
from exlow_pose_ros.core.error_text import first_line
from exlow_pose_ros.core.model_contract import contract

from .checkpoints import load_model


class TorchBackend(PoseBackend):
    name = "torch"

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", threads: int = 0) -> None:
        import torch

        path = Path(checkpoint_path)
        if not path.is_file():
            raise BackendError(f"checkpoint {path} not found: train one with exlow-pose-train or use an .onnx model")
        if threads:
            torch.set_num_threads(threads)
        try:
            self.model, method = load_model(path, device)
        except Exception as error:  # torch.load raises pickle, zip and runtime errors for files it cannot read
            hint = " (an .onnx model runs with backend onnxruntime or tensorrt)" if path.suffix == ".onnx" else ""
            raise BackendError(f"cannot load checkpoint {path}: {type(error).__name__}: {first_line(error)}{hint}"
                               ) from None
        self.device = device
        self.contract = contract(method, detector_input=bool(getattr(self.model, "detector_input", False)),
                                 confidence_output=getattr(self.model, "confidence", None) is not None)
        self._torch = torch

    def _estimate(self, crops: np.ndarray, detector: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(crops).to(self.device)
            if not hasattr(self.model, "predict"):  # the Table-1 baselines: poses only
                return self.model(inputs).float().cpu().numpy(), None
            keypoints = None if detector is None else torch.from_numpy(detector).to(self.device)
            poses, logits = self.model.predict(inputs, keypoints)
            return (poses.float().cpu().numpy(),
                    None if logits is None else torch.sigmoid(logits).float().cpu().numpy())
