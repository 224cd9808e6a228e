"""`exlow-pose-data sheet`: a PNG contact sheet of random windows of a dataset, to eyeball labels.

Each window is a cell: a title line (kind | source | track | frames) over its WINDOW_LENGTH frames
side by side, each 16x16 crop upscaled `--scale` times (nearest neighbour, so the real pixels stay
visible) with the labelled keypoints and COCO-17 limbs drawn on top: the person's left side in blue,
right side in orange, the middle (nose, shoulder and hip lines) in white. Unlabelled joints are not
drawn. Motion windows (no crops) show the skeleton on a near-black square. With --raw, each cell
gets a second row with the bare crops, since at 16x16 the skeleton hides much of the person.

Layout in pixels, with F = 16 * scale, T = WINDOW_LENGTH, C = columns, R = ceil(count / C) and
L = 2 frame rows with --raw (and crops), else 1:
    cell width  W = T * F + (T - 1) * GAP
    width       = PAD + C * (W + PAD)
    height      = HEADER + R * (TITLE + L * F + (L - 1) * GAP + PAD)

With --compare A B C (each `ROOT` or `ROOT:SPLIT`), each dataset gets its own panel (the sheet above,
`--count` windows in `--columns` columns), and the panels stand side by side, left to right in the
order given, their tops aligned, each as wide as its own sheet, with DIVIDER px of a divider colour
between two panels:
    width       = sum of the panel widths + (N - 1) * DIVIDER
    height      = max of the panel heights (shorter panels are padded below with the page colour)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from exlow_pose_ros.core.crop import CROP_SIZE
from exlow_pose_ros.core.keypoints import COCO17_LIMBS, COCO17_NAMES
from exlow_pose_training.dataset_format import SPLITS, WINDOW_LENGTH, ExLowDataset, SplitData

GAP, PAD, TITLE, HEADER = 2, 16, 20, 46
DIVIDER = 6                  # px between two panels of a --compare sheet
DIVIDER_COLOUR = (200, 200, 40)
PAGE = (48, 48, 52)          # sheet background (RGB)
EMPTY_FRAME = (12, 12, 14)   # background of a motion frame
TEXT = (235, 235, 235)
LEFT, RIGHT, MIDDLE = (60, 150, 255), (255, 140, 20), (245, 245, 245)
OUTLINE = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _side(index: int) -> tuple[int, int, int]:
    name = COCO17_NAMES[index]
    return LEFT if name.startswith("left_") else RIGHT if name.startswith("right_") else MIDDLE


def _limb_colour(a: int, b: int) -> tuple[int, int, int]:
    side_a, side_b = _side(a), _side(b)
    return side_a if side_a == side_b else MIDDLE


def sheet_size(count: int, columns: int, scale: int, frame_rows: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of a sheet of `count` windows."""
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    frame = CROP_SIZE * scale
    cell = WINDOW_LENGTH * frame + (WINDOW_LENGTH - 1) * GAP
    return PAD + columns * (cell + PAD), HEADER + rows * (TITLE + frame_rows * (frame + GAP) - GAP + PAD)


