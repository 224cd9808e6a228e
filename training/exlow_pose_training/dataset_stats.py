"""`exlow-pose-data stats`: what a dataset holds, per split: windows, tracks, frames, sources, person
heights in source pixels (box height) and how often each keypoint is labelled."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_training.dataset_format import SPLITS, ExLowDataset, SplitData

# Person height bins (source pixels); the method is meant for the first ones.
HEIGHT_EDGES = (16, 32, 64, 128)
HEIGHT_BINS = ("<16", "16-32", "32-64", "64-128", ">=128")


def split_stats(data: SplitData) -> dict:
    """Counts, person height summary and histogram, and per-keypoint labelled fraction of one split."""
    arrays = data.arrays
    frames = len(arrays["frame"])
    heights = (arrays["box"][:, 3] - arrays["box"][:, 1]).astype(np.float64)
    # Bin i holds EDGES[i-1] <= h < EDGES[i]; side="right" puts h == 16 in "16-32".
    histogram = np.bincount(np.searchsorted(HEIGHT_EDGES, heights, side="right"), minlength=len(HEIGHT_BINS))
    stats = {
        "windows": len(data),
        "tracks": len(np.unique(arrays["track"])),
        "frames": frames,
        "sources": len(np.unique(arrays["source"])),
        "height_px": None,
        "height_histogram": {label: int(n) for label, n in zip(HEIGHT_BINS, histogram, strict=True)},
        "visibility": None,
    }
    if frames:
        stats["height_px"] = {
            "min": float(heights.min()),
            "median": float(np.median(heights)),
            "p90": float(np.percentile(heights, 90)),
            "max": float(heights.max()),
        }
        visible = arrays["mask"].mean(axis=0)
        stats["visibility"] = {name: float(v) for name, v in zip(COCO17_NAMES, visible, strict=True)}
    return stats


def dataset_stats(root: str | Path) -> dict:
    dataset = ExLowDataset(root)
    return {
        "dataset": str(dataset.root),
        "kind": dataset.kind,
        "generator": dataset.manifest["generator"]["name"],
        "splits": {split: split_stats(dataset.split(split)) for split in SPLITS},
    }


def print_stats(stats: dict, console: Console | None = None) -> None:
    console = console or Console()
    splits = stats["splits"]
    console.print(f"[bold]{stats['dataset']}[/bold]  kind {stats['kind']}, generator {stats['generator']}")
    counts = Table(title="counts, and person height in source px (box)")
    for column in ("split", "windows", "tracks", "frames", "sources", "h min", "median", "p90", "max"):
        counts.add_column(column, justify="left" if column == "split" else "right", min_width=len(column))
    for split, s in splits.items():
        height = s["height_px"]
        summary = [f"{height[k]:.4g}" for k in ("min", "median", "p90", "max")] if height else ["-"] * 4
        counts.add_row(split, *(f"{s[k]:,}" for k in ("windows", "tracks", "frames", "sources")), *summary)
    console.print(counts)

    histogram = Table(title="share of frames by person height (px)")
    histogram.add_column("split")
    for label in HEIGHT_BINS:
        histogram.add_column(label, justify="right")
    for split, s in splits.items():
        total = s["frames"]
        histogram.add_row(split, *(f"{n / total:.1%}" if total else "-" for n in s["height_histogram"].values()))
    console.print(histogram)

    visibility = Table(title="labelled keypoints (mask true)")
    visibility.add_column("keypoint")
    for split in splits:
        visibility.add_column(split, justify="right")
    for name in COCO17_NAMES:
        visibility.add_row(name, *(f"{s['visibility'][name]:.1%}" if s["visibility"] else "-"
                                   for s in splits.values()))
    console.print(visibility)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="dataset root (the folder holding manifest.json)")
    parser.add_argument("--json", type=Path, help="also write the statistics here as JSON")


def run(args: argparse.Namespace) -> int:
    stats = dataset_stats(args.dataset)
    print_stats(stats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(stats, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
