"""Accuracy and smoothness metrics of seed 000, Sec. 4.2: IFE (eqs. 8-9), FDAE (eqs. 10-13) and COCO
OKS-based AP. Plain numpy, so a robot can evaluate recorded bags without torch.

Arrays: predicted and ground-truth poses (N, T, J, 2) in the same units (crop coordinates in
[-1, 1] for the paper's numbers), masks (N, T, J) bool (true = ground-truth joint is labelled).

- d_m (eq. 9): mean distance over the joints visible in a frame; a frame with none is skipped.
- IFE (eq. 8): per window, the mean of d_m over its frames; reported as the mean over windows.
- FDAE (eqs. 10-13): per window, the mean over consecutive frame pairs of |d_f(pred) - d_f(gt)|,
  where d_f is d_m between the two frames on the joints visible in both.
- OKS AP: COCO keypoint OKS with the COCO-17 sigmas, every frame of every window one instance
  (one ground truth, one prediction); object area s^2 = area of the ground-truth person box in the
  same units as the keypoints (crop coordinates), since there is no segmentation. AP follows
  pycocotools' COCOeval exactly (score-sorted matching, 101 recall points, OKS thresholds
  0.50:0.05:0.95); predictions without a confidence get score 1, and then COCOeval's stable sort
  keeps dataset order. `oks_accuracy`, the fraction of instances over each threshold averaged over
  thresholds, does not depend on order or scores.
"""

from __future__ import annotations

import numpy as np

from .keypoints import COCO17_SIGMAS

OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def oks_accuracy(oks_or_zero: np.ndarray) -> float:
    """OKS accuracy in %: the mean over OKS_THRESHOLDS of the share of person-frames at or above each (a missed
    person counts with OKS 0); NaN without person-frames."""
    return 100.0 * float(np.mean([(oks_or_zero >= t).mean() for t in OKS_THRESHOLDS])) if len(oks_or_zero) else \
        float("nan")


def masked_mean_distance(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 9 over the last two axes: (..., J, 2) x2, (..., J) -> (...); NaN where no joint is visible."""
    distance = np.linalg.norm(np.asarray(a, float) - np.asarray(b, float), axis=-1)
    visible = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(visible > 0, (distance * mask).sum(axis=-1) / visible, np.nan)


def ife_per_window(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 8 for each window: (N, T, J, 2) x2, (N, T, J) -> (N,)."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(masked_mean_distance(predicted, target, mask), axis=1)


def fdae_per_window(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eqs. 10-13 for each window: (N, T, J, 2) x2, (N, T, J) -> (N,)."""
    both = mask[:, 1:] & mask[:, :-1]  # eq. 13
    predicted_step = masked_mean_distance(predicted[:, :-1], predicted[:, 1:], both)
    target_step = masked_mean_distance(target[:, :-1], target[:, 1:], both)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.abs(predicted_step - target_step), axis=1)


def object_keypoint_similarity(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray,
                               area: np.ndarray, sigmas: np.ndarray = COCO17_SIGMAS) -> np.ndarray:
    """COCO OKS per instance: (M, J, 2) x2, (M, J), (M,) -> (M,). Instances without visible joints: NaN."""
    variances = (2 * sigmas) ** 2
    squared = ((np.asarray(predicted, float) - np.asarray(target, float)) ** 2).sum(axis=-1)
    e = squared / variances / (np.asarray(area, float)[:, None] + np.spacing(1)) / 2
    visible = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(visible > 0, (np.exp(-e) * mask).sum(axis=-1) / visible, np.nan)


def coco_average_precision(oks: np.ndarray, scores: np.ndarray | None = None) -> float:
    """COCOeval keypoint AP (IoU type 'keypoints', area 'all') for one prediction per ground truth; NaN without
    any ground truth (COCOeval's -1: undefined, so it cannot pass for a score)."""
    oks = np.asarray(oks, float)
    if oks.size == 0:
        return float("nan")
    scores = np.ones_like(oks) if scores is None else np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")  # COCOeval's stable sort
    oks = oks[order]
    precisions = []
    for threshold in OKS_THRESHOLDS:
        matched = oks >= threshold
        true_positives = np.cumsum(matched)
        false_positives = np.cumsum(~matched)
        recall = true_positives / len(oks)
        precision = true_positives / (true_positives + false_positives + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
        index = np.searchsorted(recall, RECALL_POINTS, side="left")
        sampled = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
        precisions.append(sampled.mean())
    return float(np.mean(precisions))


def evaluate_poses(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray, box_area: np.ndarray,
                   scores: np.ndarray | None = None) -> dict[str, float]:
    """IFE, FDAE, OKS AP (as a percentage, like Table 1) and OKS accuracy over N windows of T frames.

    box_area: (N, T) ground-truth person box area in the keypoints' units; scores: (N, T) or None.
    """
    predicted, target, mask = np.asarray(predicted), np.asarray(target), np.asarray(mask, bool)
    oks = object_keypoint_similarity(predicted.reshape(-1, *predicted.shape[2:]),
                                     target.reshape(-1, *target.shape[2:]), mask.reshape(-1, mask.shape[-1]),
                                     np.asarray(box_area).reshape(-1))
    valid = ~np.isnan(oks)
    flat_scores = None if scores is None else np.asarray(scores, float).reshape(-1)[valid]
    return {
        "ife": float(np.nanmean(ife_per_window(predicted, target, mask))),
        "fdae": float(np.nanmean(fdae_per_window(predicted, target, mask))),
        "map": 100.0 * coco_average_precision(oks[valid], flat_scores),
        "oks_accuracy": 100.0 * float(np.mean([(oks[valid] >= t).mean() for t in OKS_THRESHOLDS])),
        "windows": int(predicted.shape[0]),
        "instances": int(valid.sum()),
    }
