"""PyTorch access to exlow_pose datasets: windows of WINDOW_LENGTH frames from one or more
(dataset root, split) parts, and a DataLoader helper for single-process and torchrun DDP training.

Each split is read once into memory (frames stored once; a window is a start index into them), so
forked DataLoader workers share the arrays copy-on-write. Indexing with a list of window indices
returns a whole batch gathered with one fancy-index per field, which is what make_loader does;
indexing with an int returns one window. A sample (batched: a leading batch axis on everything):

    crops      (5, 3, 16, 16) float32 in [0, 1]   absent when the parts have no crops (kind "motion")
    keypoints  (5, 17, 2)     float32, [-1, 1] crop coordinates; 0 where mask is false
    mask       (5, 17)        bool
    score      (5,)           float32 person confidence
    area       (5,)           float32 labelled person box area in crop units (OKS scale)
    detector   (5, 17, 3)     float32 the detector's keypoints (x, y, confidence) in crop coordinates, zeros
                              where absent; only when a part is of kind "tiny"
    track, frame, source      int64 of the centre frame; source indexes `WindowDataset.sources`
    part, index               int64: which (root, split) part, and the global window index
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from exlow_pose_training.dataset_format import WINDOW_LENGTH, ExLowDataset, person_area

_CENTRE = WINDOW_LENGTH // 2


@dataclass(frozen=True)
class DatasetPart:
    """One (dataset root, split) of a WindowDataset; `weight` is its share of shuffled draws."""

    root: str | Path
    split: str
    weight: float | None = None


PartLike = DatasetPart | tuple[str | Path, str] | tuple[str | Path, str, float]
Transform = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class WindowDataset(Dataset):
    """Windows of one or more (root, split) parts, concatenated in the order given.

    with_crops: None = crops if every part has them; False = never (e.g. pose-only training on a mix of
    motion and rendered data); True = required. transform: called on every sample or batch dict (e.g.
    augment.Augment()); it draws from the global torch RNG, which DataLoader seeds per worker.
    """

    def __init__(self, parts: PartLike | Sequence[PartLike], *, with_crops: bool | None = None,
                 transform: Transform | None = None) -> None:
        if isinstance(parts, DatasetPart) or (isinstance(parts, tuple) and isinstance(parts[1], str)):
            parts = [parts]
        self.parts = [p if isinstance(p, DatasetPart) else DatasetPart(*p) for p in parts]
        if not self.parts:
            raise ValueError("WindowDataset needs at least one (root, split) part")
        weighted = [p.weight is not None for p in self.parts]
        if any(weighted) and not all(weighted):
            raise ValueError("give a weight to every part or to none")
        if any(p.weight is not None and p.weight < 0 for p in self.parts):
            raise ValueError("part weights must not be negative")
        datasets = [ExLowDataset(p.root) for p in self.parts]
        self.kinds = [d.kind for d in datasets]
        has_crops = [d.manifest["crop"] is not None for d in datasets]
        if with_crops is None:
            with_crops = all(has_crops)
        elif with_crops and not all(has_crops):
            missing = [str(p.root) for p, c in zip(self.parts, has_crops, strict=True) if not c]
            raise ValueError(f"with_crops=True but these datasets have no crops: {missing}")
        self.with_crops = with_crops
        self.transform = transform

        fields = ["keypoints", "mask", "score", "track", "frame", "source", "area"] + (["crops"] if with_crops else [])
        # The product's detector keypoints (kind "tiny"); parts without them get zeros (= no detector input).
        self.with_detector = with_crops and any(d.kind == "tiny" for d in datasets)
        if self.with_detector:
            fields.append("detector")
        arrays: dict[str, list[np.ndarray]] = {name: [] for name in [*fields, "part"]}
        starts, part_of_window, self.sources = [], [], []
        frame_offset = 0
        for number, (part, dataset) in enumerate(zip(self.parts, datasets, strict=True)):
            data = dataset.split(part.split)
            data.arrays["area"] = person_area(data.arrays)
            if self.with_detector and "detector" not in data.arrays:
                data.arrays["detector"] = np.zeros((len(data.arrays["frame"]), 17, 3), np.float32)
            for name in fields:
                arrays[name].append(data.arrays[name])
            # Sources become global indices so that one table names them across parts.
            arrays["source"][-1] = data.arrays["source"].astype(np.int64) + len(self.sources)
            arrays["part"].append(np.full(len(data.arrays["frame"]), number, dtype=np.int64))
            self.sources += [{"part": number, "root": str(part.root), "kind": dataset.kind, "local_index": i, **s}
                             for i, s in enumerate(dataset.manifest["sources"])]
            starts.append(data.windows + frame_offset)
            part_of_window.append(np.full(len(data.windows), number, dtype=np.int64))
            frame_offset += len(data.arrays["frame"])
            del data
        # One part (the common case) is used as loaded; several are joined once, here.
        self.arrays = {name: values[0] if len(values) == 1 else np.concatenate(values)
                       for name, values in arrays.items()}
        self.starts = np.concatenate(starts).astype(np.int64)
        self.part_of_window = np.concatenate(part_of_window)
        self.part_lengths = [int(np.sum(self.part_of_window == n)) for n in range(len(self.parts))]

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def weighted(self) -> bool:
        return self.parts[0].weight is not None

    def window_weights(self) -> np.ndarray:
        """Per-window sampling weight: each part's weight spread evenly over its windows."""
        weights = np.zeros(len(self), dtype=np.float64)
        for number, part in enumerate(self.parts):
            length = self.part_lengths[number]
            if length:
                share = 1.0 if part.weight is None else part.weight
                weights[self.part_of_window == number] = share / length
        return weights

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        single = isinstance(index, (int, np.integer)) or (isinstance(index, (np.ndarray, torch.Tensor))
                                                          and index.ndim == 0)
        indices = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if len(self) == 0 or indices.min(initial=0) < -len(self) or indices.max(initial=0) >= len(self):
            raise IndexError(f"window index out of range for {len(self)} windows")
        indices = indices % max(len(self), 1)
        frames = self.starts[indices][:, None] + np.arange(WINDOW_LENGTH)  # (B, T) frame rows
        centre = frames[:, _CENTRE]
        sample = {
            "keypoints": torch.from_numpy(self.arrays["keypoints"][frames]),
            "mask": torch.from_numpy(self.arrays["mask"][frames]),
            "score": torch.from_numpy(self.arrays["score"][frames]),
            "area": torch.from_numpy(self.arrays["area"][frames]),
            "track": torch.from_numpy(self.arrays["track"][centre].astype(np.int64)),
            "frame": torch.from_numpy(self.arrays["frame"][centre].astype(np.int64)),
            "source": torch.from_numpy(self.arrays["source"][centre]),
            "part": torch.from_numpy(self.arrays["part"][centre]),
            "index": torch.from_numpy(indices),
        }
        if self.with_detector:
            sample["detector"] = torch.from_numpy(self.arrays["detector"][frames])
        if self.with_crops:
            # (B, T, H, W, C) uint8 -> (B, T, C, H, W) float in [0, 1]
            crops = torch.from_numpy(self.arrays["crops"][frames]).permute(0, 1, 4, 2, 3)
            sample["crops"] = crops.float().div_(255.0)
        if single:
            sample = {name: value[0] for name, value in sample.items()}
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def source_name(self, source: int) -> str:
        return str(self.sources[int(source)]["name"])


