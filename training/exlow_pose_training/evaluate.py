"""`exlow-pose-evaluate`: Table 1 of seed 000 (IFE, FDAE, OKS mAP per method) on any dataset split.

Each model is a training checkpoint (.pt, run with torch) or an exported .onnx (run with ONNX Runtime);
`--model NAME=PATH` may repeat. Prints the table, writes JSON, and can dump per-window predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from exlow_pose_ros.core.metrics import evaluate_poses
from exlow_pose_ros.core.model_contract import crops_to_input

from .dataset_format import WINDOW_LENGTH, ExLowDataset, SplitData, person_area

# crops (B, 5, 3, 16, 16) float32 [0, 1], detector keypoints (B, 5, 17, 3) or None -> poses (B, 5, 17, 2)
PoseFunction = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def window_rows(split: SplitData, windows: np.ndarray) -> np.ndarray:
    """(len(windows), 5) frame rows of the given window numbers."""
    return split.windows[windows][:, None] + np.arange(WINDOW_LENGTH)


def predict_split(pose_function: PoseFunction, split: SplitData, batch_size: int = 512,
                  description: str = "predict", use_detector: bool = True) -> np.ndarray:
    """Poses (N, 5, 17, 2) for every window of `split`; the detector's keypoints go in where the split has them
    (kind "tiny") and `use_detector` is set."""
    outputs = []
    detector = split.arrays.get("detector") if use_detector else None
    for start in tqdm(range(0, len(split), batch_size), desc=description, unit="batch", leave=False):
        rows = window_rows(split, np.arange(start, min(start + batch_size, len(split))))
        outputs.append(pose_function(crops_to_input(split.arrays["crops"][rows]),
                                     None if detector is None else detector[rows]))
    return np.concatenate(outputs) if outputs else np.zeros((0, WINDOW_LENGTH, 17, 2), np.float32)


def score_split(predicted: np.ndarray, split: SplitData) -> dict[str, float]:
    rows = window_rows(split, np.arange(len(split)))
    area = person_area(split.arrays)[rows]
    return evaluate_poses(predicted, split.arrays["keypoints"][rows], split.arrays["mask"][rows], area)


def pose_function_for(path: Path, threads: int = 0) -> PoseFunction:
    from exlow_pose_ros.core.backends import create_backend

    backend = create_backend("onnxruntime" if path.suffix == ".onnx" else "torch", path, threads=threads)
    return backend.infer


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    table = Table(title=title)
    for column in ("Method", "IFE", "FDAE", "mAP (%)", "OKS acc. (%)", "windows"):
        table.add_column(column, justify="left" if column == "Method" else "right")
    for name, result in rows.items():
        table.add_row(name, f"{result['ife']:.4f}", f"{result['fdae']:.4f}", f"{result['map']:.2f}",
                      f"{result['oks_accuracy']:.2f}", str(result["windows"]))
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a method's checkpoint (.pt) or exported model (.onnx); repeat for each row")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--dump-predictions", type=Path, help="write per-window predictions (.npz) to this folder")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    split = ExLowDataset(args.dataset).split(args.split)
    if len(split) == 0:
        print(f"{args.dataset} split {args.split!r} has no windows", file=sys.stderr)
        return 2
    results = {}
    for entry in args.model:
        name, _, path = entry.partition("=")
        if not path:
            parser.error(f"--model takes NAME=PATH, got {entry!r}")
        predicted = predict_split(pose_function_for(Path(path), args.threads), split, description=name)
        results[name] = score_split(predicted, split)
        if args.dump_predictions:
            args.dump_predictions.mkdir(parents=True, exist_ok=True)
            np.savez(args.dump_predictions / f"{name}.npz", poses=predicted, windows=split.windows,
                     track=split.arrays["track"][split.windows + WINDOW_LENGTH // 2],
                     frame=split.arrays["frame"][split.windows + WINDOW_LENGTH // 2])
    print_table(f"Table 1 on {args.dataset} [{args.split}]", results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dataset": str(args.dataset), "split": args.split, "results": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
