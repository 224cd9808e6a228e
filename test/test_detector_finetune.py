"""The detector fine-tuning data: tiny people as the tracker node feeds them to the detector, labelled by the
teacher, in Ultralytics' YOLO-pose format."""

from __future__ import annotations

import numpy as np
import pytest

from exlow_pose_ros.core.detector_export import effective_imgsz
from exlow_pose_training.detector_data import cut_tile, detector_view
from exlow_pose_training.detector_finetune import main as finetune


def bright_box(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def test_the_detector_view_is_the_frame_shrunk_then_enlarged_as_the_tracker_does_and_labels_follow():
    frame = np.zeros((300, 400, 3), np.uint8)
    box = np.array([100.0, 50.0, 140.0, 150.0])
    frame[50:150, 100:140] = 255
    view, factor = detector_view(frame, scale=0.1, max_upscale=8)
    size = effective_imgsz(40, 30, 1280, 8)  # the tracker node's input for the 40x30 shrunk frame
    assert max(view.shape[:2]) == size == 320
    assert bright_box(view) == pytest.approx(box * factor, abs=2.0)  # 2 px of blur at the edges
    whole, factor_whole = detector_view(frame, scale=1.0, max_upscale=8)
    assert max(whole.shape[:2]) == 1280 and bright_box(whole) == pytest.approx(box * factor_whole, abs=2.0)


def test_a_tile_labels_the_persons_centred_in_it_in_yolo_pose_format():
    image = np.zeros((500, 600, 3), np.uint8)
    boxes = np.array([[300.0, 200.0, 340.0, 300.0], [20.0, 20.0, 60.0, 120.0]])
    points = np.zeros((2, 17, 3))
    points[0, :, :2] = [320.0, 250.0]
    points[0, :, 2] = 2
    points[0, 0] = [599.0, 10.0, 2]   # a joint outside the tile must become invisible
    points[0, 1, 2] = 0               # an invisible joint stays invisible
    tile, lines = cut_tile(image, boxes, points, centre=np.array([320.0, 250.0]), tile=200)
    assert tile.shape == (200, 200, 3) and len(lines) == 1  # the second person's centre is outside
    values = np.array(lines[0].split(), float)
    assert values[0] == 0 and values[1:5] == pytest.approx([0.5, 0.5, 0.2, 0.5])
    joints = values[5:].reshape(17, 3)
    assert joints[0, 2] == 0 and joints[1, 2] == 0 and (joints[2:, 2] == 2).all()
    assert joints[2:, :2] == pytest.approx(np.full((15, 2), 0.5))
    # A tile near the border stays inside an image big enough for it (no letterbox grey).
    _, lines = cut_tile(image, boxes, points, centre=np.array([40.0, 70.0]), tile=200)
    values = np.array(lines[0].split(), float)
    assert values[1:5] == pytest.approx([0.2, 0.35, 0.2, 0.5])


def test_finetune_refuses_a_folder_that_is_not_a_detector_dataset(tmp_path, capsys):
    assert finetune(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "exlow-pose-data detector" in capsys.readouterr().err


def test_a_teacher_cache_gives_back_the_persons_of_an_earlier_build(tmp_path):
    """exlow-pose-data scenes --teacher-from: each frame's persons, boxes and labelled joints as the teacher
    found them (pixels, to float32 round-off), and a refusal when the clip is not the cached one."""
    from exlow_pose_ros.core.crop import cut_crop, normalise_keypoints, square_region
    from exlow_pose_ros.core.provenance import file_sha256
    from exlow_pose_training.dataset_format import DatasetWriter
    from exlow_pose_training.scene_dataset import CachedTeacher
    from exlow_pose_training.scenes import SceneClip

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video: the cache only checks its sha256")
    clip = SceneClip("street", video, "test", 640, "CC0")
    rng = np.random.default_rng(0)
    writer = DatasetWriter(tmp_path / "build" / "teacher", "teacher", "test", provenance={})
    source = writer.add_source(clip.clip_name, "test", sha256=file_sha256(video), frames=6)
    expected: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {i: [] for i in range(6)}
    frame_image = np.zeros((200, 300, 3), np.uint8)
    for start, frames in ((0, [0, 1, 2, 4]), (1, [1, 2, 3])):
        boxes = np.array([[50.0 + 60 * start + f, 40.0, 90.0 + 60 * start + f, 140.0] for f in frames], np.float32)
        xy = boxes[:, None, :2] + rng.uniform(0, 40, (len(frames), 17, 2))
        mask = rng.random((len(frames), 17)) > 0.2
        regions = [square_region(b) for b in boxes]
        writer.add_track(source, {
            "frame": np.array(frames), "box": boxes, "score": np.full(len(frames), 0.9),
            "keypoints": np.stack([normalise_keypoints(p, r) for p, r in zip(xy, regions, strict=True)]),
            "mask": mask, "region": np.array([[r.x0, r.y0, r.side] for r in regions]),
            "crops": np.stack([cut_crop(frame_image, r) for r in regions])})
        for f, b, p, m in zip(frames, boxes, xy, mask, strict=True):
            expected[f].append((b, p, m))
    writer.close()
    persons = CachedTeacher(tmp_path / "build").persons(clip, 6)
    assert [len(p) for p in persons] == [len(expected[i]) for i in range(6)] == [1, 2, 2, 1, 1, 0]
    for frame, people in enumerate(persons):
        for person, (box, xy, mask) in zip(people, expected[frame], strict=True):  # in track order
            assert person.box == pytest.approx(box) and (person.mask == mask).all()
            assert person.xy[mask] == pytest.approx(xy[mask], abs=1e-3)
    with pytest.raises(RuntimeError, match="--teacher-from"):
        CachedTeacher(tmp_path / "build").persons(clip, 7)
