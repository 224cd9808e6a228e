"""`exlow-pose-finetune-detector`: fine-tune YOLO11n-pose on tiny people as the tracker node feeds them to it
(`exlow-pose-data detector`), distilled from the same network on the full-resolution frames.

Ultralytics' own trainer does the work. What is chosen here, and why:
- imgsz = the dataset's tile side, so the trainer resizes nothing: the tiles already carry the tracker's
  shrink-then-enlarge look;
- a small AdamW learning rate with cosine decay, and scale augmentation kept small: it is a fine-tune of COCO
  features on a few thousand images, and the scale is the point of the data;
- the checkpoint is chosen by Ultralytics' fitness (box and pose mAP) on the validation stretch of a training
  scene's film (role val), never on an unseen scene.

Writes <out>/weights/{best,last}.pt and every epoch's epochN.pt (Ultralytics), <out>/finetune.json (settings,
the pretrained model's and each epoch's validation metrics) and prints the table. The epoch and the verdict are
the report's: `exlow-pose-data scenes --tiny-detector <out>/weights/epochN.pt --teacher-from ...`, then
`exlow-pose-report --scenes ... --yolo-scenes ...` (README "Results", "A detector fine-tuned for tiny people").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from exlow_pose_ros.core.provenance import file_sha256

from .scenes import REPO
from .teacher_dataset import DEFAULT_TEACHER

METRICS = {"box mAP50-95": "metrics/mAP50-95(B)", "pose mAP50": "metrics/mAP50(P)",
           "pose mAP50-95": "metrics/mAP50-95(P)", "pose recall": "metrics/recall(P)"}


def validation_metrics(model, data: Path, imgsz: int, batch: int) -> dict[str, float]:
    """Ultralytics' validation of `model` on the dataset's val split, as the METRICS names."""
    results = model.val(data=str(data), imgsz=imgsz, batch=batch, device="cpu", plots=False, verbose=False)
    values = results.results_dict
    return {name: float(values[key]) for name, key in METRICS.items() if key in values}


def epoch_rows(results_csv: Path) -> list[dict[str, float]]:
    with results_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    return [{"epoch": int(float(row["epoch"])),
             **{name: float(row[key]) for name, key in METRICS.items() if key in row}} for row in rows]


def print_table(before: dict[str, float], epochs: list[dict[str, float]]) -> None:
    table = Table(title="Validation stretch (role val): pretrained, then each fine-tuning epoch")
    table.add_column("model")
    for name in METRICS:
        table.add_column(name, justify="right")
    table.add_row("pretrained YOLO11n-pose", *[f"{before.get(n, float('nan')):.3f}" for n in METRICS])
    for row in epochs:
        table.add_row(f"epoch {row['epoch']}", *[f"{row.get(n, float('nan')):.3f}" for n in METRICS])
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-finetune-detector", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "results" / "datasets" / "detector_tiny",
                        help="an exlow-pose-data detector folder")
    parser.add_argument("--weights", type=Path, default=DEFAULT_TEACHER, help="the weights to start from")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "detector_finetune")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr0", type=float, default=3e-4, help="AdamW learning rate at the start")
    parser.add_argument("--scale", type=float, default=0.1, help="Ultralytics' scale augmentation (+- share)")
    parser.add_argument("--mosaic", type=float, default=0.5, help="Ultralytics' mosaic probability")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    os.environ.setdefault("YOLO_OFFLINE", "1")
    data_yaml = args.data / "data.yaml"
    manifest_path = args.data / "manifest.json"
    if not data_yaml.is_file() or not manifest_path.is_file():
        print(f"{args.data} is not an exlow-pose-data detector folder: build it with `exlow-pose-data detector "
              f"--out {args.data}`", file=sys.stderr)
        return 2
    if not args.weights.is_file():
        print(f"weights {args.weights} not found: run scripts/setup.sh, or pass --weights PATH", file=sys.stderr)
        return 2
    from ultralytics import YOLO

    manifest = json.loads(manifest_path.read_text())
    imgsz = int(manifest["settings"]["tile"])
    before = validation_metrics(YOLO(str(args.weights), task="pose"), data_yaml, imgsz, args.batch)
    model = YOLO(str(args.weights), task="pose")
    model.train(data=str(data_yaml), imgsz=imgsz, epochs=args.epochs, batch=args.batch, workers=args.workers,
                device="cpu", optimizer="AdamW", lr0=args.lr0, cos_lr=True, warmup_epochs=1, scale=args.scale,
                mosaic=args.mosaic, close_mosaic=max(1, args.epochs // 4), plots=False, amp=False,
                project=str(args.out.parent.resolve()), name=args.out.name, exist_ok=True, verbose=False, seed=0,
                deterministic=True, save_period=1)  # weights/epochN.pt: the product chooses the epoch (README)
    epochs = epoch_rows(args.out / "results.csv")
    best = args.out / "weights" / "best.pt"
    summary = {
        "command": " ".join(sys.argv), "data": str(args.data), "data_sources": manifest["sources"],
        "start_weights": {"path": str(args.weights), "sha256": file_sha256(args.weights),
                          "licence": "AGPL-3.0 (Ultralytics YOLO11n-pose)"},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "imgsz": imgsz, "validation_pretrained": before, "validation_epochs": epochs,
        "best": {"path": str(best), "sha256": file_sha256(best) if best.is_file() else None},
    }
    (args.out / "finetune.json").write_text(json.dumps(summary, indent=2))
    print_table(before, epochs)
    print(f"wrote {args.out / 'weights'} and {args.out / 'finetune.json'}; choose the epoch on the validation "
          "stretch, then score the unseen scenes once (README 'Results', 'A detector fine-tuned for tiny people')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
