"""Start-up faults: each ends the node with exit status 2 and one line that says what is wrong and what to do,
never a traceback. The node processes run concurrently (a tracker takes seconds to import its detector)."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exlow_pose_ros.core.backends.base import BackendError

from conftest import REPO
from robustness_support import NODE_ENV, node_command, pose_model, ros_value

DETECTOR = Path(os.environ.get("EXLOW_POSE_ASSETS", REPO / "assets")) / "models" / "yolo11n-pose.pt"

# id -> (node module, parameters, files to make, package hidden from the node, words the one line must hold)
CASES: dict[str, tuple[str, dict, str | None, str | None, tuple[str, ...]]] = {
    "pose model missing": ("pose_node", {"model_path": "/nonexistent/pten.onnx"}, None, None,
                           ("/nonexistent/pten.onnx", "not found", "model_path")),
    "pose model corrupt": ("pose_node", {"model_path": "{tmp}/corrupt.onnx"}, "corrupt.onnx", None,
                           ("corrupt.onnx", "cannot load", "Re-export")),
    "pose model without contract": ("pose_node", {"model_path": "{tmp}/foreign.onnx"}, "foreign.onnx", None,
                                    ("foreign.onnx", "exlow_pose.contract", "export it again")),
    "tensorrt not installed": ("pose_node", {"model_path": "{model}", "backend": "tensorrt"}, None, "tensorrt",
                               ("tensorrt", "install", "onnxruntime")),
    "onnxruntime not installed": ("pose_node", {"model_path": "{model}", "backend": "onnxruntime"}, None,
                                  "onnxruntime", ("onnxruntime", "pip install")),
    "torch backend given an onnx model": ("pose_node", {"model_path": "{model}", "backend": "torch"}, None, None,
                                          ("cannot load checkpoint", "backend onnxruntime")),
    "unknown backend": ("pose_node", {"model_path": "{model}", "backend": "openvino"}, None, None,
                        ("backend", "openvino", "onnxruntime")),
    "keypoint calibration missing": ("pose_node", {"model_path": "{model}",
                                                   "keypoint_calibration": "/nonexistent/c.json"},
                                     None, None, ("/nonexistent/c.json", "not found", "keypoint_calibration")),
    "keypoint calibration corrupt": ("pose_node", {"model_path": "{model}",
                                                   "keypoint_calibration": "{tmp}/corrupt.json"},
                                     "corrupt.json", None, ("corrupt.json", "exlow-pose-calibrate")),
    "detector missing": ("tracker_node", {"detector_model": "/nonexistent/yolo.pt"}, None, None,
                         ("/nonexistent/yolo.pt", "not found", "setup.sh")),
    "detector corrupt": ("tracker_node", {"detector_model": "{tmp}/corrupt.pt"}, "corrupt.pt", None,
                         ("corrupt.pt", "cannot load detector weights")),
    "detector onnx corrupt": ("tracker_node", {"detector_model": "{tmp}/corrupt.onnx", "image_size": 320},
                              "corrupt.onnx", None, ("corrupt.onnx", "first inference")),
    "detector engine from elsewhere": ("tracker_node", {"detector_model": "{tmp}/yolo.engine", "image_size": 320},
                                       "yolo.engine", None, ("yolo.engine", "export it again", "GPU")),
    "ultralytics not installed": ("tracker_node", {"detector_model": str(DETECTOR)}, None, "ultralytics",
                                  ("ultralytics", "pip install")),
}


def make_file(name: str, folder: Path) -> None:
    path = folder / name
    if name == "foreign.onnx":  # a valid ONNX model that exlow-pose-export did not write
        import onnx
        from onnx import TensorProto, helper

        shape = ["N", 5, 3, 16, 16]
        graph = helper.make_graph([helper.make_node("Identity", ["crops"], ["poses"])], "foreign",
                                  [helper.make_tensor_value_info("crops", TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info("poses", TensorProto.FLOAT, shape)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, path)
    else:  # truncated or foreign bytes: what a failed copy or another machine's file looks like
        path.write_bytes(bytes(range(256)) * 20)


def start(case: str, folder: Path, model: Path) -> subprocess.CompletedProcess:
    module, params, _, hidden, _ = CASES[case]
    env = dict(NODE_ENV)
    if hidden:  # a package that raises ImportError first on the path: as if it were not installed
        shadow = folder / f"hide_{hidden}" / hidden
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text(f"raise ImportError(\"No module named '{hidden}'\")\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow.parent), env.get("PYTHONPATH")]))
    command = node_command(module, {name: ros_value(value).format(tmp=folder, model=model)
                                    for name, value in params.items()})
    # Generous: under load (a training job beside the suite) importing torch and Ultralytics takes long.
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    model = pose_model(tmp_path_factory)
    folders = {}
    for index, (case, (_, _, file_name, _, _)) in enumerate(CASES.items()):
        folders[case] = tmp_path_factory.mktemp(f"startup{index}")
        if file_name:
            make_file(file_name, folders[case])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {case: pool.submit(start, case, folders[case], model) for case in CASES}
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_start_up_fault_ends_with_one_clear_line(outcomes, case):
    result = outcomes[case]
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, f"exit status {result.returncode}:\n{output}"
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"[{CASES[case][0]}] cannot start: "), output
    for words in CASES[case][4]:
        assert words in lines[0], f"{words!r} missing from: {lines[0]}"


# --- TensorRT engine cache: an engine built for another GPU or TensorRT version is rebuilt, never loaded.
# TensorRT and a GPU are not on this machine, so they are stood in for: an "engine" is bytes naming the
# TensorRT version and GPU it was built for, and deserialising it anywhere else fails, as with real engines.


class FakeTensorRT:
    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    def __init__(self, version: str) -> None:
        self.__version__ = version
        self.capability = "8.7"
        self.builds = 0

    def engine_bytes(self) -> bytes:
        return f"engine for TensorRT {self.__version__} on sm{self.capability}".encode()

    def Runtime(self, logger):  # TensorRT's name
        fake = self

        class Runtime:
            def deserialize_cuda_engine(self, data: bytes):
                return FakeEngine() if bytes(data) == fake.engine_bytes() else None

        return Runtime()


class FakeEngine:
    def create_execution_context(self) -> object:
        return object()


class FakeTorch:
    def __init__(self, trt: FakeTensorRT) -> None:
        self._trt = trt
        outer = self

        class Cuda:
            @staticmethod
            def is_available() -> bool:
                return True

            @staticmethod
            def get_device_capability() -> tuple[int, int]:
                major, minor = outer._trt.capability.split(".")
                return int(major), int(minor)

            @staticmethod
            def Stream() -> object:  # torch's name
                return object()

        self.cuda = Cuda


@pytest.fixture
def fake_tensorrt(monkeypatch):
    from exlow_pose_ros.core.backends import tensorrt_backend

    trt = FakeTensorRT("10.3.0")

    def build_engine(onnx_path, precision, batch_min, batch_opt, batch_max) -> bytes:
        trt.builds += 1
        return trt.engine_bytes()

    monkeypatch.setattr(tensorrt_backend, "trt", trt)
    monkeypatch.setattr(tensorrt_backend, "torch", FakeTorch(trt))
    monkeypatch.setattr(tensorrt_backend, "build_engine", build_engine)
    return trt


def test_a_cached_engine_for_another_gpu_or_tensorrt_version_is_rebuilt(fake_tensorrt, tmp_path_factory, tmp_path):
    from exlow_pose_ros.core.backends.tensorrt_backend import TensorRtBackend

    model = pose_model(tmp_path_factory)
    cache = tmp_path / "engines"
    log: list[str] = []

    def start() -> TensorRtBackend:
        return TensorRtBackend(model, precision="fp32", cache_dir=cache, log=log.append)

    first = start()
    assert fake_tensorrt.builds == 1 and first.engine_path.is_file()
    assert json.loads(first.engine_path.with_suffix(".json").read_text())["tensorrt_version"] == "10.3.0"
    start()
    assert fake_tensorrt.builds == 1, "an engine of this TensorRT and GPU was not reused"

    fake_tensorrt.__version__ = "10.4.0"  # TensorRT upgraded: the old engine would not deserialise
    upgraded = start()
    assert fake_tensorrt.builds == 2 and upgraded.engine_path != first.engine_path
    fake_tensorrt.capability = "9.0"      # the cache copied to another GPU
    moved = start()
    assert fake_tensorrt.builds == 3 and moved.describe().endswith("sm9.0")

    # An engine file whose sidecar claims this GPU but which was built elsewhere (or is damaged): rebuilt.
    moved.engine_path.write_bytes(b"engine for TensorRT 10.4.0 on sm8.7")
    start()
    assert fake_tensorrt.builds == 4
    assert any("does not load; rebuilding it" in line for line in log), log
    assert moved.engine_path.read_bytes() == fake_tensorrt.engine_bytes()


def test_an_engine_that_cannot_be_cached_still_runs_and_says_where_to_cache(fake_tensorrt, tmp_path_factory,
                                                                            tmp_path):
    from exlow_pose_ros.core.backends.tensorrt_backend import TensorRtBackend

    blocked = tmp_path / "file_not_folder"
    blocked.write_text("")
    log: list[str] = []
    TensorRtBackend(pose_model(tmp_path_factory), precision="fp32", cache_dir=blocked / "engines", log=log.append)
    assert any("cannot cache the engine" in line and "cache_dir" in line for line in log), log


def test_a_failed_engine_build_is_a_backend_error(fake_tensorrt, tmp_path_factory, tmp_path, monkeypatch):
    from exlow_pose_ros.core.backends import tensorrt_backend

    def fails(*args) -> bytes:
        raise BackendError("TensorRT failed to build an engine from pten.onnx (see the TensorRT log above)")

    monkeypatch.setattr(tensorrt_backend, "build_engine", fails)
    with pytest.raises(BackendError, match="failed to build"):
        tensorrt_backend.TensorRtBackend(pose_model(tmp_path_factory), cache_dir=tmp_path, log=lambda _: None)


def test_a_corrupt_onnx_model_on_tensorrt_is_a_backend_error_that_says_what_to_do(fake_tensorrt, tmp_path):
    from exlow_pose_ros.core.backends.tensorrt_backend import TensorRtBackend

    make_file("corrupt.onnx", tmp_path)
    with pytest.raises(BackendError, match=r"corrupt.onnx is not a readable ONNX file.*exlow-pose-export"):
        TensorRtBackend(tmp_path / "corrupt.onnx", cache_dir=tmp_path, log=lambda _: None)
    assert fake_tensorrt.builds == 0


def test_an_unreadable_engine_record_is_a_cache_miss_and_the_cache_is_written_whole(fake_tensorrt, tmp_path_factory,
                                                                                    tmp_path):
    """A half-written sidecar (a crash, or two nodes caching at once) must mean "rebuild", not a start-up
    failure; and the cache folder holds no temporary files afterwards."""
    from exlow_pose_ros.core.backends.tensorrt_backend import TensorRtBackend

    model = pose_model(tmp_path_factory)
    first = TensorRtBackend(model, precision="fp32", cache_dir=tmp_path, log=lambda _: None)
    first.engine_path.with_suffix(".json").write_text("{\"tensorrt_vers")
    again = TensorRtBackend(model, precision="fp32", cache_dir=tmp_path, log=lambda _: None)
    assert fake_tensorrt.builds == 2 and again.engine_path == first.engine_path
    assert json.loads(again.engine_path.with_suffix(".json").read_text())["tensorrt_version"] == "10.3.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.engine_path.name,
                                                                 first.engine_path.with_suffix(".json").name])


def test_engines_of_a_read_only_model_folder_go_to_the_user_cache(fake_tensorrt, tmp_path_factory, tmp_path,
                                                                  monkeypatch):
    """An apt or /opt install: the model's folder cannot be written, so the engine is cached (and found again)
    under $XDG_CACHE_HOME/exlow_pose instead of being rebuilt at every start."""
    from exlow_pose_ros.core.backends import tensorrt_backend

    model = pose_model(tmp_path_factory)
    writable = os.access
    monkeypatch.setattr(tensorrt_backend.os, "access",
                        lambda path, mode: False if Path(path) == model.parent else writable(path, mode))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tensorrt_backend.TensorRtBackend(model, precision="fp32", log=lambda _: None)
    assert first.engine_path.parent == tmp_path / "cache" / "exlow_pose" and first.engine_path.is_file()
    tensorrt_backend.TensorRtBackend(model, precision="fp32", log=lambda _: None)
    assert fake_tensorrt.builds == 1, "the engine in the user cache was not found again"
