"""Training, checkpoints, DDP, ONNX export and evaluation on tiny learnable datasets (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from exlow_pose_ros.core.backends import BackendError, create_backend
from exlow_pose_ros.core.backends import tensorrt_usable as _tensorrt_usable
from exlow_pose_ros.core.model_contract import crops_to_input
from exlow_pose_training.checkpoints import load_checkpoint, load_model
from exlow_pose_training.dataset_format import ExLowDataset
from exlow_pose_training.evaluate import window_rows
from exlow_pose_training.export import export_onnx, parity
from exlow_pose_training.models import METHODS, SEED_METHODS
from exlow_pose_training.torch_dataset import WindowDataset
from exlow_pose_training.train import TrainConfig, train

from tiny_datasets import write_tiny_dataset

SCRIPTS = Path(sysconfig.get_path("scripts"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny")
    return {"images": write_tiny_dataset(base / "images"), "motion": write_tiny_dataset(base / "motion", "motion")}


def config_for(method: str, data: Path, out: Path, **overrides) -> TrainConfig:
    values = {"method": method, "out": str(out), "train": [{"root": str(data), "split": "train"}],
              "val": [{"root": str(data), "split": "val"}], "epochs": 4, "batch_size": 16, "lr": 3e-3,
              "warmup_epochs": 0.2, "workers": 0, "augment": None, "device": "cpu", "val_max_windows": None}
    values.update(overrides)
    return TrainConfig(**values)


def fixed_batch_loss(model: torch.nn.Module, data: Path, pose_only: bool) -> float:
    batch = WindowDataset((data, "train"), with_crops=not pose_only)[np.arange(32)]
    model.eval()
    with torch.no_grad():
        return float(model.loss(batch)[0])


@pytest.mark.parametrize("method", [*METHODS, "autoencoder"])
def test_every_method_learns_on_a_tiny_dataset(method, tiny, tmp_path):
    torch.manual_seed(0)
    pose_only = method == "autoencoder"
    data = tiny["motion"] if pose_only else tiny["images"]
    overrides = {}
    if method == "pten":
        train(config_for("autoencoder", tiny["motion"], tmp_path / "ae"))
        overrides["pretrained_autoencoder"] = str(tmp_path / "ae" / "best.pt")
    from exlow_pose_training.models import build_model

    torch.manual_seed(0)
    before = fixed_batch_loss(build_model(method), data, pose_only)
    result = train(config_for(method, data, tmp_path / method, **overrides))
    model, stored_method = load_model(tmp_path / method / "last.pt")
    assert stored_method == method
    after = fixed_batch_loss(model, data, pose_only)
    assert after < 0.7 * before, f"{method}: loss {before:.3f} -> {after:.3f}"
    history = json.loads((tmp_path / method / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] == [h["epoch"] for h in result["history"]]
    assert all(np.isfinite([h["ife"], h["fdae"], h["map"]]).all() for h in history)
    assert (tmp_path / method / "metrics.png").stat().st_size > 10_000


# The temporal variants carry every part of their method (the per-frame ones drop the fusion); the cascade trains
# its super-resolution from scratch, so it gets more epochs. variant: (method, model options, epochs)
SEED_VARIANTS = {"cal_temporal": ("cal", {"temporal": True}, 7),
                 "sr_pose_temporal": ("sr_pose", {"sr": {"temporal": True}}, 10)}
SEED_PER_FRAME = {"cal": ("cal", {}), "sr_pose": ("sr_pose", {})}


def check_seed_export(model: torch.nn.Module, method: str, options: dict, tmp_path: Path, data: Path,
                      checkpoint: Path | None = None) -> None:
    """ONNX export with confidence and parity; real crops through ONNX Runtime (and torch from the checkpoint)."""
    onnx_path = tmp_path / f"{method}.onnx"
    written = export_onnx(model, onnx_path, method, model_options=options)
    assert "confidence_output" in written and "detector_input" not in written
    assert parity(model, onnx_path) < 1e-4
    split = ExLowDataset(data).split("test")
    crops = crops_to_input(split.arrays["crops"][window_rows(split, np.arange(12))])
    onnx_poses, onnx_confidence = create_backend("onnxruntime", onnx_path, threads=1).estimate(crops)
    with torch.no_grad():
        torch_poses, logits = model.eval().predict(torch.from_numpy(crops))
    if checkpoint is not None:  # the torch backend reads the checkpoint the same way
        np.testing.assert_allclose(create_backend("torch", checkpoint).estimate(crops)[0], torch_poses.numpy(),
                                   atol=1e-5)
    # The same poses where the heatmap peak is clear, the same confidences (the peaks) everywhere, and
    # confidences that are probabilities.
    stable = model.stable_joints(torch.from_numpy(crops)).numpy()
    assert stable.mean() > 0.9
    np.testing.assert_allclose(onnx_poses[stable], torch_poses.numpy()[stable], atol=1e-4)
    np.testing.assert_allclose(onnx_confidence, torch.sigmoid(logits).numpy(), atol=1e-4)
    assert ((onnx_confidence > 0) & (onnx_confidence < 1)).all()


@pytest.mark.parametrize("variant", sorted(SEED_VARIANTS))
def test_seed_methods_learn_on_a_tiny_dataset_and_export_with_confidence_and_parity(variant, tiny, tmp_path):
    method, options, epochs = SEED_VARIANTS[variant]
    assert method in SEED_METHODS
    from exlow_pose_training.models import build_model

    torch.manual_seed(0)
    before = fixed_batch_loss(build_model(method, json.loads(json.dumps(options))), tiny["images"], False)
    # The second stage (mixed Gaussian offset masks) runs from 84 % of training: the last epoch or two.
    train(config_for(method, tiny["images"], tmp_path / variant, epochs=epochs, model=options))
    model, stored_method = load_model(tmp_path / variant / "last.pt")
    assert stored_method == method and bool(model.second_stage)
    # Compared under one objective: the second stage's masks weigh offsets where the coarse predictions land,
    # which on a barely trained heatmap is far from the joints, so its loss is not comparable to the first's.
    model.second_stage.fill_(False)
    after = fixed_batch_loss(model, tiny["images"], False)
    assert after < 0.8 * before, f"{variant}: loss {before:.3f} -> {after:.3f}"
    history = json.loads((tmp_path / variant / "metrics.json").read_text())["history"]
    assert np.isfinite([h["loss"] for h in history]).all()  # the second stage's epochs too
    assert history[-1]["ife"] < 0.8 * history[0]["ife"], [h["ife"] for h in history]
    check_seed_export(model, method, options, tmp_path, tiny["images"], tmp_path / variant / "last.pt")


@pytest.mark.parametrize("variant", sorted(SEED_PER_FRAME))
def test_seed_methods_per_frame_variants_export_with_confidence_and_parity(variant, tiny, tmp_path):
    from exlow_pose_training.models import build_model

    method, options = SEED_PER_FRAME[variant]
    torch.manual_seed(0)
    check_seed_export(build_model(method, dict(options)), method, options, tmp_path, tiny["images"])


def test_pten_starts_from_the_pretrained_decoder(tiny, tmp_path):
    train(config_for("autoencoder", tiny["motion"], tmp_path / "ae", epochs=1))
    autoencoder, _ = load_model(tmp_path / "ae" / "best.pt")
    from exlow_pose_training.models import build_model

    pten = build_model("pten")
    pten.load_pretrained_decoder(autoencoder)
    for name, value in autoencoder.decoder.state_dict().items():
        assert torch.equal(pten.decoder.state_dict()[name], value)
    with pytest.raises(ValueError, match="pretrained_autoencoder"):
        train(config_for("pten", tiny["images"], tmp_path / "no_ae", epochs=1))


def test_pten_frame_alignment_starts_as_the_paper_model_then_shifts_and_scales_each_frame(tiny, tmp_path):
    from exlow_pose_training.models import build_model

    torch.manual_seed(0)
    aligned = build_model("pten", {"frame_alignment": True}).eval()
    paper = build_model("pten").eval()
    paper.load_state_dict({k: v for k, v in aligned.state_dict().items() if not k.startswith("frame_alignment")})
    crops = torch.rand(4, 5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(aligned(crops), paper(crops))
        # The head's output (here its bias alone) shifts and scales the decoded pose.
        aligned.frame_alignment.bias.copy_(torch.tensor([0.1, -0.2, np.log(1.5)]))
        expected = paper(crops) * 1.5 + torch.tensor([0.1, -0.2])
        torch.testing.assert_close(aligned(crops), expected)
    onnx_path = tmp_path / "aligned.onnx"
    export_onnx(aligned, onnx_path, "pten", model_options={"frame_alignment": True})
    assert parity(aligned, onnx_path) < 1e-4

    train(config_for("autoencoder", tiny["motion"], tmp_path / "ae", epochs=1))
    config = config_for("pten", tiny["images"], tmp_path / "run", model={"frame_alignment": True},
                        pretrained_autoencoder=str(tmp_path / "ae" / "best.pt"))
    before = fixed_batch_loss(paper, tiny["images"], pose_only=False)
    train(config)
    model, _ = load_model(tmp_path / "run" / "last.pt")
    assert model.frame_alignment is not None, "the option did not survive the checkpoint"
    assert fixed_batch_loss(model, tiny["images"], pose_only=False) < 0.7 * before


def test_resume_continues_where_training_stopped(tiny, tmp_path):
    out = tmp_path / "run"
    train(config_for("independent_cnn", tiny["images"], out, epochs=2))
    first = json.loads((out / "metrics.json").read_text())["history"]
    resumed = train(config_for("independent_cnn", tiny["images"], out, epochs=3), resume=True)["history"]
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    assert resumed[:2] == first
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_an_empty_validation_split_stops_training_before_the_first_epoch(tmp_path):
    """A scenes build made with --roles train has an empty val split; the run must refuse it at once (it used to
    crash in the first validation, after an epoch of training) and say how to point val elsewhere."""
    data = write_tiny_dataset(tmp_path / "data", tracks_per_split=0)  # every split empty
    with pytest.raises(ValueError, match=r"has no windows.*--set 'val="):
        train(config_for("independent_cnn", data, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_ddp_with_two_gloo_processes_keeps_replicas_in_sync(tiny, tmp_path):
    # A hung rank fails its collective after dist_timeout_s instead of holding the test to its timeout.
    config = config_for("cnn_transformer", tiny["images"], tmp_path / "ddp", epochs=1, dist_timeout_s=120).__dict__
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(config))
    environment = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    result = subprocess.run(
        [str(SCRIPTS / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "exlow_pose_training.train",
         str(config_path)], capture_output=True, text=True, timeout=600, env=environment)
    log = result.stdout[-3000:] + result.stderr[-3000:]
    # torchrun exits non-zero when any rank does, and names each failed rank's exit code.
    assert result.returncode == 0, log
    assert "exitcode" not in result.stderr, log
    # A gloo thread outliving the interpreter aborts a rank at exit, after training has succeeded.
    assert "terminate called" not in result.stderr, log
    assert "DDP: 2 replicas in sync" in result.stdout
    # The group was really freed, so its backend joined gloo's threads before the interpreter shut down:
    # the condition for that abort, checked every run rather than only when the race is lost.
    assert "DDP: process group destroyed, its threads joined" in result.stdout, log
    assert "still referenced after destroy_process_group" not in result.stderr, log
    assert load_checkpoint(tmp_path / "ddp" / "last.pt")["epoch"] == 0


def test_onnx_export_matches_torch_and_carries_its_contract(tiny, tmp_path):
    train(config_for("cnn_transformer", tiny["images"], tmp_path / "model", epochs=1))
    model, method = load_model(tmp_path / "model" / "last.pt")
    onnx_path = tmp_path / "model.onnx"
    written = export_onnx(model, onnx_path, method)
    assert parity(model, onnx_path) < 1e-4
    backend = create_backend("onnxruntime", onnx_path, threads=1)
    assert backend.contract == written and backend.contract["output"]["frame_index"] == {"centre": 2, "latest": 4}
    # The same real crops through the ONNX and the torch backends.
    split = ExLowDataset(tiny["images"]).split("test")
    crops = crops_to_input(split.arrays["crops"][window_rows(split, np.arange(9))])
    onnx_poses = backend.infer(crops)
    torch_poses = create_backend("torch", tmp_path / "model" / "last.pt").infer(crops)
    assert onnx_poses.shape == (9, 5, 17, 2)
    np.testing.assert_allclose(onnx_poses, torch_poses, atol=1e-4)
    assert backend.infer(crops[:0]).shape == (0, 5, 17, 2)
    with pytest.raises(ValueError, match="crops must have shape"):
        backend.infer(crops[:, :4])


def test_backends_refuse_missing_corrupt_and_foreign_models_with_advice(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        create_backend("onnxruntime", tmp_path / "absent.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    with pytest.raises(BackendError, match="cannot load"):
        create_backend("onnxruntime", corrupt)
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2).eval(), (torch.rand(1, 4),), str(foreign), dynamo=True, verbose=False)
    with pytest.raises(BackendError, match="exlow-pose-export"):
        create_backend("onnxruntime", foreign)
    with pytest.raises(BackendError, match="backend must be one of"):
        create_backend("openvino", foreign)


@pytest.mark.skipif(not _tensorrt_usable(), reason="TensorRT needs an NVIDIA GPU and the tensorrt package; "
                                                   "this machine has neither (run on the lent GPU machine)")
def test_tensorrt_engine_matches_onnxruntime_and_is_cached(tiny, tmp_path):
    train(config_for("cnn_transformer", tiny["images"], tmp_path / "model", epochs=1))
    model, method = load_model(tmp_path / "model" / "last.pt")
    onnx_path = tmp_path / "model.onnx"
    export_onnx(model, onnx_path, method)
    crops = np.random.default_rng(0).random((37, 5, 3, 16, 16), dtype=np.float32)
    expected = create_backend("onnxruntime", onnx_path).infer(crops)
    for precision, tolerance in (("fp32", 1e-3), ("fp16", 2e-2)):
        engine = create_backend("tensorrt", onnx_path, precision=precision, cache_dir=tmp_path, batch_max=16)
        np.testing.assert_allclose(engine.infer(crops), expected, atol=tolerance)
        built_at = engine.engine_path.stat().st_mtime_ns
        again = create_backend("tensorrt", onnx_path, precision=precision, cache_dir=tmp_path, batch_max=16)
        assert again.engine_path == engine.engine_path and engine.engine_path.stat().st_mtime_ns == built_at


def test_evaluation_cli_prints_table_one_and_trained_beats_untrained(tiny, tmp_path):
    trained = tmp_path / "trained"
    train(config_for("channel_combined_cnn", tiny["images"], trained, epochs=6))
    untrained = tmp_path / "untrained"
    train(config_for("channel_combined_cnn", tiny["images"], untrained, epochs=1, lr=1e-9))
    export_onnx(load_model(trained / "last.pt")[0], tmp_path / "trained.onnx", "channel_combined_cnn")
    result = subprocess.run(
        [str(SCRIPTS / "exlow-pose-evaluate"), "--dataset", str(tiny["images"]), "--split", "test",
         "--model", f"trained={trained / 'last.pt'}", "--model", f"untrained={untrained / 'last.pt'}",
         "--model", f"trained_onnx={tmp_path / 'trained.onnx'}", "--json", str(tmp_path / "table.json"),
         "--dump-predictions", str(tmp_path / "predictions")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Table 1" in result.stdout and "IFE" in result.stdout and "FDAE" in result.stdout
    rows = json.loads((tmp_path / "table.json").read_text())["results"]
    windows = len(ExLowDataset(tiny["images"]).split("test"))
    assert all(row["windows"] == windows for row in rows.values())
    assert rows["trained"]["ife"] < 0.7 * rows["untrained"]["ife"]
    assert rows["trained_onnx"]["ife"] == pytest.approx(rows["trained"]["ife"], abs=1e-4)
    assert np.load(tmp_path / "predictions" / "trained.npz")["poses"].shape == (windows, 5, 17, 2)
