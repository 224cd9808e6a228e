"""The one on-disk format of every exlow_pose dataset kind: teacher-labelled real video, the motion
corpus (poses only) and synthetic renders.

    <root>/manifest.json              format, kind, generator, provenance, sources, per-split counts
    <root>/<split>/shard-NNNNN.npz    per-frame arrays (FRAME_FIELDS), uncompressed for fast loading

Frames are stored once, grouped by track and in frame order. Windows of WINDOW_LENGTH consecutive
frames (stride 1) are derived on load from runs of consecutive frame numbers of one track, so a
window never spans a gap or two tracks. A track belongs to one source (a video or a motion clip),
and a source to one split, so splits cannot share a person's footage.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exlow_pose_ros.core.crop import CROP_MARGIN, CROP_SIZE, FILL_VALUE
from exlow_pose_ros.core.keypoints import NUM_KEYPOINTS

FORMAT_NAME = "exlow_pose_dataset"
FORMAT_VERSION = 1
WINDOW_LENGTH = 5
KINDS = ("teacher", "motion", "synthetic", "tiny")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FrameField:
    dtype: str
    shape: tuple[int, ...]
    doc: str


FRAME_FIELDS: dict[str, FrameField] = {
    "keypoints": FrameField("float32", (NUM_KEYPOINTS, 2),
                            "COCO-17 keypoints in crop coordinates ([-1, 1] over `region`); 0 where mask is false"),
    "mask": FrameField("bool", (NUM_KEYPOINTS,), "keypoint is labelled and reliable"),
    "box": FrameField("float32", (4,), "person box x_min, y_min, x_max, y_max in source pixels"),
    "region": FrameField("int32", (3,), "crop square x0, y0, side in source pixels (exlow_pose_ros.core.crop)"),
    "score": FrameField("float32", (), "confidence of the person (teacher box score; 1 for exact ground truth)"),
    "frame": FrameField("int64", (), "frame number in the source; consecutive frames differ by 1"),
    "track": FrameField("int64", (), "track id, unique within the dataset (assigned by the writer)"),
    "source": FrameField("int32", (), "index into manifest['sources'] (assigned by the writer)"),
    "crops": FrameField("uint8", (CROP_SIZE, CROP_SIZE, 3), "RGB crop of `region` (absent for kind 'motion')"),
}
WRITER_ASSIGNED = ("track", "source")
# Kind "tiny": the frame shrunk so the scene's median person is `height` px tall, seen as the product sees it.
# `box`, `region` and `crops` then come from the detector's box on the shrunk frame when it found the person
# (else from the teacher's box, scaled), and `keypoints` are the teacher's, scaled, in that region.
TINY_FIELDS: dict[str, FrameField] = {
    "detector": FrameField("float32", (NUM_KEYPOINTS, 3),
                           "the detector's own keypoints on the shrunk frame, (x, y) in crop coordinates and "
                           "confidence; all 0 where `found` is false"),
    "found": FrameField("bool", (), "the detector found this labelled person (box IoU >= 0.3)"),
    "tracked": FrameField("bool", (), "the product's tracker (ByteTrack on the same detections) reported it"),
    "label_box": FrameField("float32", (4,), "the teacher's person box, scaled to the shrunk frame (OKS area)"),
    "height": FrameField("float32", (), "target median person height of the shrunk frame, px (H)"),
}


def fields_for(kind: str) -> dict[str, FrameField]:
    """The per-frame fields a dataset of `kind` stores."""
    fields = {n: f for n, f in FRAME_FIELDS.items() if kind != "motion" or n != "crops"}
    return {**fields, **TINY_FIELDS} if kind == "tiny" else fields


def person_area(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per frame, the labelled person's box area in crop units (the crop spans 2 x 2): the OKS object area s^2.
    Kind "tiny" crops around the detector's box, so its labelled box is `label_box`. 1 without boxes (motion)."""
    if "region" not in arrays or "box" not in arrays:
        return np.ones(len(arrays["frame"]), np.float32)
    box = np.asarray(arrays["label_box"] if "label_box" in arrays else arrays["box"], np.float64)
    side = np.maximum(np.asarray(arrays["region"])[..., 2].astype(np.float64), 1.0)
    return ((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1]) * (2.0 / side) ** 2).astype(np.float32)


def crop_convention() -> dict:
    return {"size": CROP_SIZE, "margin": CROP_MARGIN, "fill": FILL_VALUE, "interpolation": "area",
            "colour": "rgb", "implementation": "exlow_pose_ros.core.crop"}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_fractions(text: str) -> dict[str, float]:
    """`train=0.7,val=0.1,test=0.2` -> a share per split (missing splits 0); the shares must add up to 1."""
    import argparse

    fractions = dict.fromkeys(SPLITS, 0.0)
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in fractions:
            raise argparse.ArgumentTypeError(f"unknown split {name!r} in --fractions")
        fractions[name] = float(value)
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"--fractions must add up to 1, got {text}")
    return fractions


def window_starts(track: np.ndarray, frame: np.ndarray, length: int = WINDOW_LENGTH) -> np.ndarray:
    """Indices i where frames i .. i+length-1 are one track's consecutive frame numbers."""
    count = len(track)
    if count < length:
        return np.zeros(0, dtype=np.int64)
    span = count - length + 1
    same_track = track[length - 1:] == track[:span]
    consecutive = frame[length - 1:] - frame[:span] == length - 1
    # Frames of a track are strictly increasing, so an end-minus-start of length-1 means no gap.
    return np.flatnonzero(same_track & consecutive).astype(np.int64)


