"""`exlow-pose-data sheet` and `exlow-pose-data stats` on tiny hand-made datasets."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_training import contact_sheet, dataset_stats
from exlow_pose_training.dataset_format import DatasetWriter

# Heights of the 11 train frames, in frame order; sorted: 10 12 15 16 20 31 32 50 64 100 128.
TRAIN_HEIGHTS = [50.0, 10.0, 128.0, 31.0, 16.0, 64.0, 12.0, 20.0, 100.0, 15.0, 32.0]
NOSE_SEEN = [True, True, False, True, True, False, True, False, True, True, False]  # 7 of 11


def track_arrays(frames: list[int], heights: list[float], nose: list[bool], with_crops: bool) -> dict:
    count = len(frames)
    keypoints = np.zeros((count, 17, 2), np.float32)
    mask = np.ones((count, 17), bool)
    mask[:, COCO17_NAMES.index("left_ankle")] = False
    mask[:, COCO17_NAMES.index("nose")] = nose
    # A small stick person: joints spread over the crop, left side at negative u.
    for k, name in enumerate(COCO17_NAMES):
        side = -0.25 if name.startswith("left_") else 0.25 if name.startswith("right_") else 0.0
        keypoints[:, k] = [side, -0.8 + 1.6 * k / 16]
    box = np.zeros((count, 4), np.float32)
    box[:, 2] = np.asarray(heights) / 2
    box[:, 3] = heights
    arrays = {"keypoints": keypoints, "mask": mask, "box": box, "region": np.tile([0, 0, 16], (count, 1)),
              "score": np.ones(count), "frame": np.asarray(frames)}
    if with_crops:
        crops = np.zeros((count, 16, 16, 3), np.uint8)
        crops[:, :, :, 0] = 200                            # a red crop...
        crops[:, :8, :8, 2] = np.asarray(frames)[:, None, None] * 10  # ...with the frame number in blue, top left
        arrays["crops"] = crops
    return arrays


def write_dataset(root: Path, kind: str) -> Path:
    crops = kind != "motion"
    writer = DatasetWriter(root, kind, "test", {})
    a, b, c = writer.add_source("video_a", "train"), writer.add_source("video_b", "train"), writer.add_source(
        "video_c", "val")
    # Train: 7 consecutive frames (3 windows), then 4 frames with a gap (0 windows); val: 5 frames (1 window).
    writer.add_track(a, track_arrays(list(range(7)), TRAIN_HEIGHTS[:7], NOSE_SEEN[:7], crops))
    writer.add_track(b, track_arrays([20, 21, 23, 24], TRAIN_HEIGHTS[7:], NOSE_SEEN[7:], crops))
    writer.add_track(c, track_arrays(list(range(5)), [40.0] * 5, [True] * 5, crops))
    writer.close()
    return root


def parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_stats_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_dataset(tmp_path / "data", "synthetic")
    out = tmp_path / "stats.json"
    assert dataset_stats.run(parse(dataset_stats, [str(root), "--json", str(out)])) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "left_ankle" in printed
    stats = json.loads(out.read_text())
    train, val, test = (stats["splits"][s] for s in ("train", "val", "test"))
    assert stats["kind"] == "synthetic"
    assert (train["windows"], train["tracks"], train["frames"], train["sources"]) == (3, 2, 11, 2)
    assert (val["windows"], val["tracks"], val["frames"], val["sources"]) == (1, 1, 5, 1)
    assert (test["windows"], test["frames"], test["height_px"]) == (0, 0, None)
    # Sorted heights: 10 12 15 16 20 [31] 32 50 64 [100] 128 -> median the 6th, p90 at rank 0.9 * 10 = 9.
    assert train["height_px"] == {"min": 10.0, "median": 31.0, "p90": 100.0, "max": 128.0}
    assert train["height_histogram"] == {"<16": 3, "16-32": 3, "32-64": 2, "64-128": 2, ">=128": 1}
    assert val["height_histogram"]["32-64"] == 5
    assert train["visibility"]["nose"] == pytest.approx(7 / 11)
    assert train["visibility"]["left_ankle"] == 0.0 and train["visibility"]["right_ankle"] == 1.0


@pytest.mark.parametrize("kind", ["synthetic", "motion"])
def test_contact_sheet(tmp_path: Path, kind: str) -> None:
    root = write_dataset(tmp_path / kind, kind)
    out = tmp_path / "sheet" / f"{kind}.png"
    args = parse(contact_sheet, [str(root), "--split", "train", "--out", str(out), "--count", "48",
                                 "--columns", "2", "--scale", "4", "--seed", "1"])
    assert contact_sheet.run(args) == 0
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    # Only 3 train windows exist: 2 columns, 2 rows of 5 frames of 64 px (layout in the module doc).
    frame, windows, columns = 16 * 4, 3, 2
    cell = 5 * frame + 4 * contact_sheet.GAP
    width = contact_sheet.PAD + columns * (cell + contact_sheet.PAD)
    height = contact_sheet.HEADER + math.ceil(windows / columns) * (contact_sheet.TITLE + frame + contact_sheet.PAD)
    assert image.shape == (height, width, 3)
    page = np.all(image == contact_sheet.PAGE, axis=-1)
    assert 0.2 < page.mean() < 0.8
    # Both sides of the skeleton are drawn in their colours.
    for colour in (contact_sheet.LEFT, contact_sheet.RIGHT):
        assert np.all(image == colour, axis=-1).sum() > 50
    top, left = contact_sheet.HEADER + contact_sheet.TITLE, contact_sheet.PAD
    corner = image[top:top + 4, left:left + 4].reshape(-1, 3)  # first frame's top-left crop pixel, 4x upscaled
    if kind == "motion":
        assert np.all(corner == contact_sheet.EMPTY_FRAME)
    else:
        # Windows are shown in index order: window 0 is video_a frames 0-4; frame 0 has blue 0, frame 1 blue 10.
        assert np.all(corner == (200, 0, 0))
        second = image[top:top + 4, left + frame + contact_sheet.GAP:][:4, :4].reshape(-1, 3)
        assert np.all(second == (200, 0, 10))


def test_contact_sheet_of_empty_split_fails_cleanly(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "data", "synthetic")
    args = parse(contact_sheet, [str(root), "--split", "test", "--out", str(tmp_path / "x.png")])
    assert contact_sheet.run(args) == 1
    assert not (tmp_path / "x.png").exists()


def test_contact_sheet_raw_row_shows_bare_crops(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "data", "synthetic")
    out = tmp_path / "raw.png"
    args = parse(contact_sheet, [str(root), "--out", str(out), "--count", "1", "--scale", "2", "--raw"])
    assert contact_sheet.run(args) == 0
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    frame, gap, pad = 32, contact_sheet.GAP, contact_sheet.PAD
    assert image.shape == (contact_sheet.HEADER + contact_sheet.TITLE + 2 * frame + gap + pad,
                           pad + 5 * frame + 4 * gap + pad, 3)
    # The lower row is the crop alone: top-left quarter blue = 10 * frame number, the rest plain red.
    below = contact_sheet.HEADER + contact_sheet.TITLE + frame + gap
    # --count 1 picks one of the 3 train windows (video_a frames 0-4, 1-5 or 2-6).
    start = int(image[below, pad, 2]) // 10
    assert start in (0, 1, 2)
    for t in range(5):
        crop = image[below:below + frame, pad + t * (frame + gap):][:, :frame]
        assert np.all(crop[:16, :16] == (200, 0, 10 * (start + t)))
        assert np.all(crop[16:, :] == (200, 0, 0)) and np.all(crop[:, 16:] == (200, 0, 0))


def test_compare_sheet_puts_datasets_side_by_side(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", "synthetic")
    second = write_dataset(tmp_path / "b", "teacher")
    out = tmp_path / "compare.png"
    # Panel 1: the 3 train windows of a, 1 column; panel 2: the 1 val window of b (ROOT:SPLIT).
    args = parse(contact_sheet, ["--compare", str(first), f"{second}:val", "--out", str(out), "--count", "5",
                                 "--columns", "1", "--scale", "2", "--per-source"])
    assert contact_sheet.run(args) == 0
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    frame, gap, pad, divider = 32, contact_sheet.GAP, contact_sheet.PAD, contact_sheet.DIVIDER
    panel_width = pad + 5 * frame + 4 * gap + pad          # one column (layout in the module doc)
    heights = [contact_sheet.HEADER + rows * (contact_sheet.TITLE + frame + pad) for rows in (3, 1)]
    assert image.shape == (max(heights), 2 * panel_width + divider, 3)
    # The divider: a full-height band of its colour between the panels, and nowhere else a full column.
    band = np.all(image == contact_sheet.DIVIDER_COLOUR, axis=-1).all(axis=0)
    assert np.flatnonzero(band).tolist() == list(range(panel_width, panel_width + divider))
    # The shorter right panel is padded below with the page colour.
    right = image[heights[1]:, panel_width + divider:]
    assert np.all(right == contact_sheet.PAGE)
    # Crop pixels (red, frame number in blue at the top left) in both panels, at their panels' first frames.
    top = contact_sheet.HEADER + contact_sheet.TITLE
    for left in (pad, panel_width + divider + pad):
        assert np.all(image[top:top + 4, left:left + 4] == (200, 0, 0))  # frame 0: blue 0


def test_compare_sheet_spreads_windows_over_sources(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "a", "synthetic")
    data = contact_sheet.ExLowDataset(root).split("train")
    # Train: 3 windows of video_a, none of video_b (its 4 frames have a gap); 2 picks: both from video_a.
    picks = contact_sheet.pick_windows(data, 2, seed=0, per_source=True)
    assert len(picks) == 2 and len(set(picks.tolist())) == 2


def test_sheet_needs_a_dataset_or_compare(tmp_path: Path) -> None:
    args = parse(contact_sheet, ["--out", str(tmp_path / "x.png")])
    assert contact_sheet.run(args) == 2
