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

from exlow_pose_ros.model_contract import CONTRACT_KEY, INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, contract

from .checkpoints import load_checkpoint, load_model

PARITY_TOLERANCE = 1e-4  # crop coordinates; 1e-4 of a half crop is far below a pixel at any size


def export_onnx(model: nn.Module, path: str | Path, method: str, **metadata) -> dict:
    """Export `model` (crops -> poses) to `path`; returns the contract written into its metadata."""
    model = model.eval().cpu()
    example = torch.rand(2, 5, 3, 16, 16)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "model.onnx"
        torch.onnx.export(model, (example,), str(raw), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes=({0: batch},), opset_version=ONNX_OPSET, dynamo=True, verbose=False,
                          external_data=False)
        graph = onnx.load(str(raw))
    written = contract(method, **metadata)
    del graph.metadata_props[:]
    graph.metadata_props.add(key=CONTRACT_KEY, value=json.dumps(written))
    graph.producer_name = "exlow_pose"
    onnx.checker.check_model(graph)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(path))
    return written


def parity(model: nn.Module, onnx_path: str | Path, batch_sizes: tuple[int, ...] = (1, 7, 64)) -> float:
    """Largest |torch - onnxruntime| over random inputs of several batch sizes."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.inference_mode():
        for size in batch_sizes:
            crops = torch.rand(size, 5, 3, 16, 16, generator=generator)
            expected = model(crops).numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: crops.numpy()})[0]
            worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (best.pt / last.pt)")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--tensorrt", choices=("fp32", "fp16"), help="also build a TensorRT engine (needs a GPU)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-export", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    payload = load_checkpoint(args.checkpoint)
    model, method = load_model(args.checkpoint)
    export_onnx(model, args.out, method, model_options=payload["model_options"],
                training={k: payload.get(k) for k in ("epoch", "metrics", "data") if k in payload})
    difference = parity(model, args.out)
    if difference > PARITY_TOLERANCE:
        args.out.unlink()
        print(f"ONNX output differs from torch by {difference:.2e} > {PARITY_TOLERANCE}; not written", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {method}); torch vs onnxruntime max "
          f"difference {difference:.1e}")
    if args.tensorrt:
        from exlow_pose_ros.backends import create_backend

        backend = create_backend("tensorrt", args.out, precision=args.tensorrt)
        print(f"TensorRT engine: {backend.engine_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
