"""Real background plates with the people removed, and random views of them for each track.

A plate is the per-pixel temporal median of frames sampled from one time block of one video.
Splits take their plates from different time blocks (train, then val, then test, in the fractions the
teacher dataset's `--split-by time` uses), so no video frame feeds two splits. A block too short for
the median to lose a person who stands still keeps a "ghost": pixels where the block's median differs
strongly from the whole video's median are painted over from their surroundings (cv2.inpaint) within
the block's own plate; the whole-video median only says where, never supplies pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..dataset_format import SPLITS
from ..scenes import video_licence

# The videos, their licences (README "assets"), and the split time blocks (same defaults as
# teacher_dataset.py --split-by time: train, then val, then test).
BLOCK_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
PLATE_VERSION = 1          # bump when the plate recipe changes: invalidates cached plates
MEDIAN_SAMPLES = 48        # frames per block for the median
GHOST_THRESHOLD = 35       # max-channel difference (0..255) from the whole-video median that marks a ghost


@dataclass(frozen=True)
class Plate:
    """One background plate: an RGB image of a video's scene without people."""

    video: str
    split: str
    frames: tuple[int, int]   # first, last+1 frame of the block it was made from
    image: np.ndarray         # H x W x 3 uint8 RGB
    ghost_fraction: float     # fraction of pixels painted over

    def describe(self) -> dict:
        return {"video": self.video, "split": self.split, "frames": list(self.frames),
                "size": [int(self.image.shape[1]), int(self.image.shape[0])],
                "ghost_fraction": round(self.ghost_fraction, 5),
                "licence": video_licence(Path(self.video))}


def block_bounds(count: int, fractions: dict[str, float] = BLOCK_FRACTIONS) -> dict[str, tuple[int, int]]:
    """Frame range of each split's time block in a video of `count` frames."""
    bounds, start, edge = {}, 0, 0.0
    for split in SPLITS:
        edge += fractions[split]
        stop = count if split == SPLITS[-1] else round(edge * count)
        bounds[split] = (start, stop)
        start = stop
    return bounds


def _read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index, last = {}, 0, max(wanted)
    while index <= last:
        if index in wanted:
            ok, frame = capture.read()
            if not ok:
                break
            frames[index] = frame
        elif not capture.grab():
            break
        index += 1
    capture.release()
    return frames


