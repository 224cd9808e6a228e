"""Penn Action annotations (13 joints, 2D, per video frame) -> COCO-17 keypoint tracks.

The files give, per frame, x, y and visibility of: head, left/right shoulder, elbow, wrist, hip,
knee, ankle (in that order, per the data README), a person box, the image size and the official
split flag `train` (1 = train; the test clips carry -1 in the real files, so anything but 1 is test).

Left and right: in these annotations the joint labelled "left" is the person's anatomical RIGHT
(observer's left). Independent checks on the 2,326 files agree (see `side_evidence`): in "front"-view
clips the "left" shoulder is left of the "right" one in the image in 96 % of frames (a person facing
the camera has the anatomical left on the image right), in "back" views 22 %; and in push-up clips
seen from the side, where the head's side of the ankles gives the direction the body lies in and
the far side of the body is the occluded one, the labelled "left" joints are the visible ones exactly
when the anatomical right side faces the camera, in 178 of 179 clips with a clear answer. COCO's
left is anatomical, so the columns are swapped (PENN_LABELS_MIRRORED); set it to False to take the
labels literally. (Without the video frames one cannot tell labels mirrored from x mirrored; for
poses alone the swap gives the anatomically right skeleton either way.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from exlow_pose_ros.core.keypoints import COCO17_NAMES, NUM_KEYPOINTS

PENN_JOINTS: tuple[str, ...] = (
    "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
PENN_LABELS_MIRRORED = True
LICENCE = "research use; cite W. Zhang, M. Zhu, K. Derpanis, 'From Actemes to Action', ICCV 2013"
VAL_EVERY = 10  # every 10th official-train clip of each action (in id order) is held out as val
BOX_PAD = 0.1   # boxes derived from joints: joint extent + 10 % of its larger side each way (Penn's boxes are looser)


def _swap_side(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


def penn_to_coco(mirrored: bool = PENN_LABELS_MIRRORED) -> np.ndarray:
    """For each COCO-17 keypoint, the Penn joint column that fills it, or -1 (face points, never labelled)."""
    columns = np.full(NUM_KEYPOINTS, -1, dtype=np.int64)
    for column, name in enumerate(PENN_JOINTS):
        coco_name = _swap_side(name) if mirrored else name
        if coco_name in COCO17_NAMES:
            columns[COCO17_NAMES.index(coco_name)] = column
    return columns


@dataclass
class PennClip:
    """One Penn Action clip as COCO-17 pixel keypoints; frames without a usable person box are dropped."""

    name: str            # "penn_0001"
    split: str           # train / val / test
    action: str
    view: str            # Penn's "pose" field: front, back, left, right
    width: int
    height: int
    frame: np.ndarray     # (n,) 0-based frame index; image file frames/NNNN/{frame + 1:06d}.jpg
    keypoints: np.ndarray  # (n, 17, 2) pixels
    mask: np.ndarray      # (n, 17) bool
    box: np.ndarray       # (n, 4) x_min, y_min, x_max, y_max pixels
    box_from_joints: int  # frames whose box was derived from the joints (missing or degenerate in the file)
    dropped: int          # frames left out (no usable box)


def split_of(clip_id: int, official_train: bool, action: str, train_ids_of_action: list[int]) -> str:
    """Official split; a deterministic ~10 % of each action's official-train clips become val."""
    if not official_train:
        return "test"
    rank = sorted(train_ids_of_action).index(clip_id)
    return "val" if rank % VAL_EVERY == VAL_EVERY // 2 else "train"


def _read(path: Path) -> dict:
    return scipy.io.loadmat(str(path), variable_names=("x", "y", "visibility", "bbox", "train", "dimensions",
                                                        "action", "pose"))


