"""`exlow-pose-model-size`: parameters, FLOPs per window and ONNX size of a pose model.

Needs torch (the FLOP counter runs the architecture the checkpoint, or the ONNX contract, names). Speed per backend
and batch, with the detector and the whole pipeline: `exlow_pose_benchmark` (the runtime's tools).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exlow_pose_ros.core.assets import default_model

REPO = Path(__file__).resolve().parents[2]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-model-size", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--checkpoint", type=Path, help="training checkpoint (default: the architecture the ONNX "
                        "contract names, with fresh weights)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmark")
    args = parser.parse_args(argv)
    size = {"model_path": str(args.model), **model_size(args.checkpoint, args.model)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_size.json").write_text(json.dumps(size, indent=2))
    print(f"model {size['method']}: {size['parameters']:,} parameters, {size['flops_per_window'] / 1e6:.1f} MFLOPs "
          f"per window, ONNX {size['onnx_bytes'] / 1e6:.2f} MB; wrote {args.out / 'model_size.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