def _median(frames: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def make_plates(video: Path) -> list[Plate]:
    """The plates of one video, one per split block (slow: decodes the video; cached by load_plates)."""
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if count <= 0:
        raise ValueError(f"cannot read frames of {video}")
    blocks = block_bounds(count)
    chosen = {split: np.unique(np.linspace(a, b - 1, min(MEDIAN_SAMPLES, b - a)).astype(int))
              for split, (a, b) in blocks.items() if b > a}
    whole = np.unique(np.linspace(0, count - 1, min(2 * MEDIAN_SAMPLES, count)).astype(int))
    frames = _read_frames(video, set(whole) | {int(i) for ids in chosen.values() for i in ids})
    reference = cv2.GaussianBlur(_median([frames[i] for i in whole if i in frames]), (5, 5), 0)
    plates = []
    for split, ids in chosen.items():
        plate = _median([frames[i] for i in ids if i in frames])
        difference = cv2.absdiff(cv2.GaussianBlur(plate, (5, 5), 0), reference).max(axis=2)
        # Opening drops thin edges from a slightly moving camera; dilation covers the ghost's rim.
        ghost = (difference > GHOST_THRESHOLD).astype(np.uint8)
        ghost = cv2.morphologyEx(ghost, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        ghost = cv2.dilate(ghost, np.ones((9, 9), np.uint8))
        if ghost.any():
            plate = cv2.inpaint(plate, ghost, 5, cv2.INPAINT_TELEA)
        plates.append(Plate(video.name, split, blocks[split], cv2.cvtColor(plate, cv2.COLOR_BGR2RGB),
                            float(ghost.mean())))
    return plates


FRAME_PLATES_PER_BLOCK = 6  # frames of a moving-camera clip kept per split block
FRAME_PLATE_MARGIN = 0.15   # each known person box grows by this share of its size on every side before painting


def make_frame_plates(video: Path, frames: tuple[int, int | None], boxes: dict[int, list[np.ndarray]],
                      per_block: int = FRAME_PLATES_PER_BLOCK) -> list[Plate]:
    """Plates of a clip whose camera moves (or whose people stand still): single frames of the clip's own
    stretch `frames` ([first, end)), with every person box known for that frame (`boxes`: frame -> (4,)
    boxes, e.g. the teacher's) painted over from the surroundings. Only frames that have known boxes are
    used, so a frame nobody labelled (people unknown) never becomes a background. Split blocks as
    make_plates, within the clip's stretch."""
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    first, end = frames[0], count if frames[1] is None else min(int(frames[1]), count)
    if end <= first:
        raise ValueError(f"cannot read frames {frames} of {video}")
    blocks = {split: (first + a, first + b) for split, (a, b) in block_bounds(end - first).items()}
    chosen: dict[str, list[int]] = {}
    for split, (a, b) in blocks.items():
        known = sorted(f for f in boxes if a <= f < b)
        if known:
            picks = np.unique(np.linspace(0, len(known) - 1, min(per_block, len(known))).astype(int))
            chosen[split] = [known[i] for i in picks]
    read = _read_frames(video, {f for ids in chosen.values() for f in ids}) if chosen else {}
    plates = []
    for split, ids in chosen.items():
        for index in ids:
            if index not in read:
                continue
            frame = read[index]
            height, width = frame.shape[:2]
            mask = np.zeros((height, width), np.uint8)
            for box in boxes[index]:
                x0, y0, x1, y1 = (float(v) for v in box)
                grow_x, grow_y = FRAME_PLATE_MARGIN * (x1 - x0), FRAME_PLATE_MARGIN * (y1 - y0)
                mask[max(0, int(y0 - grow_y)):min(height, int(np.ceil(y1 + grow_y))),
                     max(0, int(x0 - grow_x)):min(width, int(np.ceil(x1 + grow_x)))] = 1
            if mask.any():
                frame = cv2.inpaint(frame, mask, 5, cv2.INPAINT_TELEA)
            plates.append(Plate(video.name, split, (index, index + 1), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB),
                                float(mask.mean())))
    return plates


def load_frame_plates(video: Path, frames: tuple[int, int | None], boxes: dict[int, list[np.ndarray]],
                      cache_dir: Path | None) -> list[Plate]:
    """make_frame_plates, cached in `cache_dir` like load_plates (keyed by the clip's stretch and boxes)."""
    digest = hashlib.sha256(json.dumps({str(f): np.round(np.asarray(b, float), 1).tolist()
                                        for f, b in sorted(boxes.items())}).encode()).hexdigest()[:8]
    key = hashlib.sha256(f"{_video_key(video)}:{frames}:{FRAME_PLATES_PER_BLOCK}:{FRAME_PLATE_MARGIN}:{digest}"
                         .encode()).hexdigest()[:12]
    index = cache_dir / f"{video.stem}-frames-{key}.json" if cache_dir else None
    if index is not None and index.exists():
        cached = _read_cached(video.name, cache_dir, json.loads(index.read_text()))
        if cached is not None:
            return cached
    made = make_frame_plates(video, frames, boxes)
    if index is not None:
        _write_cache(made, index, [f"{video.stem}-frames-{key}-{p.split}-{n}.png" for n, p in enumerate(made)])
    return made


def _write_cache(plates: list[Plate], index: Path, names: list[str]) -> None:
    """The plates as PNGs beside `index`, and the index (JSON) that _read_cached reads."""
    index.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for plate, name in zip(plates, names, strict=True):
        cv2.imwrite(str(index.parent / name), cv2.cvtColor(plate.image, cv2.COLOR_RGB2BGR))
        entries.append({"file": name, "split": plate.split, "frames": list(plate.frames),
                        "ghost_fraction": plate.ghost_fraction})
    index.write_text(json.dumps(entries, indent=1))


def _video_key(video: Path) -> str:
    stat = video.stat()
    text = f"{video.name}:{stat.st_size}:{PLATE_VERSION}:{MEDIAN_SAMPLES}:{GHOST_THRESHOLD}:{BLOCK_FRACTIONS}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_cached(video: str, cache_dir: Path, entries: list[dict]) -> list[Plate] | None:
    plates = []
    for entry in entries:
        image = cv2.imread(str(cache_dir / entry["file"]), cv2.IMREAD_COLOR)
        if image is None:  # a damaged cache is remade
            return None
        plates.append(Plate(video, entry["split"], tuple(entry["frames"]), cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                            entry["ghost_fraction"]))
    return plates


def load_plates(videos: list[Path], cache_dir: Path | None) -> list[Plate]:
    """Plates of all `videos`, from `cache_dir` (PNG + JSON) when made before, else made and cached."""
    plates = []
    for video in videos:
        key = _video_key(video)
        index = cache_dir / f"{video.stem}-{key}.json" if cache_dir else None
        if index is not None and index.exists():
            cached = _read_cached(video.name, cache_dir, json.loads(index.read_text()))
            if cached is not None:
                plates.extend(cached)
                continue
        made = make_plates(video)
        plates.extend(made)
        if index is not None:
            _write_cache(made, index, [f"{video.stem}-{key}-{plate.split}.png" for plate in made])
    return plates


@dataclass(frozen=True)
class BackgroundView:
    """A random crop / scale / mirror / colour of a plate, as a virtual camera frame of `size`.

    Frame pixel (x, y) shows plate pixel (x0 + x / zoom, y0 + y / zoom) (mirrored when `mirror`); a
    panning camera shifts the frame content by (dx, dy) pixels.
    """

    plate: np.ndarray
    x0: float
    y0: float
    zoom: float          # frame pixels per plate pixel
    mirror: bool
    size: tuple[int, int]  # frame width, height
    colour: np.ndarray   # (3,) per-channel gain of the plate

    def patch(self, x: int, y: int, width: int, height: int, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Float32 RGB (0..255) of frame pixels x .. x+width-1, y .. y+height-1."""
        inverse = 1.0 / self.zoom
        # Index form of continuous mapping: plate index + 0.5 = x0 + (frame index + 0.5) / zoom.
        if self.mirror:
            ax, bx = -inverse, self.x0 + self.size[0] * inverse - (x - shift[0] + 0.5) * inverse - 0.5
        else:
            ax, bx = inverse, self.x0 + (x - shift[0] + 0.5) * inverse - 0.5
        by = self.y0 + (y - shift[1] + 0.5) * inverse - 0.5
        matrix = np.array([[ax, 0.0, bx], [0.0, inverse, by]], dtype=np.float64)
        out = cv2.warpAffine(self.plate, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT_101)
        return out.astype(np.float32) * self.colour


def sample_view(rng: np.random.Generator, plate: Plate, max_width: int = 1920) -> BackgroundView:
    """A random view: a crop of 45-100% of the plate's width, zoomed 0.7-1.6x (frame at most max_width)."""
    height, width = plate.image.shape[:2]
    crop_w = width * rng.uniform(0.45, 1.0)
    aspect = rng.choice([height / width, 0.75, 0.5625])
    crop_h = min(height, crop_w * aspect)
    crop_w = crop_h / aspect
    zoom = min(rng.uniform(0.7, 1.6), max_width / crop_w)
    size = (max(64, round(crop_w * zoom)), max(64, round(crop_h * zoom)))
    return BackgroundView(plate=plate.image, x0=float(rng.uniform(0, width - crop_w)),
                          y0=float(rng.uniform(0, height - crop_h)), zoom=float(zoom), mirror=bool(rng.random() < 0.5),
                          size=size, colour=rng.normal(1.0, 0.04, 3).astype(np.float32))
