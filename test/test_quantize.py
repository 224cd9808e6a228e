"""INT8 copies of exported pose models (ONNX Runtime static quantisation) keep the contract and the poses."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from exlow_pose_ros.core.backends import create_backend
from exlow_pose_training.quantize import agreement, calibration_inputs, main, quantise

from conftest import REPO
from tiny_datasets import write_tiny_dataset

SHIPPED = REPO / "models" / "exlow_pose_pten.onnx"


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """The shipped model (crops and detector keypoints in) quantised on a tiny dataset's training split."""
    folder = tmp_path_factory.mktemp("int8")
    data = write_tiny_dataset(folder / "tiny", "tiny", tracks_per_split=6)
    assert main([str(SHIPPED), "--data", f"{data}:train", "--out", str(folder / "int8.onnx"), "--windows", "96"]) == 0
    return folder / "int8.onnx", data


def test_int8_model_keeps_the_contract_and_says_how_it_was_made(int8_model):
    path, data = int8_model
    fp32 = create_backend("onnxruntime", SHIPPED)
    int8 = create_backend("onnxruntime", path)
    quantisation = int8.contract.pop("quantization")
    assert int8.contract == fp32.contract  # inputs, outputs, crop convention, method: unchanged
    assert quantisation["precision"] == "int8" and quantisation["data"] == f"{data}:train"
    assert quantisation["calibration_windows"] > 0
    graph = onnx.load(str(path)).graph
    kinds = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in int8_weights) > 0.9 * sum(
        int(np.prod(t.dims)) for t in onnx.load(str(SHIPPED)).graph.initializer)  # nearly all weights are int8
    assert path.stat().st_size < 0.5 * SHIPPED.stat().st_size


def test_int8_poses_stay_close_to_fp32_on_windows_the_calibration_did_not_see(int8_model):
    path, data = int8_model
    _, held_out = calibration_inputs(data, "test", 64, takes_detector=True)
    moved = agreement(SHIPPED, path, held_out)
    # Crop units: [-1, 1] over the crop, so 0.03 is a quarter of a pixel at 16 px.
    assert moved["windows"] > 0 and moved["mean"] < 0.03, moved
    fp32 = create_backend("onnxruntime", SHIPPED)
    feed = held_out[0]
    poses, confidence = fp32.estimate(feed["crops"], feed["detector"])
    int8_poses, int8_confidence = create_backend("onnxruntime", path).estimate(feed["crops"], feed["detector"])
    assert int8_poses.shape == poses.shape and int8_confidence.shape == confidence.shape
    assert np.abs(int8_confidence - confidence).mean() < 0.05


def test_a_model_without_the_contract_is_refused(tmp_path):
    model = onnx.load(str(SHIPPED))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    data = write_tiny_dataset(tmp_path / "tiny", "tiny")
    feeds, _ = calibration_inputs(data, "train", 16, takes_detector=True)
    with pytest.raises(ValueError, match="no exlow_pose contract"):
        quantise(bare, tmp_path / "out.onnx", feeds, "tiny")
