"""IFE, FDAE and OKS AP against hand-worked cases, and AP against pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from exlow_pose_ros.core.keypoints import COCO17_SIGMAS
from exlow_pose_ros.core.metrics import (
    coco_average_precision,
    evaluate_poses,
    fdae_per_window,
    ife_per_window,
    object_keypoint_similarity,
)


def test_ife_is_the_mean_visible_joint_distance_and_ignores_masked_joints():
    target = np.zeros((1, 2, 3, 2))
    predicted = target.copy()
    predicted[0, 0, :, 0] = [0.1, 0.3, 50.0]      # frame 0: joint 2 is masked, its error must not count
    predicted[0, 1, :, 1] = [0.4, 0.4, 0.4]       # frame 1: all visible
    mask = np.array([[[True, True, False], [True, True, True]]])
    assert ife_per_window(predicted, target, mask)[0] == pytest.approx((0.2 + 0.4) / 2)


def test_ife_skips_frames_without_visible_joints():
    predicted, target = np.ones((1, 2, 2, 2)), np.zeros((1, 2, 2, 2))
    mask = np.array([[[False, False], [True, False]]])
    assert ife_per_window(predicted, target, mask)[0] == pytest.approx(math.sqrt(2))


def test_fdae_measures_jitter_that_the_ground_truth_does_not_have():
    target = np.zeros((1, 5, 2, 2))               # a still person
    predicted = target.copy()
    predicted[0, :, :, 0] = np.array([0.05, -0.05, 0.05, -0.05, 0.05])[:, None]  # jitter of 0.1 per step
    mask = np.ones((1, 5, 2), bool)
    assert fdae_per_window(predicted, target, mask)[0] == pytest.approx(0.1)
    # Moving exactly like the ground truth, with any constant offset, is perfectly smooth.
    moving = np.cumsum(np.full((1, 5, 2, 2), 0.07), axis=1)
    assert fdae_per_window(moving + 0.3, moving, mask)[0] == pytest.approx(0.0)


def test_fdae_uses_joints_visible_in_both_frames():
    target = np.zeros((1, 2, 2, 2))
    predicted = target.copy()
    predicted[0, 1, 0] = [0.3, 0.4]               # joint 0 moves 0.5 between the frames
    predicted[0, 1, 1] = [9.0, 9.0]               # joint 1 jumps, but it is masked in frame 0
    mask = np.array([[[True, False], [True, True]]])
    assert fdae_per_window(predicted, target, mask)[0] == pytest.approx(0.5)


def test_oks_of_one_joint_at_one_standard_deviation():
    # With d^2 = area * (2 sigma)^2, OKS = exp(-1/2).
    sigma, area = COCO17_SIGMAS[0], 2.5
    predicted = np.zeros((1, 17, 2))
    predicted[0, 0, 0] = math.sqrt(area) * 2 * sigma
    mask = np.zeros((1, 17), bool)
    mask[0, 0] = True
    oks = object_keypoint_similarity(predicted, np.zeros((1, 17, 2)), mask, np.array([area]))
    assert oks[0] == pytest.approx(math.exp(-0.5))


def test_average_precision_worked_by_hand():
    # Sorted by score: hit, miss, hit, hit at every threshold up to 0.9; nothing at 0.95.
    oks = np.array([0.92, 0.4, 0.92, 0.92])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # Precision envelope 1, .75, .75, .75 at recall .25, .25, .5, .75: 26 recall points at 1, 50 at .75.
    per_threshold = (26 * 1.0 + 50 * 0.75) / 101
    assert coco_average_precision(oks, scores) == pytest.approx(9 * per_threshold / 10)
    assert coco_average_precision(np.ones(5)) == pytest.approx(1.0)
    assert coco_average_precision(np.zeros(5)) == 0.0
    assert math.isnan(coco_average_precision(np.zeros(0), np.zeros(0)))  # a scene with nothing labelled


def test_perfect_predictions_score_zero_error_and_full_precision():
    rng = np.random.default_rng(0)
    target = rng.uniform(-0.8, 0.8, size=(6, 5, 17, 2))
    mask = rng.random((6, 5, 17)) > 0.2
    result = evaluate_poses(target, target, mask, np.full((6, 5), 2.0))
    assert result["ife"] == 0 and result["fdae"] == 0
    assert result["map"] == pytest.approx(100.0) and result["oks_accuracy"] == pytest.approx(100.0)


def test_average_precision_agrees_with_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    count = 60
    target = rng.uniform(-0.8, 0.8, size=(count, 17, 2))
    predicted = target + rng.normal(scale=rng.uniform(0.01, 0.2, size=(count, 1, 1)), size=target.shape)
    mask = rng.random((count, 17)) > 0.25
    mask[:, 0] = True
    area = rng.uniform(1.0, 3.0, size=count)
    scores = rng.random(count)
    ours = coco_average_precision(object_keypoint_similarity(predicted, target, mask, area), scores)

    scale = 100.0  # pycocotools wants pixel-like coordinates; OKS is invariant to a common scale
    images = [{"id": i + 1} for i in range(count)]
    annotations, results = [], []
    for i in range(count):
        gt = np.concatenate([(target[i] + 1) * scale, 2 * mask[i][:, None]], axis=1)
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                            "area": float(area[i] * scale**2), "num_keypoints": int(mask[i].sum()),
                            "bbox": [0, 0, 2 * scale, 2 * scale], "keypoints": gt.ravel().tolist()})
        dt = np.concatenate([(predicted[i] + 1) * scale, np.ones((17, 1))], axis=1)
        results.append({"image_id": i + 1, "category_id": 1, "keypoints": dt.ravel().tolist(),
                        "score": float(scores[i])})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "person"}]}
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert 0.05 < evaluation.stats[0] < 0.95, "the case should not be trivially all-or-nothing"
    assert ours == pytest.approx(evaluation.stats[0], abs=1e-9)
