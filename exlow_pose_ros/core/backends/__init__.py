"""Pose inference backends behind one interface (PoseBackend.infer): ONNX Runtime and TensorRT here; torch (for
training checkpoints) from exlow_pose_training through an entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import BackendError, PoseBackend

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


def tensorrt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def create_backend(kind: str, model_path: str | Path, **options: Any) -> PoseBackend:
    """Start backend `kind` on `model_path` (.onnx, or a checkpoint for 'torch'); 'auto' takes TensorRT on a
    CUDA GPU with TensorRT installed, ONNX Runtime otherwise. Raises BackendError with what to do."""
    if kind not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, not {kind!r}")
    if kind == "auto":
        kind = "tensorrt" if tensorrt_usable() and str(model_path).endswith(".onnx") else "onnxruntime"
    if kind == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, threads=options.get("threads", 0),
                                  use_cuda=options.get("use_cuda", False))
    if kind == "tensorrt":
        from .tensorrt_backend import TensorRtBackend

        keys = ("precision", "cache_dir", "batch_min", "batch_opt", "batch_max", "log")
        return TensorRtBackend(model_path, **{k: v for k, v in options.items() if k in keys})
    return plugin_backend(kind)(model_path, device=options.get("device", "cpu"), threads=options.get("threads", 0))


PLUGIN_GROUP = "exlow_pose.backends"


def plugin_backend(kind: str) -> type[PoseBackend]:
    """A backend another package provides (entry point group exlow_pose.backends): the torch backend comes with
    exlow_pose_training, which the runtime must not import."""
    from importlib.metadata import entry_points

    found = [entry for entry in entry_points(group=PLUGIN_GROUP) if entry.name == kind]
    if not found:
        raise BackendError(f"backend {kind!r} comes with the exlow_pose_training package, which is not installed "
                           "(pip install -e training); use backend 'onnxruntime' with an exported model instead")
    try:
        return found[0].load()
    except ImportError as error:
        raise BackendError(f"backend {kind!r} cannot load ({error}); use backend 'onnxruntime' with an exported "
                           "model instead") from None


__all__ = ["BACKENDS", "BackendError", "PoseBackend", "create_backend"]
