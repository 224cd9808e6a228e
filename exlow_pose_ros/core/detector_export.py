"""Exports the Ultralytics person detector (ONNX Runtime, OpenVINO, TensorRT) once and caches it.

    python -m exlow_pose_ros.core.detector_export --backend openvino --imgsz 1280 --frame-size 768x576
    python -m exlow_pose_ros.core.detector_export --backend onnxruntime --imgsz 1280          # dynamic shape

Cache: one folder per export under `cache_dir` (default: `exported/` next to the weights), named by the weights'
stem and sha256, backend, imgsz, input shape (`HxW` for a fixed letterboxed shape, `dynamic`), precision and
the Ultralytics version; its key.json holds the key and the sha256 of the exported files, checked at load so a
truncated or edited export fails at start-up instead of at the first image.

Shapes: a square 1280x1280 export is slower than PyTorch's rectangular letterbox (1280x960 for a 4:3 frame),
and Ultralytics runs a fixed-shape export at its export shape whatever `imgsz` predict gets. So a fixed-shape
export is made for the frame's letterboxed shape (`letterbox_shape`), or the export is dynamic (ONNX, OpenVINO,
TensorRT up to imgsz) and Ultralytics letterboxes each frame to its own rectangle as with PyTorch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .error_text import first_line
from .provenance import file_sha256

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
EXPORT_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "engine"}
PRECISIONS = ("fp32", "fp16")
STRIDE = 32  # YOLO11's largest stride: Ultralytics rounds input sizes up to a multiple of it
OPENVINO_PIN = "openvino==2026.4.1"  # requirements/runtime.txt
# The tracker's max_upscale default (its schema says the same): chosen on the validation stretch of Market Street
# among 0 (off), 4 and 8; on the unseen scenes it takes recall at 12 px tall people from 12 % to 79 % (README).
DEFAULT_MAX_UPSCALE = 8.0


class ExportError(RuntimeError):
    """An export cannot be made or read; the message says what to do."""


def effective_imgsz(width: int, height: int, imgsz: int, max_upscale: float) -> int:
    """Detector input size for a width x height frame: imgsz, but a small frame is not blown up more than
    max_upscale times; rounded up to the stride, as Ultralytics rounds imgsz. max_upscale <= 0: always imgsz.
    Some upscaling is what makes the detector find tiny people, too much loses them again (a 100 px wide frame
    blown up to 1280 is mush): 8 finds far more people 12-24 px tall than 0 (always imgsz), 2 or 4."""
    size = float(imgsz) if max_upscale <= 0 else min(float(imgsz), max_upscale * max(width, height))
    return max(STRIDE, math.ceil(size / STRIDE) * STRIDE)


def letterbox_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(height, width) Ultralytics feeds a PyTorch (or dynamic) model for this frame at imgsz `size` with rect
    letterboxing: the frame scaled so its longest side is `size`, each side padded up to the stride
    (ultralytics.data.augment.LetterBox(auto=True))."""
    ratio = min(size / height, size / width)
    return (math.ceil(round(height * ratio) / STRIDE) * STRIDE, math.ceil(round(width * ratio) / STRIDE) * STRIDE)