class DatasetWriter:
    """Writes one dataset: add sources, then each source's tracks; close() writes the manifest."""

    def __init__(self, root: str | Path, kind: str, generator: str, provenance: Mapping,
                 shard_frames: int = 20_000) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.root = Path(root)
        if (self.root / "manifest.json").exists():
            raise FileExistsError(f"{self.root} already holds a dataset; choose another --out or delete it")
        self.root.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.has_crops = kind != "motion"
        self.generator = generator
        self.provenance = dict(provenance)
        self.shard_frames = shard_frames
        self.sources: list[dict] = []
        self._pending: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        self._pending_frames = dict.fromkeys(SPLITS, 0)
        self._shards: dict[str, list[str]] = {s: [] for s in SPLITS}
        self._counts = {s: {"frames": 0, "windows": 0, "tracks": 0} for s in SPLITS}
        self._next_track = 0
        self._started = time.time()

    def add_source(self, name: str, split: str, **info) -> int:
        """Register a video or clip; returns its index for add_track."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.sources.append({"name": name, "split": split, **info})
        return len(self.sources) - 1

    def add_track(self, source: int, arrays: Mapping[str, np.ndarray]) -> int:
        """Store one track's frames (every FRAME_FIELD but track and source); returns its track id."""
        split = self.sources[source]["split"]
        schema = fields_for(self.kind)
        expected = {n for n in schema if n not in WRITER_ASSIGNED}
        if set(arrays) != expected:
            raise ValueError(f"track arrays must be exactly {sorted(expected)}, got {sorted(arrays)}")
        count = len(arrays["frame"])
        track = {}
        for name in expected:
            spec = schema[name]
            value = np.asarray(arrays[name]).astype(spec.dtype, copy=False)
            if value.shape != (count, *spec.shape):
                raise ValueError(f"{name}: shape {value.shape}, expected {(count, *spec.shape)}")
            track[name] = value
        if count == 0:
            raise ValueError("a track needs at least one frame")
        if np.any(np.diff(track["frame"]) <= 0):
            raise ValueError("frame numbers of a track must strictly increase")
        if not np.all(np.isfinite(track["keypoints"])) or not np.all(np.isfinite(track["box"])):
            raise ValueError("keypoints and boxes must be finite")
        track["keypoints"] = np.where(track["mask"][..., None], track["keypoints"], 0).astype(np.float32)
        track_id = self._next_track
        self._next_track += 1
        track["track"] = np.full(count, track_id, dtype=np.int64)
        track["source"] = np.full(count, source, dtype=np.int32)
        self._pending[split].append(track)
        self._pending_frames[split] += count
        counts = self._counts[split]
        counts["frames"] += count
        counts["tracks"] += 1
        counts["windows"] += len(window_starts(track["track"], track["frame"]))
        if self._pending_frames[split] >= self.shard_frames:
            self._flush(split)
        return track_id

    def _flush(self, split: str) -> None:
        tracks = self._pending[split]
        if not tracks:
            return
        arrays = {name: np.concatenate([t[name] for t in tracks]) for name in tracks[0]}
        relative = f"{split}/shard-{len(self._shards[split]):05d}.npz"
        (self.root / split).mkdir(exist_ok=True)
        np.savez(self.root / relative, **arrays)
        self._shards[split].append(relative)
        self._pending[split] = []
        self._pending_frames[split] = 0

    def close(self) -> dict:
        """Flush the last shards and write manifest.json; returns the manifest."""
        for split in SPLITS:
            self._flush(split)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "keypoint_layout": "coco17",
            "window": {"length": WINDOW_LENGTH, "stride": 1},
            "crop": crop_convention() if self.has_crops else None,
            "fields": {n: {"dtype": f.dtype, "shape": list(f.shape), "doc": f.doc}
                       for n, f in fields_for(self.kind).items()},
            "generator": {"name": self.generator, "git_commit": git_commit(),
                          "created_unix": round(self._started), "seconds": round(time.time() - self._started, 1)},
            "provenance": self.provenance,
            "sources": self.sources,
            "splits": {s: {**self._counts[s], "shards": self._shards[s]} for s in SPLITS},
        }
        temporary = self.root / "manifest.json.tmp"
        temporary.write_text(json.dumps(manifest, indent=2, default=_json_default))
        os.replace(temporary, self.root / "manifest.json")
        return manifest


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in the manifest")


@dataclass
class SplitData:
    """All frames of one split in memory, with the derived window start indices."""

    arrays: dict[str, np.ndarray]
    windows: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.windows = window_starts(self.arrays["track"], self.arrays["frame"])

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> dict[str, np.ndarray]:
        """Arrays of window `index`, each with a leading axis of WINDOW_LENGTH."""
        start = int(self.windows[index])
        return {name: values[start:start + WINDOW_LENGTH] for name, values in self.arrays.items()}


class ExLowDataset:
    """A dataset on disk: its manifest, and each split's frames on demand."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path} not found: build a dataset with `exlow-pose-data`")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT_NAME or self.manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.root} is not an {FORMAT_NAME} v{FORMAT_VERSION} dataset")
        self.kind: str = self.manifest["kind"]

    def split(self, name: str) -> SplitData:
        shards = self.manifest["splits"][name]["shards"]
        if not shards:
            schema = fields_for(self.kind)
            return SplitData({n: np.zeros((0, *schema[n].shape), schema[n].dtype) for n in self.manifest["fields"]})
        loaded = [np.load(self.root / shard) for shard in shards]
        return SplitData({n: np.concatenate([shard[n] for shard in loaded]) for n in loaded[0].files})


def scene_of_rows(dataset: ExLowDataset, split: SplitData) -> np.ndarray:
    """Per row of `split`, the scene its source belongs to (the source's name where it names no scene)."""
    scenes = np.array([source.get("scene", source["name"]) for source in dataset.manifest["sources"]])
    return scenes[split.arrays["source"]]
