"""`exlow-pose-benchmark`: speed and size of the pose model per backend (a benchmark, not a test).

1. Pose inference per backend (ONNX Runtime CPU with 1 and 2 threads, torch CPU, TensorRT FP32/FP16 when a
   GPU is present) at batch 1, 8, 32, 128: latency p50/p99 and windows per second.
2. Model size: parameters and FLOPs per window (torch's FLOP counter).
Prints tables and writes JSON. The pipeline's stages per frame on real video: `exlow_pose_benchmark` (the
runtime's tools).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from exlow_pose_ros.core.assets import default_model

REPO = Path(__file__).resolve().parents[2]
BATCHES = (1, 8, 32, 128)


def time_calls(function, warmup: int, repeats: int, budget_s: float) -> list[float]:
    for _ in range(warmup):
        function()
    times, started = [], time.perf_counter()
    while len(times) < repeats and (time.perf_counter() - started < budget_s or len(times) < 5):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return times


def inference_rows(model: Path, checkpoint: Path | None, budget_s: float) -> list[dict]:
    from exlow_pose_ros.core.backends import BackendError, create_backend, tensorrt_usable

    setups: list[tuple[str, str, Path, dict]] = [
        ("onnxruntime CPU, 1 thread", "onnxruntime", model, {"threads": 1}),
        ("onnxruntime CPU, 2 threads", "onnxruntime", model, {"threads": 2}),
    ]
    if checkpoint is not None:
        setups.append(("torch CPU, 2 threads", "torch", checkpoint, {"threads": 2}))
    if tensorrt_usable():
        setups += [(f"TensorRT {p.upper()}", "tensorrt", model, {"precision": p, "batch_max": max(BATCHES)})
                   for p in ("fp32", "fp16")]
    rows = []
    rng = np.random.default_rng(0)
    for label, kind, path, options in setups:
        try:
            backend = create_backend(kind, path, **options)
        except BackendError as error:
            rows.append({"backend": label, "error": str(error)})
            continue
        for batch in BATCHES:
            crops = rng.random((batch, 5, 3, 16, 16), dtype=np.float32)
            times = time_calls(lambda b=backend, c=crops: b.infer(c), warmup=3, repeats=200, budget_s=budget_s)
            p50 = statistics.median(times)
            rows.append({"backend": label, "batch": batch, "p50_ms": 1000 * p50,
                         "p99_ms": 1000 * float(np.percentile(times, 99)), "windows_per_s": batch / p50,
                         "ms_per_window": 1000 * p50 / batch, "calls": len(times)})
    return rows


def model_size(checkpoint: Path | None, model: Path) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .checkpoints import load_model
    from .models import build_model

    if checkpoint is not None:
        network, method = load_model(checkpoint)
    else:  # the architecture named in the ONNX contract, with fresh weights: same parameters and FLOPs
        from exlow_pose_ros.core.backends import create_backend

        written = create_backend("onnxruntime", model).contract
        method = written["method"]
        network = build_model(method, written.get("model_options")).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.rand(1, 5, 3, 16, 16))
    return {"method": method, "parameters": int(sum(p.numel() for p in network.parameters())),
            "flops_per_window": int(counter.get_total_flops()), "onnx_bytes": model.stat().st_size}


def print_tables(result: dict) -> None:
    console = Console()
    table = Table(title=f"Pose inference ({result['machine']['cpu']}, {result['machine']['cores']} cores)")
    for column in ("backend", "batch", "p50 ms", "p99 ms", "ms/window", "windows/s"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for row in result["inference"]:
        if "error" in row:
            table.add_row(row["backend"], "-", "-", "-", "-", row["error"][:60])
        else:
            table.add_row(row["backend"], str(row["batch"]), f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}",
                          f"{row['ms_per_window']:.3f}", f"{row['windows_per_s']:.0f}")
    console.print(table)
    size = result["model"]
    console.print(f"model {size['method']}: {size['parameters']:,} parameters, "
                  f"{size['flops_per_window'] / 1e6:.1f} MFLOPs per window, ONNX {size['onnx_bytes'] / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--checkpoint", type=Path, help="training checkpoint for the torch backend and FLOPs")
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per backend and batch")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmark")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "model_path": str(args.model),
        "inference": inference_rows(args.model, args.checkpoint, args.seconds),
        "model": model_size(args.checkpoint, args.model),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2))
    print_tables(result)
    print(f"wrote {args.out / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
