"""ONNX Runtime backend: the default, runs anywhere (CPU; CUDA when onnxruntime-gpu is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..error_text import first_line
from ..model_contract import (
    CONFIDENCE_OUTPUT_NAME,
    DETECTOR_INPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelContractError,
    parse_contract,
)
from .base import BackendError, PoseBackend


class OnnxRuntimeBackend(PoseBackend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 0, use_cuda: bool = False) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise BackendError("backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime "
                               "(rosdep key python3-onnxruntime-pip)") from None
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"pose model {path} not found: set the model_path parameter to an exported .onnx "
                               "(the repository ships models/exlow_pose_pten.onnx)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if use_cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for corrupt files
            raise BackendError(f"onnxruntime cannot load {path}: {first_line(error)}. Re-export the model or "
                               "restore the file") from None
        try:
            self.contract = parse_contract(self.session.get_modelmeta().custom_metadata_map, str(path))
        except ModelContractError as error:
            raise BackendError(str(error)) from None
        self.providers = self.session.get_providers()

    def _estimate(self, crops: np.ndarray, detector: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        feeds = {INPUT_NAME: crops, **({DETECTOR_INPUT_NAME: detector} if detector is not None else {})}
        outputs = [OUTPUT_NAME, *([CONFIDENCE_OUTPUT_NAME] if self.gives_confidence else [])]
        results = self.session.run(outputs, feeds)
        return results[0], (results[1] if self.gives_confidence else None)

    def describe(self) -> str:
        return f"onnxruntime {'/'.join(p.replace('ExecutionProvider', '') for p in self.providers)}"
