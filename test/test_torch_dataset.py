"""WindowDataset / make_loader over tiny on-disk datasets, and the window augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from exlow_pose_ros.core.keypoints import COCO17_NAMES
from exlow_pose_training.augment import Augment, AugmentConfig, augment_window, flip_window
from exlow_pose_training.dataset_format import DatasetWriter
from exlow_pose_training.torch_dataset import DatasetPart, WindowDataset, make_loader, set_epoch

NOSE = COCO17_NAMES.index("nose")
LEFT_WRIST = COCO17_NAMES.index("left_wrist")
RIGHT_WRIST = COCO17_NAMES.index("right_wrist")

# (source name, split, code, frame numbers): the code is painted into every crop of the track.
TRACKS = [
    ("clip_a", "train", 11, list(range(0, 7))),                                # 3 windows
    ("clip_a", "train", 22, [10, 11, 12, 13, 15, 16, 17, 18, 19, 20]),        # gap after 13: 0 + 2 windows
    ("clip_b", "train", 33, list(range(100, 105))),                           # 1 window
    ("clip_c", "val", 44, list(range(0, 6))),                                 # 2 windows
]
# Expected train windows as (code, first frame), by hand from TRACKS.
TRAIN_WINDOWS = {(11, 0), (11, 1), (11, 2), (22, 15), (22, 16), (33, 100)}


def write_dataset(root: Path, kind: str) -> Path:
    writer = DatasetWriter(root, kind, "test", {"note": "unit test"})
    sources: dict[str, int] = {}
    for name, split, code, frames in TRACKS:
        if name not in sources:
            sources[name] = writer.add_source(name, split)
        count = len(frames)
        keypoints = np.zeros((count, 17, 2), np.float32)
        keypoints[:, NOSE, 0] = np.asarray(frames) / 1000.0  # the frame number, readable from the labels
        keypoints[:, NOSE, 1] = code / 100.0
        mask = np.zeros((count, 17), bool)
        mask[:, NOSE] = True
        arrays = {
            "keypoints": keypoints, "mask": mask,
            "box": np.tile([0.0, 0.0, 10.0, 20.0], (count, 1)), "region": np.tile([0, 0, 22], (count, 1)),
            "score": np.full(count, 0.5), "frame": np.asarray(frames),
        }
        if kind != "motion":
            crops = np.zeros((count, 16, 16, 3), np.uint8)
            crops[..., 0] = np.asarray(frames)[:, None, None] % 256  # red = frame number
            crops[..., 1] = code                                     # green = track code
            arrays["crops"] = crops
        writer.add_track(sources[name], arrays)
    writer.close()
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic", "synthetic")


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "motion", "motion")


def test_windows_come_from_one_track_without_gaps(synthetic: Path) -> None:
    dataset = WindowDataset((synthetic, "train"))
    assert len(dataset) == len(TRAIN_WINDOWS)
    batch = dataset[list(range(len(dataset)))]
    assert batch["crops"].shape == (6, 5, 3, 16, 16) and batch["crops"].dtype == torch.float32
    assert batch["keypoints"].shape == (6, 5, 17, 2) and batch["mask"].shape == (6, 5, 17)
    red = torch.round(batch["crops"][:, :, 0, 3, 3] * 255).long()      # frame numbers of each window's frames
    green = torch.round(batch["crops"][:, :, 1, 3, 3] * 255).long()    # track code of each frame
    assert (green == green[:, :1]).all(), "a window mixes tracks"
    assert (red[:, 1:] - red[:, :-1] == 1).all(), "a window spans a gap"
    assert {(int(g[0]), int(r[0])) for g, r in zip(green, red, strict=True)} == TRAIN_WINDOWS
    # Labels and metadata belong to the same frames as the pixels.
    assert torch.allclose(batch["keypoints"][:, :, NOSE, 0] * 1000, red.float(), atol=1e-3)
    assert torch.equal(batch["frame"], red[:, 2])
    assert batch["crops"].min() >= 0 and batch["crops"].max() <= 1


def test_single_window_and_sources(synthetic: Path) -> None:
    dataset = WindowDataset([(synthetic, "train"), (synthetic, "val")])
    assert len(dataset) == 6 + 2
    last = dataset[-1]  # the second val window: clip_c frames 1..5
    assert last["crops"].shape == (5, 3, 16, 16)
    assert int(last["frame"]) == 3 and int(last["part"]) == 1
    assert dataset.source_name(int(last["source"])) == "clip_c"
    assert round(float(last["crops"][0, 1, 0, 0]) * 255) == 44
    first_b = next(i for i in range(len(dataset)) if dataset.source_name(int(dataset[i]["source"])) == "clip_b")
    assert int(dataset[first_b]["frame"]) == 102
    with pytest.raises(IndexError):
        dataset[8]


def test_motion_has_no_crops_and_mixing_rules(synthetic: Path, motion: Path) -> None:
    poses = WindowDataset((motion, "train"))
    sample = poses[0]
    assert "crops" not in sample and sample["keypoints"].shape == (5, 17, 2)
    mixed = WindowDataset([(synthetic, "train"), (motion, "train")])
    assert not mixed.with_crops and len(mixed) == 12 and "crops" not in mixed[0]
    with pytest.raises(ValueError, match="no crops"):
        WindowDataset([(synthetic, "train"), (motion, "train")], with_crops=True)


def test_weighted_mixing_follows_weights_not_sizes(synthetic: Path, motion: Path) -> None:
    # Both parts have 6 windows; weights 3:1 must give ~75% of draws to the first.
    dataset = WindowDataset([DatasetPart(synthetic, "train", 3.0), DatasetPart(motion, "val", 1.0)])
    assert len(dataset) == 6 + 2
    loader = make_loader(dataset, batch_size=500, num_samples=4000, seed=1)
    parts = torch.cat([batch["part"] for batch in loader])
    assert len(parts) == 4000
    assert abs(float((parts == 0).float().mean()) - 0.75) < 0.03
    first_epoch = parts
    second_epoch = torch.cat([batch["part"] for batch in loader])
    assert not torch.equal(first_epoch, second_epoch), "each epoch should draw anew"


def test_loader_is_reproducible_with_workers(synthetic: Path) -> None:
    dataset = WindowDataset((synthetic, "train"), transform=Augment())

    def epoch(seed: int) -> list[torch.Tensor]:
        loader = make_loader(dataset, batch_size=4, num_workers=2, seed=seed)
        return [batch["crops"] for batch in loader]

    first, again, other = epoch(7), epoch(7), epoch(8)
    assert [b.shape[0] for b in first] == [4, 2]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_unshuffled_loader_keeps_order_and_every_window(synthetic: Path) -> None:
    dataset = WindowDataset((synthetic, "train"))
    loader = make_loader(dataset, batch_size=4, shuffle=False)
    assert torch.equal(torch.cat([b["index"] for b in loader]), torch.arange(6))


def test_loader_uses_distributed_sampler_under_ddp(synthetic: Path, tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = make_loader(WindowDataset((synthetic, "train")), batch_size=4, seed=3)
        assert isinstance(loader.sampler.sampler, DistributedSampler)
        set_epoch(loader, 1)
        assert loader.sampler.sampler.epoch == 1
        assert sorted(torch.cat([b["index"] for b in loader]).tolist()) == list(range(6))
    finally:
        dist.destroy_process_group()


# --- augmentations ---------------------------------------------------------------------------------------


def dot_window(rows: list[int], cols: list[int], joint: int = LEFT_WRIST, blob: bool = False) -> dict:
    """A window whose frame t has a bright dot (or small Gaussian blob) at pixel (rows[t], cols[t]),
    labelled as `joint` at that pixel's centre; nothing else labelled."""
    crops = torch.zeros(5, 3, 16, 16)
    keypoints = torch.zeros(5, 17, 2)
    mask = torch.zeros(5, 17, dtype=torch.bool)
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    for t, (r, c) in enumerate(zip(rows, cols, strict=True)):
        if blob:
            crops[t] = torch.exp(-((y - r) ** 2 + (x - c) ** 2) / (2 * 0.8**2))
        else:
            crops[t, :, r, c] = 1.0
        keypoints[t, joint] = torch.tensor([(c + 0.5) / 8 - 1, (r + 0.5) / 8 - 1])
        mask[t, joint] = True
    return {"crops": crops, "keypoints": keypoints, "mask": mask}


