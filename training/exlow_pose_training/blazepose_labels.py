"""BlazePose labeller: runs in .venv-blazepose (scripts/setup_blazepose.sh), never in .venv.

mediapipe 0.10.21 needs numpy<2 and protobuf<5, so it lives in a venv of its own and this file is run there as
a script by `exlow-pose-data blazepose` (exlow_pose_training.blazepose_reference). It imports nothing of ours
and only numpy at module level, so the mapping below is importable (and tested) from .venv without mediapipe.

    python blazepose_labels.py --jobs JOBS.npz --out OUT.npz [--model-complexity 1]

JOBS.npz: `crops` (N, S, S, 3) RGB uint8, each the resized square `squares` (N, 3) = x0, y0, side of the
full-resolution frame (pixels; may reach outside the frame, padded black). OUT.npz: `keypoints` (N, 17, 2)
COCO-17 in full-resolution pixels (NaN where BlazePose found no person), `visibility` (N, 17) as BlazePose
reports it (0 where no person), `detected` (N,) bool, `mediapipe_version` and `seconds`. (The legacy graph leaves
landmark `presence` at 0, so it is not passed on.)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

# BlazePose's 33 landmarks -> COCO-17 (exlow_pose_ros.core.keypoints.COCO17_NAMES order): nose, left/right eye
# (BlazePose's eye centres, not the inner/outer corners), ears, shoulders, elbows, wrists, hips, knees, ankles.
BLAZEPOSE_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
BLAZEPOSE_LANDMARKS = 33


def square_around(box: np.ndarray, margin: float) -> np.ndarray:
    """Square (x0, y0, side) in whole pixels around a person box (x_min, y_min, x_max, y_max): the box's longer
    side plus `margin` of it on each side, centred on the box. BlazePose's own detector then finds the person
    inside, so the crop must show the whole body with room around it."""
    box = np.asarray(box, np.float64)
    side = max(1, int(np.ceil(max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * margin))))
    x0 = int(np.floor((box[0] + box[2]) / 2 - side / 2))
    y0 = int(np.floor((box[1] + box[3]) / 2 - side / 2))
    return np.array([x0, y0, side], np.int64)


def landmarks_to_coco(landmarks: np.ndarray, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose landmarks (33, 4): x, y normalised to the crop image ([0, 1] over its width and height),
    z, visibility -> COCO-17 keypoints (17, 2) in full-resolution pixels and visibility (17,). The crop is the
    square resized uniformly, so pixel = origin + normalised * side."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape[0] != BLAZEPOSE_LANDMARKS:
        raise ValueError(f"expected {BLAZEPOSE_LANDMARKS} BlazePose landmarks, got {landmarks.shape[0]}")
    chosen = landmarks[list(BLAZEPOSE_TO_COCO17)]
    x0, y0, side = (float(v) for v in square)
    xy = np.stack([x0 + chosen[:, 0] * side, y0 + chosen[:, 1] * side], axis=-1)
    return xy.astype(np.float32), chosen[:, 3].astype(np.float32)


def run_blazepose(crops: np.ndarray, squares: np.ndarray, model_complexity: int = 1) -> dict[str, np.ndarray]:
    """BlazePose in static-image mode (each crop on its own: no tracking between crops of different people)."""
    import mediapipe as mp
    from tqdm import tqdm

    count = len(crops)
    keypoints = np.full((count, 17, 2), np.nan, np.float32)
    visibility = np.zeros((count, 17), np.float32)
    detected = np.zeros(count, bool)
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=model_complexity,
                                enable_segmentation=False, min_detection_confidence=0.5) as pose:
        for index in tqdm(range(count), desc="BlazePose", unit="crop", file=sys.stderr):
            result = pose.process(np.ascontiguousarray(crops[index]))
            if result.pose_landmarks is None:
                continue
            landmarks = np.array([[p.x, p.y, p.z, p.visibility] for p in result.pose_landmarks.landmark])
            keypoints[index], visibility[index] = landmarks_to_coco(landmarks, squares[index])
            detected[index] = True
    return {"keypoints": keypoints, "visibility": visibility, "detected": detected,
            "mediapipe_version": np.array(mp.__version__)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="BlazePose COCO-17 labels of square person crops")
    parser.add_argument("--jobs", required=True, help="npz with crops (N, S, S, 3) RGB uint8 and squares (N, 3)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model-complexity", type=int, default=1,
                        help="1 (pose_landmark_full, the model mediapipe 0.10.21 ships; 0 and 2 need a download)")
    args = parser.parse_args(argv)
    jobs = np.load(args.jobs)
    started = time.time()
    result = run_blazepose(jobs["crops"], jobs["squares"], args.model_complexity)
    np.savez(args.out, seconds=np.array(time.time() - started), **result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
