"""Tiny datasets in the real format, with a signal a model can learn: each crop shows a bright dot at
every labelled keypoint of a person walking in place, over a noisy background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exlow_pose_training.dataset_format import DatasetWriter

# A standing pose in crop coordinates (COCO-17 order), head up, feet down.
STANDING = np.array([
    [0.0, -0.75], [-0.05, -0.8], [0.05, -0.8], [-0.1, -0.78], [0.1, -0.78],
    [-0.25, -0.5], [0.25, -0.5], [-0.35, -0.2], [0.35, -0.2], [-0.4, 0.1], [0.4, 0.1],
    [-0.15, 0.1], [0.15, 0.1], [-0.18, 0.45], [0.18, 0.45], [-0.2, 0.8], [0.2, 0.8],
], dtype=np.float32)


def render(keypoints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    crop = rng.integers(0, 40, size=(16, 16, 3)).astype(np.float32)
    pixel = np.clip(((keypoints + 1) / 2 * 16).astype(int), 0, 15)
    for index, (x, y) in enumerate(pixel):
        crop[y, x] = [255, 40 + 12 * index, 255 - 12 * index]
    return crop.astype(np.uint8)


def write_tiny_dataset(root: Path, kind: str = "synthetic", tracks_per_split: int = 4, frames: int = 24,
                       seed: int = 0, detector_noise: float = 0.08, found_share: float = 0.8,
                       scenes: tuple[str, ...] = ("a", "b"), train_scenes: tuple[str, ...] = ("tiny",)) -> Path:
    """kind "tiny" adds the detector's keypoints: the labels plus Gaussian noise of `detector_noise` (0: exact),
    on a `found_share` of the frames (the tracker reports all found ones but each track's first frame); its
    test split has one source per scene name, and the train split one per `train_scenes` name."""
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, kind, "test.tiny_datasets", provenance={"purpose": "tests"})
    for split in ("train", "val", "test"):
        names = scenes if split == "test" else train_scenes if split == "train" else ("tiny",)
        sources = [writer.add_source(f"tiny_{split}_{name}", split, scene=name) for name in names]
        for number in range(tracks_per_split):
            _add_track(writer, sources[number % len(sources)], kind, frames, rng, detector_noise, found_share)
    writer.close()
    return root


def _add_track(writer: DatasetWriter, source: int, kind: str, frames: int, rng: np.random.Generator,
               detector_noise: float, found_share: float) -> None:
    phase = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.1, 0.1, size=2)
    t = np.arange(frames)
    swing = 0.25 * np.sin(0.4 * t + phase)[:, None]
    keypoints = np.repeat(STANDING[None], frames, axis=0) + offset
    keypoints[:, 9:11, 1] -= swing  # wrists swing up and down
    keypoints[:, 15:17, 0] += swing  # feet step
    mask = rng.random((frames, 17)) > 0.05
    region = np.tile([0, 0, 160], (frames, 1))
    box = np.tile([40.0, 8.0, 120.0, 152.0], (frames, 1))
    arrays = {"frame": t, "keypoints": keypoints, "mask": mask, "box": box, "region": region, "score": np.ones(frames)}
    if kind != "motion":
        arrays["crops"] = np.stack([render(k, rng) for k in keypoints])
    if kind == "tiny":
        found = rng.random(frames) < found_share
        detector = np.zeros((frames, 17, 3), np.float32)
        detector[:, :, :2] = keypoints + rng.normal(0, detector_noise, keypoints.shape) if detector_noise else \
            keypoints
        detector[:, :, 2] = rng.uniform(0.3, 1.0, (frames, 17))
        arrays.update(detector=np.where(found[:, None, None], detector, 0), found=found,
                      tracked=found & (t > 0), label_box=box, height=np.full(frames, 16.0))
    writer.add_track(source, arrays)