def pixel_of(uv: torch.Tensor) -> torch.Tensor:
    """Continuous pixel position (x, y) of crop coordinates, independent of the code under test."""
    return (uv + 1) * 8


def test_flip_moves_left_wrist_dot_and_relabels_it() -> None:
    rows, cols = [3, 4, 5, 6, 7], [2, 3, 4, 5, 6]
    window = dot_window(rows, cols)
    for flipped in (flip_window(window), augment_window(window, AugmentConfig(
            flip_p=1.0, affine_p=0.0, colour_p=0.0, blur_p=0.0, noise_p=0.0), generator=0)):
        for t in range(5):
            image = flipped["crops"][t, 0]
            row, col = divmod(int(torch.argmax(image)), 16)
            assert (row, col) == (rows[t], 15 - cols[t])
            assert flipped["mask"][t, RIGHT_WRIST] and int(flipped["mask"][t].sum()) == 1
            x, y = pixel_of(flipped["keypoints"][t, RIGHT_WRIST]).tolist()
            assert (x, y) == pytest.approx((15 - cols[t] + 0.5, rows[t] + 0.5), abs=1e-5)
            assert flipped["keypoints"][t, LEFT_WRIST].abs().sum() == 0


def test_flip_twice_is_identity() -> None:
    generator = torch.Generator().manual_seed(0)
    window = {"crops": torch.rand(8, 5, 3, 16, 16, generator=generator),
              "keypoints": torch.rand(8, 5, 17, 2, generator=generator) * 2 - 1,
              "mask": torch.rand(8, 5, 17, generator=generator) > 0.3}
    window["keypoints"] = torch.where(window["mask"][..., None], window["keypoints"], 0)
    twice = flip_window(flip_window(window))
    for key in window:
        assert torch.equal(twice[key], window[key]), key
    assert not torch.equal(flip_window(window)["crops"], window["crops"])