def draw_frame(crop: np.ndarray | None, keypoints: np.ndarray, mask: np.ndarray, scale: int) -> np.ndarray:
    """One frame, RGB uint8 (16*scale)^2: the crop upscaled (or a dark square) with its skeleton."""
    side = CROP_SIZE * scale
    if crop is None:
        image = np.full((side, side, 3), EMPTY_FRAME, dtype=np.uint8)
    else:
        image = np.ascontiguousarray(np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1))
    # Crop coordinates -> continuous pixels of the upscaled frame; cv2 addresses pixel centres, hence
    # the -0.5, and takes fixed point with 4 fractional bits for sub-pixel positions.
    points = ((keypoints + 1.0) / 2.0 * side - 0.5) * 16
    points = np.round(points).astype(np.int32)
    # Thin lines and small dots: at 16x16 a joint is a pixel or two, and the crop must stay visible.
    thickness = max(1, scale // 5)
    radius = round(max(1.5, 0.3 * scale) * 16)
    limbs = [(a, b) for a, b in COCO17_LIMBS if mask[a] and mask[b]]
    for a, b in limbs:  # black outlines first, so that limbs stand out on any crop colour
        cv2.line(image, tuple(points[a]), tuple(points[b]), OUTLINE, thickness + 2, cv2.LINE_AA, shift=4)
    for a, b in limbs:
        cv2.line(image, tuple(points[a]), tuple(points[b]), _limb_colour(a, b), thickness, cv2.LINE_AA, shift=4)
    for joint in np.flatnonzero(mask):
        cv2.circle(image, tuple(points[joint]), radius + 16, OUTLINE, -1, cv2.LINE_AA, shift=4)
        cv2.circle(image, tuple(points[joint]), radius, _side(int(joint)), -1, cv2.LINE_AA, shift=4)
    return image


def _put_text(image: np.ndarray, text: str, origin: tuple[int, int], width: int,
              colour: tuple[int, int, int] = TEXT, size: float = 0.45) -> int:
    """Draw text (ASCII; Hershey fonts have nothing else), shortened with '..' to fit `width`; returns its width."""
    text = text.encode("ascii", "replace").decode()
    while len(text) > 3 and cv2.getTextSize(text, FONT, size, 1)[0][0] > width:
        text = text[:-3] + ".."
    cv2.putText(image, text, origin, FONT, size, colour, 1, cv2.LINE_AA)
    return cv2.getTextSize(text, FONT, size, 1)[0][0]


def render_sheet(dataset: ExLowDataset, data: SplitData, indices: np.ndarray, *, split: str, columns: int = 4,
                 scale: int = 8, raw: bool = False, augment_seed: int | None = None) -> np.ndarray:
    """The sheet of windows `indices` of `data` as an RGB uint8 image."""
    has_crops = "crops" in data.arrays
    frame_rows = 2 if raw and has_crops else 1
    width, height = sheet_size(len(indices), columns, scale, frame_rows)
    columns = max(1, min(columns, len(indices)))
    sheet = np.full((height, width, 3), PAGE, dtype=np.uint8)
    frame = CROP_SIZE * scale
    cell = WINDOW_LENGTH * frame + (WINDOW_LENGTH - 1) * GAP
    sources = dataset.manifest["sources"]
    header = (f"{dataset.root.name}   kind {dataset.kind}   split {split}   "
              f"{len(indices)} of {len(data)} windows" + ("   (augmented)" if augment_seed is not None else ""))
    _put_text(sheet, header, (PAD, 18), width - 2 * PAD, size=0.55)
    x = PAD + _put_text(sheet, "left side", (PAD, 38), width, LEFT)
    x += 12 + _put_text(sheet, "right side", (x + 12, 38), width, RIGHT)
    x += 12 + _put_text(sheet, "middle", (x + 12, 38), width, MIDDLE)
    note = (f"{scale}x nearest upscale of the {CROP_SIZE}x{CROP_SIZE} crops" if has_crops
            else "no crops in a motion dataset: skeleton only")
    _put_text(sheet, f"(the person's own sides; {note}; unlabelled joints not drawn)", (x + 12, 38),
              width - x - PAD, TEXT, 0.4)
    augment = None
    if augment_seed is not None:
        from exlow_pose_training.augment import Augment  # torch only when asked for

        augment = Augment()
    for number, index in enumerate(indices):
        window = data.window(int(index))
        if augment is not None:
            window = _augmented(window, augment, augment_seed + number)
        left = PAD + (number % columns) * (cell + PAD)
        top = HEADER + (number // columns) * (TITLE + frame_rows * (frame + GAP) - GAP + PAD)
        frames = window["frame"]
        name = str(sources[int(window["source"][0])]["name"])
        title = f"{dataset.kind} | {name} | track {int(window['track'][0])} | frames {frames[0]}-{frames[-1]}"
        _put_text(sheet, title, (left, top + TITLE - 6), cell)
        for t in range(WINDOW_LENGTH):
            crop = window["crops"][t] if "crops" in window else None
            x0 = left + t * (frame + GAP)
            sheet[top + TITLE:top + TITLE + frame, x0:x0 + frame] = draw_frame(
                crop, window["keypoints"][t], window["mask"][t], scale)
            if frame_rows == 2:
                below = top + TITLE + frame + GAP
                sheet[below:below + frame, x0:x0 + frame] = np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)
    return sheet


def _augmented(window: dict[str, np.ndarray], augment, seed: int) -> dict[str, np.ndarray]:
    import torch

    sample = {"keypoints": torch.from_numpy(window["keypoints"]), "mask": torch.from_numpy(window["mask"])}
    if "crops" in window:
        sample["crops"] = torch.from_numpy(window["crops"]).permute(0, 3, 1, 2).float() / 255.0
    sample = augment(sample, seed)
    out = {**window, "keypoints": sample["keypoints"].numpy(), "mask": sample["mask"].numpy()}
    if "crops" in window:
        out["crops"] = (sample["crops"].permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    return out


def parse_spec(text: str, default_split: str) -> tuple[Path, str]:
    """`ROOT` or `ROOT:SPLIT` -> (root, split)."""
    root, _, split = text.rpartition(":")
    if root and split in SPLITS:
        return Path(root), split
    return Path(text), default_split


def pick_windows(data: SplitData, count: int, seed: int, per_source: bool = False) -> np.ndarray:
    """`count` random windows (all if fewer), sorted; with `per_source`, as evenly over sources as they allow."""
    rng = np.random.default_rng(seed)
    count = min(count, len(data))
    if not per_source:
        # Sorted, so that windows of one source and track sit next to each other.
        return np.sort(rng.choice(len(data), size=count, replace=False))
    sources = data.arrays["source"][data.windows]
    pools = [rng.permutation(np.flatnonzero(sources == s)).tolist() for s in np.unique(sources)]
    chosen: list[int] = []
    while len(chosen) < count:  # round robin over the sources, each in random order
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def compose_panels(panels: list[np.ndarray]) -> np.ndarray:
    """Panels (RGB) side by side, tops aligned, DIVIDER px of DIVIDER_COLOUR between them."""
    height = max(panel.shape[0] for panel in panels)
    width = sum(panel.shape[1] for panel in panels) + DIVIDER * (len(panels) - 1)
    sheet = np.full((height, width, 3), PAGE, dtype=np.uint8)
    x = 0
    for number, panel in enumerate(panels):
        if number:
            sheet[:, x:x + DIVIDER] = DIVIDER_COLOUR
            x += DIVIDER
        sheet[:panel.shape[0], x:x + panel.shape[1]] = panel
        x += panel.shape[1]
    return sheet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, nargs="?", help="dataset root (the folder holding manifest.json)")
    parser.add_argument("--compare", nargs="+", metavar="ROOT[:SPLIT]",
                        help="several datasets side by side, one panel each (instead of DATASET); a panel's split "
                             "is the one after ':' or --split")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--count", type=int, default=48, help="windows to show (fewer if the split is smaller)")
    parser.add_argument("--seed", type=int, default=0, help="picks the windows (and augmentations)")
    parser.add_argument("--columns", type=int, default=4, help="windows side by side")
    parser.add_argument("--scale", type=int, default=8, help="upscale factor of the 16x16 crops")
    parser.add_argument("--raw", action="store_true", help="add a row of the bare crops under each window")
    parser.add_argument("--per-source", action="store_true",
                        help="spread the windows evenly over the sources (videos, clips) instead of at random")
    parser.add_argument("--augment", action="store_true", help="show training augmentations (augment.py defaults)")


def run(args: argparse.Namespace) -> int:
    if (args.dataset is None) == (not args.compare):
        print("give either DATASET or --compare ROOT[:SPLIT] ...")
        return 2
    if args.count < 1 or args.columns < 1 or args.scale < 1:
        print("--count, --columns and --scale must be positive")
        return 2
    specs = [parse_spec(text, args.split) for text in args.compare] if args.compare else [(args.dataset, args.split)]
    panels, shown = [], 0
    for root, split in specs:
        dataset = ExLowDataset(root)
        data = dataset.split(split)
        if len(data) == 0:
            print(f"{root}: split {split!r} has no windows")
            return 1
        indices = pick_windows(data, args.count, args.seed, args.per_source)
        shown += len(indices)
        panels.append(render_sheet(dataset, data, indices, split=split, columns=args.columns, scale=args.scale,
                                   raw=args.raw, augment_seed=args.seed if args.augment else None))
    sheet = panels[0] if len(panels) == 1 else compose_panels(panels)
    indices = range(shown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        print(f"could not write {args.out}")
        return 1
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]} px, {len(indices)} windows)")
    return 0