def _boxes(x: np.ndarray, y: np.ndarray, usable: np.ndarray, bbox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boxes: the file's (x_min, y_min, x_max, y_max) where sound, else from the usable joints.

    A file box is unsound when missing (fewer bbox rows than frames), non-finite, at most 1 px wide or
    tall, or holding fewer than half of the frame's usable joints. Returns boxes (NaN where none) and
    a flag of boxes derived from joints.
    """
    count = len(x)
    boxes = np.full((count, 4), np.nan)
    rows = min(count, len(bbox))
    boxes[:rows] = bbox[:rows]
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    sound = np.isfinite(boxes).all(axis=1) & (width > 1) & (height > 1)
    pad = (0.1 * np.maximum(width, height) + 2)[:, None]
    inside = ((x >= boxes[:, :1] - pad) & (x <= boxes[:, 2:3] + pad)
              & (y >= boxes[:, 1:2] - pad) & (y <= boxes[:, 3:] + pad))
    held = (inside & usable).sum(axis=1)
    sound &= 2 * held >= usable.sum(axis=1)
    derived = np.zeros(count, dtype=bool)
    for index in np.flatnonzero(~sound):
        joints = usable[index]
        boxes[index] = np.nan
        if joints.sum() < 2:
            continue
        lo = np.array([x[index, joints].min(), y[index, joints].min()])
        hi = np.array([x[index, joints].max(), y[index, joints].max()])
        extra = BOX_PAD * max(hi - lo)
        if max(hi - lo) <= 1:
            continue
        boxes[index] = [*(lo - extra), *(hi + extra)]
        derived[index] = True
    return boxes, derived


def load_penn_clip(path: str | Path, split: str, data: dict | None = None,
                   mirrored: bool = PENN_LABELS_MIRRORED) -> PennClip:
    """One .mat file as a PennClip in `split`."""
    path = Path(path)
    data = data if data is not None else _read(path)
    x = np.asarray(data["x"], dtype=np.float64)
    y = np.asarray(data["y"], dtype=np.float64)
    visible = np.asarray(data["visibility"]).astype(bool)
    height, width = (int(v) for v in np.asarray(data["dimensions"]).ravel()[:2])
    # Visible and inside the image: a few clips have joints beyond the stated image size.
    usable = visible & np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    boxes, derived = _boxes(x, y, usable, np.asarray(data["bbox"], dtype=np.float64).reshape(-1, 4))
    keep = np.isfinite(boxes).all(axis=1)
    columns = penn_to_coco(mirrored)
    labelled = columns >= 0
    keypoints = np.zeros((len(x), NUM_KEYPOINTS, 2))
    mask = np.zeros((len(x), NUM_KEYPOINTS), dtype=bool)
    keypoints[:, labelled, 0] = x[:, columns[labelled]]
    keypoints[:, labelled, 1] = y[:, columns[labelled]]
    mask[:, labelled] = usable[:, columns[labelled]]
    keypoints[~mask] = 0.0
    return PennClip(
        name=f"penn_{path.stem}", split=split, action=str(np.asarray(data["action"]).ravel()[0]),
        view=str(np.asarray(data["pose"]).ravel()[0]), width=width, height=height,
        frame=np.flatnonzero(keep).astype(np.int64), keypoints=keypoints[keep].astype(np.float32),
        mask=mask[keep], box=boxes[keep].astype(np.float32), box_from_joints=int((derived & keep).sum()),
        dropped=int((~keep).sum()),
    )


def penn_splits(folder: str | Path) -> dict[Path, str]:
    """Every .mat file of the folder (in id order) -> its split."""
    paths = sorted(Path(folder).glob("*.mat"))
    # Val is stratified by action over all files, so every clip's action and flag are read first.
    headers = {p: scipy.io.loadmat(str(p), variable_names=("train", "action")) for p in paths}
    official_train = {p: int(np.asarray(h["train"]).ravel()[0]) == 1 for p, h in headers.items()}
    action = {p: str(np.asarray(h["action"]).ravel()[0]) for p, h in headers.items()}
    train_ids: dict[str, list[int]] = {}
    for path in paths:
        if official_train[path]:
            train_ids.setdefault(action[path], []).append(int(path.stem))
    return {p: split_of(int(p.stem), official_train[p], action[p], train_ids.get(action[p], [])) for p in paths}


def load_penn_clips(folder: str | Path, limit: int | None = None) -> list[PennClip]:
    """All clips of the folder (or the first `limit` by id) with their splits."""
    return [load_penn_clip(path, split) for path, split in list(penn_splits(folder).items())[:limit]]


def side_evidence(folder: str | Path) -> dict[str, float]:
    """How often Penn's "left" shoulder is image-left of its "right" one, per view (cf. PENN_LABELS_MIRRORED).

    Anatomical labels would give ~0 for "front" (facing the camera) and ~1 for "back".
    """
    counts: dict[str, list[float]] = {}
    for path in sorted(Path(folder).glob("*.mat")):
        data = scipy.io.loadmat(str(path), variable_names=("x", "visibility", "pose"))
        x = np.asarray(data["x"], dtype=np.float64)
        both = np.asarray(data["visibility"]).astype(bool)[:, 1:3].all(axis=1)
        if both.any():
            counts.setdefault(str(np.asarray(data["pose"]).ravel()[0]), []).append(
                float(np.mean(x[both, 1] < x[both, 2])))
    return {view: float(np.mean(values)) for view, values in counts.items()}
