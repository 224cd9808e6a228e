"""The whole pipeline over DDS on real frames: video source -> tracker -> pose -> recorder, as separate
processes (the README's demo command), checked through the bag it records.

The video: three frames of the empty road of vtest.avi (its people removed by a temporal median), then six
real frames with pedestrians.
"""

from __future__ import annotations

import json
import subprocess
import sysconfig
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from exlow_pose_ros.tools.bag_io import read_bag
from exlow_pose_training.export import export_onnx
from exlow_pose_training.models import build_model

from conftest import DETECTOR, VTEST

EMPTY, PEOPLE = 3, 6
FUSION = {"frame_alignment": True, "detector_input": True, "confidence": True}
pytestmark = pytest.mark.skipif(not (VTEST.exists() and DETECTOR.exists()),
                                reason="assets missing: run scripts/setup.sh")


def stamp(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def skeletons_by_frame(messages) -> dict[int, list]:
    """All skeletons per described frame (a track with gaps is described in a second, later array)."""
    frames = defaultdict(list)
    for array in messages["/exlow_pose/skeletons"]:
        frames[stamp(array.header)].extend(array.skeletons)
    return frames


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    capture = cv2.VideoCapture(str(VTEST))
    frames = [capture.read()[1] for _ in range(210)]
    empty_road = np.median(np.stack(frames[::10]), axis=0).astype(np.uint8)
    video = base / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, empty_road.shape[1::-1])
    for frame in [empty_road] * EMPTY + frames[200:200 + PEOPLE]:
        writer.write(frame)
    writer.release()
    model = base / "pten.onnx"
    # The shipped kind of model: it fuses the detector's keypoints and gives per-joint confidence. Untrained, it
    # passes confident detector keypoints through (its gate starts from their confidence).
    torch.manual_seed(0)
    export_onnx(build_model("pten", FUSION).eval(), model, "pten", model_options=FUSION)
    out = base / "demo"
    result = subprocess.run(
        [str(Path(sysconfig.get_path("scripts")) / "exlow_pose_demo"), "--video", str(video), "--model", str(model),
         "--detector", str(DETECTOR), "--out", str(out), "--record-images", "--keypoints", "model"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    messages = defaultdict(list)
    for topic, _, message in read_bag(out / "bag"):
        messages[topic].append(message)
    return out, messages


def test_every_source_frame_is_tracked_with_its_stamp(run):
    _, messages = run
    images = messages["/camera/image_raw"]
    persons = messages["/exlow_pose/tracked_persons"]
    assert len(images) == EMPTY + PEOPLE
    assert [stamp(m.header) for m in persons] == [stamp(m.header) for m in images]
    assert {m.header.frame_id for m in persons} == {"camera_optical_frame"}


def test_frames_without_people_publish_empty_arrays(run):
    _, messages = run
    counts = [len(m.persons) for m in messages["/exlow_pose/tracked_persons"]]
    assert counts[:EMPTY] == [0] * EMPTY, counts
    # Frames 200-205 of vtest.avi hold 6-7 pedestrians. ByteTrack confirms a track that appears after the
    # stream's first frame on its second frame, so the first frame with people may still publish nobody.
    assert min(counts[EMPTY + 1:]) >= 3, counts
    skeletons = skeletons_by_frame(messages)
    for array in messages["/exlow_pose/tracked_persons"][:EMPTY]:
        assert skeletons[stamp(array.header)] == []


def test_every_tracked_person_gets_a_skeleton_for_its_frame(run):
    _, messages = run
    skeletons = skeletons_by_frame(messages)
    arrays = messages["/exlow_pose/tracked_persons"]
    # Every frame, the last two of centre mode included (published when the input stops).
    for array in arrays:
        described = skeletons[stamp(array.header)]
        assert sorted(s.track_id for s in described) == sorted(p.track_id for p in array.persons)
        assert all(stamp(array.header) == s.stamp.sec * 1_000_000_000 + s.stamp.nanosec for s in described)


def test_an_independent_mcap_reader_sees_one_array_per_frame_in_order_with_images_and_markers(run):
    """The bag as any MCAP tool reads it (mcap + mcap-ros2-support, not our rosbags-based reader)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out, _ = run
    found = defaultdict(list)
    for bag_file in sorted((out / "bag").glob("*.mcap")):
        with bag_file.open("rb") as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            for _, channel, _, message in reader.iter_decoded_messages():
                found[channel.topic].append(message)
    frames = [stamp(m.header) for m in found["/exlow_pose/tracked_persons"]]
    assert len(frames) == EMPTY + PEOPLE
    assert [stamp(m.header) for m in found["/exlow_pose/skeletons"]] == frames  # one per frame, in order
    tracked = sum(len(m.persons) for m in found["/exlow_pose/tracked_persons"])
    assert sum(len(m.skeletons) for m in found["/exlow_pose/skeletons"]) == tracked  # no person-frame lost
    for topic in ("/camera/image_raw/compressed", "/exlow_pose/annotated_image/compressed",
                  "/exlow_pose/skeleton_image_markers", "/camera/camera_info"):
        assert sorted({stamp(m.header) for m in found[topic]}) == frames, topic
    picture = cv2.imdecode(np.frombuffer(bytes(found["/exlow_pose/annotated_image/compressed"][-1].data), np.uint8),
                           cv2.IMREAD_COLOR)
    assert picture.shape == (576, 768, 3)
    persons = {stamp(a.header): len(a.skeletons) for a in found["/exlow_pose/skeletons"]}
    markers = found["/exlow_pose/skeleton_markers"]
    assert sorted(stamp(m.markers[0].header) for m in markers) == frames
    assert all(len(m.markers) - 1 == persons[stamp(m.markers[0].header)] for m in markers)  # DELETEALL + 1 each
    assert found["/diagnostics"], "diagnostics are recorded"


def test_track_ids_persist_and_keypoints_lie_near_their_boxes(run):
    _, messages = run
    seen = defaultdict(int)
    for array in messages["/exlow_pose/tracked_persons"]:
        for person in array.persons:
            seen[person.track_id] += 1
    assert sum(1 for count in seen.values() if count >= PEOPLE - 1) >= 3, dict(seen)
    for array in messages["/exlow_pose/skeletons"]:
        for skeleton in array.skeletons:
            box = skeleton.box
            slack = 0.6 * max(box.x_max - box.x_min, box.y_max - box.y_min)  # the crop square and its margin
            for keypoint in skeleton.keypoints:
                assert box.x_min - slack <= keypoint.x <= box.x_max + slack
                assert box.y_min - slack <= keypoint.y <= box.y_max + slack
            assert len(skeleton.keypoints) == 17 and skeleton.layout == "coco17"


def test_demo_writes_its_annotated_video_and_summary(run):
    out, messages = run
    # annotated.mp4, or annotated.webm where OpenCV cannot write H.264: the summary names the file written.
    summary = json.loads((out / "summary.json").read_text())
    capture = cv2.VideoCapture(summary["annotated_video"])
    # One annotated image per described frame, however many arrays describe it.
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(skeletons_by_frame(messages))
    assert summary["annotated_frames"] == len(skeletons_by_frame(messages))


def test_detector_keypoints_flow_from_the_tracker_into_the_skeletons(run):
    _, messages = run
    detector = {}
    for array in messages["/exlow_pose/tracked_persons"]:
        for person in array.persons:
            assert len(person.detector_keypoints) == 17, "the tracker must pass YOLO11n-pose's own keypoints on"
            points = np.array([(k.x, k.y, k.score) for k in person.detector_keypoints])
            assert ((points[:, 2] >= 0) & (points[:, 2] <= 1)).all()
            height = person.box.y_max - person.box.y_min
            assert np.all(np.abs(points[:, 1] - (person.box.y_min + person.box.y_max) / 2) < height)
            detector[(stamp(array.header), person.track_id)] = (points, height)
    confident_offsets, joint_scores = [], []
    for array in messages["/exlow_pose/skeletons"]:
        for skeleton in array.skeletons:
            points, height = detector[(stamp(array.header), skeleton.track_id)]
            ours = np.array([(k.x, k.y) for k in skeleton.keypoints])
            sure = points[:, 2] > 0.9
            confident_offsets += list(np.linalg.norm(ours[sure] - points[sure, :2], axis=1) / height)
            joint_scores.append([k.score for k in skeleton.keypoints])
    assert confident_offsets, "no confident detector keypoint reached the pose node"
    # Confident detector keypoints come through the fused model nearly unchanged (gate 0.95 at the start).
    assert np.median(confident_offsets) < 0.05, np.median(confident_offsets)
    scores = np.array(joint_scores)
    # Keypoint2D.score is the model's per-joint confidence, not one person score repeated.
    assert ((scores > 0) & (scores < 1)).all() and np.ptp(scores, axis=1).max() > 1e-3
