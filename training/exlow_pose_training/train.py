"""`exlow-pose-train`: trains one method (the autoencoder, PTEN or a Table-1 baseline) from a YAML config.

Runs as one process (CPU or one GPU) or under `torchrun` with DistributedDataParallel (NCCL on GPUs,
gloo on CPU). Rank 0 validates, logs and checkpoints: <out>/last.pt every epoch (resume with --resume),
<out>/best.pt at the best validation IFE, <out>/metrics.json and <out>/metrics.png.

Choices the paper leaves open (config fields): AdamW, learning rate 1e-3 with a linear warm-up and a
cosine decay, weight decay 1e-4, batch 256, window augmentations (flip, similarity jitter, colour,
blur, noise; flip only for the pose autoencoder).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import math
import os
import random
import sys
import time
import traceback
import weakref
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .augment import Augment, AugmentConfig
from .checkpoints import load_checkpoint, load_model, save_checkpoint
from .dataset_format import ExLowDataset
from .evaluate import predict_split, score_split
from .models import METHODS, SEED_METHODS, build_model
from .torch_dataset import DatasetPart, WindowDataset, make_loader, set_epoch


@dataclass
class TrainConfig:
    method: str
    out: str
    train: list[dict[str, Any]]             # parts: {root, split, weight?}
    val: list[dict[str, Any]] = field(default_factory=list)  # first part is scored each epoch
    model: dict[str, Any] = field(default_factory=dict)
    pretrained_autoencoder: str | None = None  # PTEN: the decoder comes from this checkpoint
    epochs: int = 30
    samples_per_epoch: int | None = None    # windows drawn per epoch (default: one pass)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    grad_clip: float = 5.0
    augment: dict[str, Any] | None = field(default_factory=dict)  # AugmentConfig fields; null = none
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    amp: bool = True                        # bfloat16 autocast on CUDA
    val_max_windows: int | None = 20000     # cap per-epoch validation cost
    dist_timeout_s: float = 1800.0          # DDP: a collective waiting longer than this fails (hung peer)

    @classmethod
    def load(cls, path: Path, overrides: list[str]) -> TrainConfig:
        values = yaml.safe_load(path.read_text()) or {}
        for override in overrides:
            key, _, text = override.partition("=")
            values[key] = yaml.safe_load(text)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys in {path}: {sorted(unknown)}")
        return cls(**values)


def distributed_setup(device_name: str, timeout_s: float = 1800.0) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if world > 1:
        # Import before init_process_group: torch.distributed.nn's functions take `group=group.WORLD` as
        # a default argument, evaluated at import. DistributedDataParallel imports it (through
        # torch._dynamo); imported after init, those defaults hold the live WORLD group forever, so
        # destroy_process_group cannot free it and gloo's worker threads outlive the interpreter. One of
        # them then drops the last collective's work during interpreter shutdown, needs the GIL for its
        # tensors, is ended by Python and aborts the process ("terminate called without an active
        # exception"). Imported first, the defaults are None.
        importlib.import_module("torch.distributed.nn")

        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    rank = dist.get_rank() if world > 1 else 0
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def distributed_teardown(world: int, *, succeeded: bool) -> bool:
    """Destroy the process group on every rank before the process exits; True if it is gone.

    After a successful run the ranks first meet at a barrier, so no rank tears down its connections
    while a peer still waits on a collective. After a failure there is no barrier (the failed peer may
    never reach it): the group is destroyed at once, which closes this rank's connections, so peers
    blocked on it fail instead of hanging (and the process-group timeout bounds the rest).
    The group is gone only when nothing references it any more: its backend's destructor then joins
    gloo's worker threads while the interpreter is still alive. Call this after the DDP wrapper (which
    holds the group) has been released.
    """
    if world <= 1 or not (dist.is_available() and dist.is_initialized()):
        return True
    group = weakref.ref(dist.group.WORLD)
    try:
        if succeeded:
            dist.barrier()
    finally:
        dist.destroy_process_group()
    gc.collect()
    released = group() is None
    if not released:
        print("warning: the process group is still referenced after destroy_process_group; its worker "
              "threads may outlive the interpreter", file=sys.stderr, flush=True)
    return released


def close_loader(loader: torch.utils.data.DataLoader) -> None:
    """Shut down a DataLoader's workers (and pin-memory thread) now rather than at garbage collection."""
    iterator = getattr(loader, "_iterator", None)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    loader._iterator = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Objective(torch.nn.Module):
    """forward(batch) = the method's training loss. DDP wraps this, since it synchronises gradients only
    through its wrapped module's forward, and SimpleBaseline's loss is not a function of its forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.loss(batch)[0]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validate(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Table-1 metrics on the first validation part (the autoencoder reconstructs the ground truth)."""
    if not config.val:
        return {}
    part = config.val[0]
    split = ExLowDataset(part["root"]).split(part["split"])
    if config.val_max_windows and len(split) > config.val_max_windows:  # an even subsample, same every epoch
        split.windows = split.windows[np.linspace(0, len(split) - 1, config.val_max_windows).astype(int)]
    network = model.eval()
    with torch.inference_mode():
        if config.method == "autoencoder":
            from .evaluate import window_rows

            rows = window_rows(split, np.arange(len(split)))
            poses = torch.from_numpy(split.arrays["keypoints"][rows]).to(device)
            mask = torch.from_numpy(split.arrays["mask"][rows]).to(device)
            predicted = network(poses, mask).float().cpu().numpy()
        else:
            takes_detector = bool(getattr(network, "detector_input", False))

            def run(crops: np.ndarray, detector: np.ndarray | None) -> np.ndarray:
                inputs = [torch.from_numpy(crops).to(device)]
                if takes_detector and detector is not None:
                    inputs.append(torch.from_numpy(detector).to(device))
                return network(*inputs).float().cpu().numpy()

            predicted = predict_split(run, split, description="validate")
    return score_split(predicted, split)


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    panels = [("loss", "train loss"), ("ife", "val IFE"), ("fdae", "val FDAE"), ("map", "val mAP (%)")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for axis, (key, label) in zip(axes, panels, strict=True):
        axis.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", markersize=3)
        axis.set_title(label)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    if config.method not in (*METHODS, *SEED_METHODS, "autoencoder"):
        raise ValueError(f"unknown method {config.method!r}")
    rank, world, device = distributed_setup(config.device, config.dist_timeout_s)
    try:
        result = _train(config, resume, rank, world, device)
    except BaseException as failure:
        if world > 1:  # the traceback keeps _train's locals (the DDP wrapper holds the group) alive
            traceback.clear_frames(failure.__traceback__)
        try:
            distributed_teardown(world, succeeded=False)
        except Exception as error:  # keep the original error; this one is only a consequence
            print(f"rank {rank}: process group teardown after the failure also failed: {error}",
                  file=sys.stderr, flush=True)
        raise
    # _train's frame (and with it the DDP wrapper, which holds the group) is gone here.
    if distributed_teardown(world, succeeded=True) and world > 1 and rank == 0:
        print("DDP: process group destroyed, its threads joined", flush=True)
    return result


def _train(config: TrainConfig, resume: bool, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    seed_everything(config.seed + rank)
    out = Path(config.out)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))

    pose_only = config.method == "autoencoder"
    augment_config = None if config.augment is None else AugmentConfig(**config.augment)
    if pose_only and augment_config is not None:  # no crops: only geometric, keypoint-side augmentation
        augment_config = AugmentConfig(flip_p=augment_config.flip_p, affine_p=0.0, colour_p=0.0, blur_p=0.0,
                                       noise_p=0.0)
    if config.val and not ExLowDataset(config.val[0]["root"]).manifest["splits"].get(config.val[0]["split"],
                                                                                    {}).get("windows"):
        # Found now (from the manifest, without loading the split) rather than after the first epoch's hours: an
        # exlow-pose-data scenes build with --roles train has an empty val split.
        raise ValueError(f"validation split {config.val[0]['root']}:{config.val[0]['split']} has no windows: "
                         "build it (exlow-pose-data scenes --roles train,val) or point val at a dataset that has "
                         "one (--set 'val=[{root: DIR, split: val}]')")
    parts = [DatasetPart(p["root"], p["split"], p.get("weight")) for p in config.train]
    dataset = WindowDataset(parts, with_crops=not pose_only,
                            transform=Augment(augment_config) if augment_config else None)
    loader = make_loader(dataset, config.batch_size, shuffle=True, num_workers=config.workers, seed=config.seed,
                         drop_last=True, num_samples=config.samples_per_epoch, pin_memory=device.type == "cuda",
                         persistent_workers=True)

    model = build_model(config.method, config.model).to(device)
    if config.method == "pten":
        if not config.pretrained_autoencoder:
            raise ValueError("method pten needs pretrained_autoencoder (train method 'autoencoder' first)")
        autoencoder, method = load_model(config.pretrained_autoencoder, str(device))
        if method != "autoencoder":
            raise ValueError(f"{config.pretrained_autoencoder} holds a {method!r} model, not the autoencoder")
        model.load_pretrained_decoder(autoencoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(loader))
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, total_steps, warmup))

    start_epoch, history, best = 0, [], math.inf
    if resume and (out / "last.pt").exists():
        state = load_checkpoint(out / "last.pt", str(device))
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        if is_main:
            print(f"resuming {config.method} at epoch {start_epoch}")
    objective = Objective(model)
    if world > 1:
        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.amp and device.type == "cuda" else None
    try:
        for epoch in range(start_epoch, config.epochs):
            set_epoch(loader, epoch)
            if hasattr(model, "set_progress"):  # CAL's second stage: epochs whose middle is past a share
                model.set_progress((epoch + 0.5) / config.epochs)
            model.train()
            started, losses = time.monotonic(), []
            for batch in tqdm(loader, desc=f"{config.method} epoch {epoch + 1}/{config.epochs}", unit="batch",
                              disable=not is_main, leave=False):
                batch = to_device(batch, device)
                if autocast:
                    with autocast:
                        loss = objective(batch)
                else:
                    loss = objective(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
            if is_main:
                record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else math.nan,
                          "lr": scheduler.get_last_lr()[0], "seconds": round(time.monotonic() - started, 1),
                          **validate(model, config, device)}
                history.append(record)
                improved = record.get("ife", record["loss"]) < best
                best = min(best, record.get("ife", record["loss"]))
                state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                         "history": history, "best": best, "metrics": record, "data": config.train}
                save_checkpoint(out / "last.pt", model, config.method, config.model, **state)
                if improved:
                    save_checkpoint(out / "best.pt", model, config.method, config.model, **state)
                (out / "metrics.json").write_text(json.dumps({"method": config.method, "history": history}, indent=2))
                plot_history(history, out / "metrics.png")
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                      flush=True)
            if world > 1:
                dist.barrier()
    finally:
        close_loader(loader)  # DataLoader workers / pin-memory thread end here, not at exit
    if world > 1:
        _check_replicas_agree(model, world)
    return {"history": history, "best": best}


def _check_replicas_agree(model: torch.nn.Module, world: int) -> None:
    """DDP keeps every rank's parameters identical; a mismatch means gradients were not synchronised."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).cpu()
    gathered = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(gathered, checksum)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")
    if dist.get_rank() == 0:
        print(f"DDP: {world} replicas in sync (parameter checksum {values[0]:.6f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exlow-pose-train", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="YAML config (training/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.load(args.config, args.set)
    except (ValueError, TypeError) as error:
        print(f"bad config: {error}", file=sys.stderr)
        return 2
    try:
        train(config, resume=args.resume)
    except ValueError as error:  # a config that points at the wrong data: say what to do, no traceback
        print(f"cannot train: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