def parse_frame_size(text: str) -> tuple[int, int]:
    """'768x576' -> (768, 576), width x height."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ExportError(f"frame size must be WIDTHxHEIGHT such as 768x576, not {text!r}") from None
    if width < 1 or height < 1:
        raise ExportError(f"frame size must be positive, not {text!r}")
    return width, height


def default_cache_dir(weights: Path) -> Path:
    return Path(weights).parent / "exported"


def ultralytics_version() -> str:
    try:
        from importlib.metadata import version

        return version("ultralytics")
    except Exception:  # not installed: PersonTracker reports it
        return "unknown"


@dataclass(frozen=True)
class ExportKey:
    weights_sha256: str
    backend: str
    imgsz: int
    shape: tuple[int, int] | None  # (height, width) of a fixed-shape export; None: dynamic
    precision: str
    ultralytics: str

    def folder(self, stem: str) -> str:
        shape = "dynamic" if self.shape is None else f"{self.shape[0]}x{self.shape[1]}"
        return (f"{stem}-{self.weights_sha256[:12]}-{self.backend}-{self.imgsz}-{shape}-{self.precision}"
                f"-u{self.ultralytics}")


@dataclass(frozen=True)
class Export:
    key: ExportKey
    path: Path  # what YOLO() loads: the .onnx / .engine file or the OpenVINO model folder


def export_command(backend: str, weights: Path, imgsz: int, precision: str, cache_dir: Path | None,
                   frame_size: tuple[int, int] | None = None) -> str:
    """The command that makes the export a start-up error asks for."""
    parts = [f"python -m exlow_pose_ros.core.detector_export --backend {backend} --weights {weights} "
             f"--imgsz {imgsz}"]
    if frame_size is not None:
        parts.append(f"--frame-size {frame_size[0]}x{frame_size[1]}")
    if precision != "fp32":
        parts.append(f"--precision {precision}")
    if cache_dir is not None:
        parts.append(f"--cache-dir {cache_dir}")
    return " ".join(parts)


def check_backend_available(backend: str) -> None:
    """Raise ExportError with the install line when the backend's runtime is missing (Ultralytics would try a
    pip install at run time, which fails offline)."""
    if backend not in BACKENDS:
        raise ExportError(f"detector backend must be one of {BACKENDS}, not {backend!r}")
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}.get(backend)
    if module is not None and importlib.util.find_spec(module) is None:
        hint = {"onnxruntime": "pip install onnxruntime", "openvino": f"pip install {OPENVINO_PIN}",
                "tensorrt": "install TensorRT (JetPack, or pip install tensorrt on an x86 NVIDIA GPU machine)"}
        raise ExportError(f"detector backend {backend} needs the {module} package: {hint[backend]}")


def _exported_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _checksums(folder: Path, path: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in _exported_files(path)}


def find_exports(weights: Path, backend: str, imgsz: int, precision: str = "fp32",
                 cache_dir: Path | None = None) -> list[Export]:
    """Every cached export of these weights for this backend, imgsz and precision (dynamic and fixed shapes).
    Raises ExportError for a corrupt one (checksum mismatch, missing file)."""
    weights = Path(weights)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(weights)
    if not cache.is_dir():
        return []
    wanted = {"weights_sha256": file_sha256(weights), "backend": backend, "imgsz": imgsz, "precision": precision,
              "ultralytics": ultralytics_version()}
    found = []
    for key_file in sorted(cache.glob("*/key.json")):
        folder = key_file.parent
        try:
            record = json.loads(key_file.read_text())
            key = ExportKey(**{**record["key"], "shape": None if record["key"]["shape"] is None
                               else tuple(record["key"]["shape"])})
            model_name, checksums = record["model"], record["sha256"]
        except (ValueError, KeyError, TypeError) as error:
            raise ExportError(f"exported detector {folder} is corrupt ({first_line(error)}): delete it and export "
                              "again") from None
        if any(getattr(key, name) != value for name, value in wanted.items()):
            continue
        path = folder / model_name
        fix = (f"delete {folder} and run "
               f"{export_command(backend, weights, imgsz, precision, cache_dir, None)}"
               + ("" if key.shape is None else " with --frame-size for your frames"))
        if not path.exists():
            raise ExportError(f"exported detector {path} is missing: {fix}")
        if _checksums(folder, path) != checksums:
            raise ExportError(f"exported detector {path} is corrupt (checksum mismatch): {fix}")
        found.append(Export(key, path))
    return found


def export_detector(weights: Path, backend: str, imgsz: int = 1280, shape: tuple[int, int] | None = None,
                    precision: str = "fp32", cache_dir: Path | None = None, device: str = "cpu",
                    force: bool = False) -> Export:
    """The cached export of `weights` for this backend: made once (Ultralytics' own exporter), then reused.

    shape: (height, width) of a fixed-shape export (use letterbox_shape for the frames' size); None: dynamic.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise ExportError(f"detector weights {weights} not found: run scripts/setup.sh")
    check_backend_available(backend)
    if backend == "torch":
        raise ExportError("the torch backend runs the weights as they are; nothing to export")
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if shape is not None and (shape[0] % STRIDE or shape[1] % STRIDE):
        raise ExportError(f"export shape {shape} must be a multiple of {STRIDE} on each side")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(weights)
    key = ExportKey(file_sha256(weights), backend, imgsz, None if shape is None else (int(shape[0]), int(shape[1])),
                    precision, ultralytics_version())
    folder = cache / key.folder(weights.stem)
    if not force:
        for existing in find_exports(weights, backend, imgsz, precision, cache):
            if existing.key == key:
                return existing
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    # Export from a copy inside a scratch folder: Ultralytics writes next to its input, and a half-written export
    # must never sit where find_exports looks.
    scratch = cache / f".{folder.name}.tmp{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        source = scratch / weights.name
        shutil.copy2(weights, source)
        options = {"format": EXPORT_FORMAT[backend], "imgsz": imgsz if shape is None else list(shape),
                   "dynamic": shape is None, "half": precision == "fp16", "batch": 1, "nms": False,
                   "device": device if backend != "tensorrt" or device != "cpu" else "0", "verbose": False}
        if backend in ("onnxruntime", "tensorrt"):  # both go through ONNX
            options["simplify"] = False  # onnxslim is not a dependency; Ultralytics would pip-install it
        try:
            model = YOLO(str(source), task="pose" if "pose" in weights.name else "detect")
            exported = Path(model.export(**options))
        except Exception as error:
            raise ExportError(f"{backend} export of {weights} failed: {first_line(error)}") from None
        source.unlink()
        for leftover in scratch.glob("*.onnx"):  # TensorRT's intermediate ONNX
            if leftover != exported:
                leftover.unlink()
        record = {"key": asdict(key), "model": exported.name, "sha256": _checksums(scratch, exported),
                  "weights": str(weights.resolve())}
        (scratch / "key.json").write_text(json.dumps(record, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Export(key, folder / exported.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exlow_pose_ros.core.detector_export",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS[1:], required=True)
    parser.add_argument("--weights", type=Path, default=None, help="detector .pt (default: yolo11n-pose.pt in "
                        "the assets)")
    parser.add_argument("--imgsz", type=int, default=1280)
    parser.add_argument("--frame-size", action="append", default=[], metavar="WxH",
                        help="export a fixed shape for frames of this size (repeatable); without it: a dynamic "
                        "export that takes any frame size")
    parser.add_argument("--max-upscale", type=float, default=DEFAULT_MAX_UPSCALE, help="as the tracker's "
                        "max_upscale: a small frame is exported at min(imgsz, max_upscale x longest side) (default: "
                        "%(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: exported/ next to the weights")
    parser.add_argument("--device", default="cpu", help="export device (TensorRT: a GPU, e.g. 0)")
    parser.add_argument("--force", action="store_true", help="export again even when cached")
    args = parser.parse_args(argv)
    if args.weights is None:
        from .assets import default_detector

        args.weights = Path(default_detector())
    try:
        shapes: list[tuple[int, int] | None] = [None]
        if args.frame_size:
            sizes = [parse_frame_size(text) for text in args.frame_size]
            shapes = [letterbox_shape(w, h, effective_imgsz(w, h, args.imgsz, args.max_upscale)) for w, h in sizes]
        for shape in dict.fromkeys(shapes):
            export = export_detector(args.weights, args.backend, args.imgsz, shape, args.precision, args.cache_dir,
                                     args.device, args.force)
            print(f"{args.backend} {'dynamic' if shape is None else f'{shape[0]}x{shape[1]}'}: {export.path}")
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