class MixtureSampler(Sampler[int]):
    """Draws windows with replacement so that each part gets its weight's share of the draws, whatever
    its size. Under DDP each rank draws its own num_samples // world_size from a rank-specific stream."""

    def __init__(self, weights: np.ndarray, num_samples: int | None = None, *, seed: int = 0,
                 rank: int = 0, num_replicas: int = 1) -> None:
        total = float(np.sum(weights))
        if not np.isfinite(total) or total <= 0:
            raise ValueError("sampling weights must have a positive sum")
        self.probabilities = np.asarray(weights, dtype=np.float64) / total
        self.num_samples = (num_samples or len(weights)) // num_replicas
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        self.epoch += 1  # a fresh draw next time even if the trainer never calls set_epoch
        return iter(rng.choice(len(self.probabilities), self.num_samples, p=self.probabilities).tolist())


def make_loader(dataset: WindowDataset, batch_size: int, *, shuffle: bool = True, num_workers: int = 0,
                seed: int = 0, drop_last: bool = False, num_samples: int | None = None, pin_memory: bool = False,
                persistent_workers: bool = False) -> DataLoader:
    """A DataLoader of batch dicts (see the module doc).

    Sampling: shuffled with part weights -> MixtureSampler (num_samples draws per epoch, default len);
    else under torch.distributed -> DistributedSampler (shuffle, seed, drop_last; call set_epoch);
    else RandomSampler (shuffle) or in order. Workers are seeded from `seed` and the rank, so augmentations
    are reproducible for a fixed seed and worker count.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    sampler: Sampler[int]
    if shuffle and dataset.weighted:
        sampler = MixtureSampler(dataset.window_weights(), num_samples, seed=seed, rank=rank, num_replicas=world)
    elif distributed:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                                     drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, num_samples=num_samples,
                                generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    # batch_size=None + a BatchSampler: the dataset receives whole index lists and gathers each batch at once.
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                      num_workers=num_workers, worker_init_fn=seed_worker, generator=generator,
                      pin_memory=pin_memory, persistent_workers=persistent_workers and num_workers > 0)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler the epoch (DistributedSampler reshuffles only through this)."""
    sampler = getattr(loader.sampler, "sampler", loader.sampler)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def seed_worker(worker_id: int) -> None:
    """DataLoader seeds each worker's torch RNG; make numpy and random follow it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