def test_similarity_jitter_keeps_dot_under_its_keypoint() -> None:
    # Strong jitter, and blobs well off the centre so that a wrong rotation or translation shows.
    config = AugmentConfig(flip_p=0.5, affine_p=1.0, scale=(0.8, 1.25), shift=0.15, rotate_deg=20.0,
                           colour_p=0.0, blur_p=0.0, noise_p=0.0)
    rows, cols = [4, 5, 8, 11, 11], [11, 4, 12, 5, 10]
    window = dot_window(rows, cols, blob=True)
    batch = {k: v.expand(32, *v.shape).clone() for k, v in window.items()}
    out = augment_window(batch, config, generator=3)
    y, x = torch.meshgrid(torch.arange(16.0) + 0.5, torch.arange(16.0) + 0.5, indexing="ij")
    errors, moved = [], 0.0
    for b in range(32):
        for t in range(5):
            image = out["crops"][b, t, 0]
            centroid = torch.stack([(image * x).sum(), (image * y).sum()]) / image.sum()
            joint = RIGHT_WRIST if out["mask"][b, t, RIGHT_WRIST] else LEFT_WRIST
            assert out["mask"][b, t, joint]
            keypoint = pixel_of(out["keypoints"][b, t, joint])
            errors.append(float(torch.dist(centroid, keypoint)))
            moved = max(moved, float(torch.dist(keypoint, pixel_of(window["keypoints"][t, LEFT_WRIST]))))
    # Resampling a blob moves its centroid by a small fraction of a pixel (less near the border clip).
    assert max(errors) < 0.4 and np.mean(errors) < 0.06, (max(errors), np.mean(errors))
    assert moved > 2.0, "the jitter should actually move things"


def test_photometric_changes_pixels_not_keypoints() -> None:
    config = AugmentConfig(flip_p=0.0, affine_p=0.0, colour_p=1.0, blur_p=1.0, noise_p=1.0)
    generator = torch.Generator().manual_seed(1)
    window = {"crops": torch.rand(4, 5, 3, 16, 16, generator=generator),
              "keypoints": torch.rand(4, 5, 17, 2, generator=generator) * 2 - 1,
              "mask": torch.ones(4, 5, 17, dtype=torch.bool)}
    out = augment_window(window, config, generator=5)
    assert torch.equal(out["keypoints"], window["keypoints"]) and torch.equal(out["mask"], window["mask"])
    assert (out["crops"] - window["crops"]).abs().mean() > 0.02
    assert out["crops"].min() >= 0 and out["crops"].max() <= 1


def test_augment_is_deterministic_per_seed_and_shared_across_frames() -> None:
    window = dot_window([5] * 5, [4] * 5)  # five identical frames
    config = AugmentConfig(noise_p=0.0)    # noise alone differs per frame
    a = augment_window(window, config, generator=np.random.default_rng(9))
    b = augment_window(window, config, generator=np.random.default_rng(9))
    c = augment_window(window, config, generator=np.random.default_rng(10))
    assert all(torch.equal(a[k], b[k]) for k in window)
    assert not torch.equal(a["crops"], c["crops"]) or not torch.equal(a["keypoints"], c["keypoints"])
    assert all(torch.equal(a["crops"][t], a["crops"][0]) for t in range(5))
    assert all(torch.equal(a["keypoints"][t], a["keypoints"][0]) for t in range(5))


def test_augment_motion_window_without_crops() -> None:
    window = dot_window([5] * 5, [4] * 5)
    del window["crops"]
    out = augment_window(window, AugmentConfig(flip_p=1.0, affine_p=0.0), generator=0)
    assert "crops" not in out and out["mask"][:, RIGHT_WRIST].all()
    assert torch.allclose(out["keypoints"][:, RIGHT_WRIST, 0], -window["keypoints"][:, LEFT_WRIST, 0])


def test_mask_outside_drops_keypoints_pushed_out_of_the_crop() -> None:
    window = dot_window([1] * 5, [1] * 5)  # left wrist near the top-left corner, at u = v = -0.8125
    config = AugmentConfig(flip_p=0.0, affine_p=1.0, scale=(1.5, 1.5), shift=0.0, rotate_deg=0.0,
                           colour_p=0.0, blur_p=0.0, noise_p=0.0)
    kept = augment_window(window, config, generator=0)
    # Zooming by 1.5 about the centre sends -0.8125 to -1.21875: outside, but still labelled by default.
    assert kept["mask"][:, LEFT_WRIST].all()
    assert torch.allclose(kept["keypoints"][:, LEFT_WRIST], torch.full((5, 2), -1.21875))
    dropped = augment_window(window, AugmentConfig(**{**config.__dict__, "mask_outside": True}), generator=0)
    assert not dropped["mask"].any() and not dropped["keypoints"].any()
