"""TensorRT backend (NVIDIA GPUs, Jetson): builds an engine from the exported ONNX model with the
builder API and caches it.

Cache key = sha256 of the ONNX file + TensorRT version + GPU compute capability + precision + batch
profile. An engine whose key differs (another model, TensorRT upgrade, other GPU) is rebuilt, never
loaded. Device buffers come from torch (CUDA build), which every Jetson / x86 GPU set-up of this
package has for the detector.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..model_contract import (
    CONFIDENCE_OUTPUT_NAME,
    DETECTOR_INPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelContractError,
    parse_contract,
)
from ..provenance import file_sha256
from .base import CONFIDENCE_SHAPE, DETECTOR_SHAPE, INPUT_SHAPE, OUTPUT_SHAPE, BackendError, PoseBackend

try:  # optional: JetPack / NVIDIA's wheels provide them; TensorRtBackend says what to do when absent
    import tensorrt as trt
    import torch
except ImportError as error:
    trt = torch = None
    _MISSING = str(error)

PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str
    precision: str
    batch_min: int
    batch_opt: int
    batch_max: int

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def onnx_contract(onnx_path: Path) -> dict:
    """The model contract from the ONNX file's metadata (TensorRT engines carry none)."""
    try:
        import onnx
    except ImportError:
        raise BackendError("reading the model contract needs the onnx package: pip install onnx") from None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends: a truncated or foreign file
        raise BackendError(f"pose model {onnx_path} is not a readable ONNX file ({type(error).__name__}): export it "
                           "again (exlow-pose-export) or restore the shipped one") from None
    return parse_contract({p.key: p.value for p in model.metadata_props}, str(onnx_path))


def user_cache_dir() -> Path:
    """Where engines go when the model's folder is read-only (an apt or /opt install)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "exlow_pose"


def engine_cache_path(name: str, cache_dir: Path | None, model_dir: Path) -> Path:
    """The engine file: in cache_dir when set; else next to the model when that folder is writable or already
    holds the engine, and otherwise in the user's cache folder."""
    if cache_dir is not None:
        return cache_dir / name
    beside = model_dir / name
    if beside.is_file() or os.access(model_dir, os.W_OK):
        return beside
    return user_cache_dir() / name


def read_sidecar(path: Path) -> dict | None:
    """The engine's recorded build key; None when missing or unreadable (a cache miss: the engine is rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def build_engine(onnx_path: Path, precision: str, batch_min: int, batch_opt: int, batch_max: int,
                 workspace_bytes: int = 1 << 30) -> bytes:
    """Serialised TensorRT engine for the ONNX model with one optimisation profile over the batch size."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise BackendError("this GPU has no fast FP16: use precision fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):  # crops, and the detector's keypoints where the model takes them
        tensor = network.get_input(index)
        shape = DETECTOR_SHAPE if tensor.name == DETECTOR_INPUT_NAME else INPUT_SHAPE
        profile.set_shape(tensor.name, (batch_min, *shape), (batch_opt, *shape), (batch_max, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


class TensorRtBackend(PoseBackend):
    name = "tensorrt"

    def __init__(self, model_path: str | Path, precision: str = "fp16", cache_dir: str | Path | None = None,
                 batch_min: int = 1, batch_opt: int = 16, batch_max: int = 128, log=print) -> None:
        if trt is None:
            raise BackendError(f"backend 'tensorrt' needs TensorRT's Python package and torch with CUDA ({_MISSING}); "
                               "install them (JetPack ships both) or use backend 'onnxruntime'")
        if not torch.cuda.is_available():
            raise BackendError("backend 'tensorrt' needs a CUDA GPU, and torch sees none; use 'onnxruntime'")
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        onnx_path = Path(model_path)
        if not onnx_path.is_file():
            raise BackendError(f"pose model {onnx_path} not found: set model_path to an exported .onnx file")
        try:
            self.contract = onnx_contract(onnx_path)
        except ModelContractError as error:
            raise BackendError(str(error)) from None
        major, minor = torch.cuda.get_device_capability()
        self.key = EngineKey(file_sha256(onnx_path), trt.__version__,
                             f"{major}.{minor}", precision, batch_min, batch_opt, batch_max)
        name = f"{onnx_path.stem}.{precision}.{self.key.digest()}.engine"
        self.engine_path = engine_cache_path(name, Path(cache_dir) if cache_dir else None, onnx_path.parent)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = self._load_or_build(onnx_path, log)
        self.context = self.engine.create_execution_context()
        self.batch_max = batch_max
        self.stream = torch.cuda.Stream()

    def _load_or_build(self, onnx_path: Path, log):
        sidecar = self.engine_path.with_suffix(".json")
        runtime = trt.Runtime(self._logger)
        if self.engine_path.is_file() and read_sidecar(sidecar) == asdict(self.key):
            engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is not None:
                return engine
            log(f"cached engine {self.engine_path} does not load; rebuilding it")
        started = time.monotonic()
        log(f"building TensorRT {self.key.precision} engine for {onnx_path.name} (batch {self.key.batch_min}-"
            f"{self.key.batch_max}); this takes a minute once per model, GPU and TensorRT version")
        serialized = build_engine(onnx_path, self.key.precision, self.key.batch_min, self.key.batch_opt,
                                  self.key.batch_max)
        try:
            self.engine_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.engine_path, serialized)  # two nodes building at once never leave half a file
            write_atomically(sidecar, json.dumps(asdict(self.key), indent=2).encode())
        except OSError as error:  # a read-only install still runs, it just rebuilds next time
            log(f"cannot cache the engine at {self.engine_path} ({error}); set cache_dir to a writable folder")
        log(f"engine built in {time.monotonic() - started:.1f} s")
        engine = runtime.deserialize_cuda_engine(serialized)
        if engine is None:
            raise BackendError("TensorRT built an engine it cannot load; check the TensorRT installation")
        return engine

    def _estimate(self, crops: np.ndarray, detector: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        poses, confidences = [], []
        for start in range(0, crops.shape[0], self.batch_max):  # the profile's maximum bounds one call
            inputs = {INPUT_NAME: crops[start:start + self.batch_max]}
            if detector is not None:
                inputs[DETECTOR_INPUT_NAME] = detector[start:start + self.batch_max]
            count = len(inputs[INPUT_NAME])
            with torch.cuda.stream(self.stream):
                device_in = {name: torch.from_numpy(array).to("cuda", non_blocking=True)
                             for name, array in inputs.items()}
                device_out = {OUTPUT_NAME: torch.empty((count, *OUTPUT_SHAPE), dtype=torch.float32, device="cuda")}
                if self.gives_confidence:
                    device_out[CONFIDENCE_OUTPUT_NAME] = torch.empty((count, *CONFIDENCE_SHAPE), dtype=torch.float32,
                                                                     device="cuda")
                for name, tensor in device_in.items():
                    self.context.set_input_shape(name, tuple(tensor.shape))
                    self.context.set_tensor_address(name, tensor.data_ptr())
                for name, tensor in device_out.items():
                    self.context.set_tensor_address(name, tensor.data_ptr())
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise RuntimeError("TensorRT execution failed")
                poses.append(device_out[OUTPUT_NAME].cpu())
                if self.gives_confidence:
                    confidences.append(device_out[CONFIDENCE_OUTPUT_NAME].cpu())
        self.stream.synchronize()
        return torch.cat(poses).numpy(), (torch.cat(confidences).numpy() if confidences else None)

    def describe(self) -> str:
        return f"tensorrt {self.key.tensorrt_version} {self.key.precision} sm{self.key.compute_capability}"
