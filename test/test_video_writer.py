"""exlow_pose_ros.tools.video_writer: the annotated-video helper picks a codec this OpenCV writes and says where."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from exlow_pose_ros.tools import video_writer
from exlow_pose_ros.tools.video_writer import CODECS, VideoWriterError, codec_works, open_video_writer

WIDTH, HEIGHT, FRAMES = 96, 64, 7


def _clip() -> list[np.ndarray]:
    """Frames that differ: a bright square moving over a dark gradient."""
    frames = []
    for i in range(FRAMES):
        frame = np.tile(np.linspace(0, 80, WIDTH, dtype=np.uint8), (HEIGHT, 1))[..., None].repeat(3, axis=2)
        frame[20:40, 8 + 10 * i:28 + 10 * i] = (40, 200, 240)
        frames.append(frame)
    return frames


def _read_back(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    return frames


def test_writes_a_clip_opencv_reads_back_with_every_frame_and_the_size(tmp_path):
    clip = _clip()
    output = open_video_writer(tmp_path / "clip.mp4", 10.0, (WIDTH, HEIGHT))
    for frame in clip:
        output.write(frame)
    output.release()

    assert output.codec == next(c for c in CODECS if codec_works(c)), "the most preferred working codec"
    assert output.path == (tmp_path / "clip.mp4").with_suffix(output.codec.suffix) and output.path.is_file()
    assert (output.note is None) == (output.codec.suffix == ".mp4" and output.codec.browser)
    written = _read_back(output.path)
    assert len(written) == FRAMES and written[0].shape == (HEIGHT, WIDTH, 3)
    for frame, original in zip(written, clip, strict=True):
        assert np.abs(frame.astype(int) - original.astype(int)).mean() < 8  # lossy, but the same pictures


def test_without_h264_the_video_becomes_webm_and_the_note_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(video_writer, "codec_works", lambda codec: codec.fourcc in ("VP80", "VP90", "mp4v")
                        and codec_works(codec))
    if not codec_works(CODECS[3]) and not codec_works(CODECS[4]):
        pytest.skip("this OpenCV writes neither VP8 nor VP9")
    output = open_video_writer(tmp_path / "annotated.mp4", 10.0, (WIDTH, HEIGHT))
    output.write(_clip()[0])
    output.release()
    assert output.path == tmp_path / "annotated.webm" and output.requested == tmp_path / "annotated.mp4"
    assert output.note is not None and str(output.path) in output.note and "H.264" in output.note
    assert output.describe()["path"] == str(output.path)
    assert len(_read_back(output.path)) == 1


def test_mp4v_is_the_last_resort_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(video_writer, "codec_works", lambda codec: codec.fourcc == "mp4v")
    output = open_video_writer(tmp_path / "annotated.webm", 10.0, (WIDTH, HEIGHT))
    output.release()
    assert output.path == tmp_path / "annotated.mp4" and output.codec.fourcc == "mp4v"
    assert output.note is not None and output.note.startswith("warning:") and "browsers" in output.note


def test_no_working_codec_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(video_writer, "codec_works", lambda codec: False)
    with pytest.raises(VideoWriterError, match=r"annotated\.mp4"):
        open_video_writer(tmp_path / "annotated.mp4", 10.0, (WIDTH, HEIGHT))
