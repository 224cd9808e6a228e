"""`exlow-pose-quantize`: an INT8 copy of an exported pose model (ONNX Runtime static quantisation), calibrated
on real crops of training or validation scenes, with the same contract, so the runtime runs it with `--model`.

    exlow-pose-quantize models/exlow_pose_pten.onnx --data results/datasets/scenes_train/tiny:val \
        --out results/int8/exlow_pose_pten_int8.onnx

Weights per output channel in int8, activations in uint8 with ranges from the calibration windows (QDQ format,
which ONNX Runtime's CPU provider fuses into integer kernels). Only Conv, MatMul and Gemm are quantised: the
normalisations, softmax and the decoder's small heads stay float, where int8 costs accuracy for no speed.
Prints how far the INT8 poses move from the FP32 ones on windows of the same split the calibration left out;
accuracy on unseen scenes comes from `exlow-pose-report --model "INT8=...onnx"`, speed from `exlow_pose_benchmark`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from exlow_pose_ros.core.model_contract import CONTRACT_KEY, DETECTOR_INPUT_NAME, INPUT_NAME, crops_to_input

QUANTISED_OPS = ("Conv", "MatMul", "Gemm")


def calibration_inputs(root: str | Path, split_name: str, windows: int, takes_detector: bool,
                       seed: int = 0) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Model inputs of `windows` windows drawn from the split, in batches of 32, and as many held-out windows
    (disjoint from them) for the agreement check."""
    from .dataset_format import ExLowDataset
    from .evaluate import window_rows

    split = ExLowDataset(root).split(split_name)
    order = np.random.default_rng(seed).permutation(len(split))
    if len(order) < 2:
        raise ValueError(f"{root}:{split_name} has {len(order)} windows; calibration needs more")
    chosen, held_out = order[: min(windows, len(order) // 2)], order[len(order) // 2:][:windows]

    def batches(indices: np.ndarray) -> list[dict[str, np.ndarray]]:
        rows = window_rows(split, np.sort(indices))
        out = []
        for start in range(0, len(rows), 32):
            part = rows[start:start + 32]
            feed = {INPUT_NAME: crops_to_input(split.arrays["crops"][part])}
            if takes_detector:
                feed[DETECTOR_INPUT_NAME] = split.arrays["detector"][part].astype(np.float32)
            out.append(feed)
        return out

    return batches(chosen), batches(held_out)


class FeedReader:
    """onnxruntime.quantization's CalibrationDataReader over prepared feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantise(model_path: Path, out: Path, feeds: list[dict[str, np.ndarray]], data: str) -> dict:
    """Write the INT8 model; returns the contract written into it (the FP32 one plus how it was quantised)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(model_path))
    written = {p.key: p.value for p in source.metadata_props}
    if CONTRACT_KEY not in written:
        raise ValueError(f"{model_path} carries no exlow_pose contract: export it with exlow-pose-export")
    contract = json.loads(written[CONTRACT_KEY])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=False)
        quantize_static(str(prepared), str(out), FeedReader(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTISED_OPS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    contract["quantization"] = {"precision": "int8", "format": "QDQ (ONNX Runtime static)",
                                "operators": list(QUANTISED_OPS), "weights": "int8 per channel",
                                "activations": "uint8, min-max over the calibration windows", "data": data,
                                "calibration_windows": int(sum(len(f[INPUT_NAME]) for f in feeds)),
                                "source_model": model_path.name}
    quantised = onnx.load(str(out))
    del quantised.metadata_props[:]
    for key, value in {**written, CONTRACT_KEY: json.dumps(contract)}.items():
        quantised.metadata_props.add(key=key, value=value)
    onnx.save(quantised, str(out))
    return contract


def agreement(fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """How far INT8 poses move from FP32 ones, in crop units ([-1, 1] over the crop), per joint."""
    from exlow_pose_ros.core.backends import create_backend

    reference, quantised = create_backend("onnxruntime", fp32), create_backend("onnxruntime", int8)
    moves = []
    for feed in feeds:
        detector = feed.get(DETECTOR_INPUT_NAME)
        want = reference.estimate(feed[INPUT_NAME], detector)[0]
        have = quantised.estimate(feed[INPUT_NAME], detector)[0]
        moves.append(np.linalg.norm(want - have, axis=-1).ravel())
    move = np.concatenate(moves)
    return {"windows": int(sum(len(f[INPUT_NAME]) for f in feeds)), "mean": float(move.mean()),
            "p99": float(np.percentile(move, 99)), "max": float(move.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-quantize", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="exported FP32 model (.onnx with the exlow_pose contract)")
    parser.add_argument("--data", required=True, metavar="DATASET:SPLIT",
                        help="calibration windows: a training or validation split, never an unseen scene's")
    parser.add_argument("--out", type=Path, required=True, help="INT8 .onnx to write")
    parser.add_argument("--windows", type=int, default=1024, help="calibration windows (default: %(default)s)")
    args = parser.parse_args(argv)
    from exlow_pose_ros.core.backends import BackendError, create_backend

    try:
        takes_detector = create_backend("onnxruntime", args.model).takes_detector
        root, _, split = args.data.rpartition(":")
        feeds, held_out = calibration_inputs(root, split, args.windows, takes_detector)
        quantise(args.model, args.out, feeds, args.data)
    except (BackendError, ValueError, FileNotFoundError) as error:
        print(f"exlow-pose-quantize: {error}", file=sys.stderr)
        return 1
    moved = agreement(args.model, args.out, held_out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, from {args.model.stat().st_size / 1e6:.2f} MB); "
          f"INT8 vs FP32 on {moved['windows']} held-out windows of {args.data}: joints move {moved['mean']:.4f} "
          f"mean, {moved['p99']:.4f} p99, {moved['max']:.4f} max (crop units, [-1, 1] over the crop)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
