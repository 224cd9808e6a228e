"""`exlow-pose-export`: one ONNX graph for the whole estimator (encoder + decoder), named input `crops`
and output `poses`, dynamic batch, opset pinned, the model contract in its metadata; checked against
torch with onnxruntime before it is written. Optionally builds the TensorRT engine next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from exlow_pose_ros.core.model_contract import (
    CONFIDENCE_OUTPUT_NAME,
    CONTRACT_KEY,
    DETECTOR_INPUT_NAME,
    INPUT_NAME,
    ONNX_OPSET,
    OUTPUT_NAME,
    contract,
    crops_to_input,
)

from .checkpoints import load_checkpoint, load_model

PARITY_TOLERANCE = 1e-4  # crop coordinates; 1e-4 of a half crop is far below a pixel at any size


class ContractModule(nn.Module):
    """The model as the contract sees it: crops (and detector keypoints) in; poses (and confidence) out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.detector_input = bool(getattr(model, "detector_input", False))
        self.confidence_output = getattr(model, "confidence", None) is not None

    def forward(self, crops: torch.Tensor, detector: torch.Tensor | None = None):
        if not hasattr(self.model, "predict"):
            return self.model(crops)
        poses, logits = self.model.predict(crops, detector)
        return (poses, torch.sigmoid(logits)) if logits is not None else poses

    def example_inputs(self, batch: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        crops = torch.rand(batch, 5, 3, 16, 16, generator=generator)
        if not self.detector_input:
            return (crops,)
        return crops, torch.cat([torch.rand(batch, 5, 17, 2, generator=generator) * 2 - 1,
                                 torch.rand(batch, 5, 17, 1, generator=generator)], dim=-1)

    @property
    def input_names(self) -> list[str]:
        return [INPUT_NAME, *([DETECTOR_INPUT_NAME] if self.detector_input else [])]

    @property
    def output_names(self) -> list[str]:
        return [OUTPUT_NAME, *([CONFIDENCE_OUTPUT_NAME] if self.confidence_output else [])]


def export_onnx(model: nn.Module, path: str | Path, method: str, **metadata) -> dict:
    """Export `model` (crops -> poses) to `path`; returns the contract written into its metadata."""
    wrapped = ContractModule(model.eval().cpu()).eval()
    example = wrapped.example_inputs(2)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "model.onnx"
        torch.onnx.export(wrapped, example, str(raw), input_names=wrapped.input_names,
                          output_names=wrapped.output_names, dynamic_shapes=tuple({0: batch} for _ in example),
                          opset_version=ONNX_OPSET, dynamo=True, verbose=False, external_data=False)
        graph = onnx.load(str(raw))
    written = contract(method, detector_input=wrapped.detector_input, confidence_output=wrapped.confidence_output,
                       **metadata)
    del graph.metadata_props[:]
    graph.metadata_props.add(key=CONTRACT_KEY, value=json.dumps(written))
    graph.producer_name = "exlow_pose"
    onnx.checker.check_model(graph)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(path))
    return written


def parity(model: nn.Module, onnx_path: str | Path, batch_sizes: tuple[int, ...] = (1, 7, 64)) -> float:
    """Largest |torch - onnxruntime| over random inputs of several batch sizes.

    Heatmap decoders (models with `stable_joints`, e.g. CAL) take an argmax: where a heatmap has two near-equal
    peaks, the runtimes' last-bit differences can pick different pixels, and random inputs make such ties
    common. Their poses are compared on the joints with a clear peak, which must be most of them."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wrapped = ContractModule(model.eval().cpu()).eval()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.inference_mode():
        for size in batch_sizes:
            inputs = wrapped.example_inputs(size, generator)
            expected = wrapped(*inputs)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(wrapped.output_names, {n: t.numpy() for n, t in zip(wrapped.input_names, inputs,
                                                                                   strict=True)})
            stable = model.stable_joints(inputs[0]).numpy() if hasattr(model, "stable_joints") else None
            if stable is not None and stable.mean() < 0.5:
                raise ValueError(f"parity: only {stable.mean():.0%} of the joints have a clear heatmap peak")
            for number, (want, have) in enumerate(zip(expected, got, strict=True)):
                difference = np.abs(want.numpy() - have)
                if stable is not None and number == 0:  # poses: joints with a clear peak
                    difference = difference[stable]
                worst = max(worst, float(difference.max(initial=0.0)))
    return worst


def calibrate_confidence(model: nn.Module, root: str | Path, split_name: str) -> float:
    """Temperature scaling of the per-joint confidence on a held-out (never an unseen-scene) split: the T that
    minimises the negative log-likelihood of "per-keypoint OKS >= 0.5", folded into the confidence layer."""
    from .dataset_format import ExLowDataset, person_area
    from .evaluate import window_rows
    from .models.pten import CORRECT_OKS, keypoint_oks

    split = ExLowDataset(root).split(split_name)
    rows = window_rows(split, np.arange(len(split)))
    crops = torch.from_numpy(crops_to_input(split.arrays["crops"][rows]))
    detector = torch.from_numpy(split.arrays["detector"][rows]) if "detector" in split.arrays else None
    target = torch.from_numpy(split.arrays["keypoints"][rows])
    mask = torch.from_numpy(split.arrays["mask"][rows])
    area = torch.from_numpy(person_area(split.arrays)[rows])
    model = model.eval()
    with torch.inference_mode():
        poses, logits = model.predict(crops, detector if model.detector_input else None)
    correct = (keypoint_oks(poses, target, area) >= CORRECT_OKS)[mask].double()
    logits = logits[mask].double()
    temperatures = torch.exp(torch.linspace(np.log(0.25), np.log(4.0), 241, dtype=torch.float64))
    losses = [torch.nn.functional.binary_cross_entropy_with_logits(logits / t, correct).item() for t in temperatures]
    best = float(temperatures[int(np.argmin(losses))])
    with torch.no_grad():
        model.confidence.weight /= best
        model.confidence.bias /= best
    return best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (best.pt / last.pt)")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--tensorrt", choices=("fp32", "fp16"), help="also build a TensorRT engine (needs a GPU)")
    parser.add_argument("--calibrate", metavar="DATASET:SPLIT",
                        help="temperature-scale the per-joint confidence on this split first (a validation split "
                             "of training scenes, never an unseen one)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-export", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    payload = load_checkpoint(args.checkpoint)
    model, method = load_model(args.checkpoint)
    calibration = {}
    if args.calibrate:
        if getattr(model, "confidence", None) is None:
            parser.error("--calibrate needs a model with per-joint confidence")
        root, _, split = args.calibrate.rpartition(":")
        temperature = calibrate_confidence(model, root, split)
        calibration = {"confidence_calibration": {"temperature": temperature, "data": args.calibrate}}
        print(f"confidence temperature {temperature:.3f} (fitted on {args.calibrate})")
    export_onnx(model, args.out, method, model_options=payload["model_options"],
                training={k: payload.get(k) for k in ("epoch", "metrics", "data") if k in payload}, **calibration)
    difference = parity(model, args.out)
    if difference > PARITY_TOLERANCE:
        args.out.unlink()
        print(f"ONNX output differs from torch by {difference:.2e} > {PARITY_TOLERANCE}; not written", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {method}); torch vs onnxruntime max "
          f"difference {difference:.1e}")
    if args.tensorrt:
        from exlow_pose_ros.core.backends import create_backend

        backend = create_backend("tensorrt", args.out, precision=args.tensorrt)
        print(f"TensorRT engine: {backend.engine_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
