"""Files the package ships in models/ (the default pose model, the detector keypoint calibration): installed in
share/exlow_pose_ros/models by colcon or the set-up, else read from the source checkout."""

from __future__ import annotations

from pathlib import Path

from .keypoint_calibration import KeypointCalibration

SHIPPED_MODEL = "exlow_pose_pten.onnx"
SHIPPED_CALIBRATION = "yolo11n_pose_keypoint_calibration.json"


def shipped_file(name: str) -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("exlow_pose_ros")) / "models" / name
        if installed.is_file():
            return installed
    except (ImportError, LookupError):
        pass
    return Path(__file__).resolve().parents[1] / "models" / name


def default_model() -> Path:
    return shipped_file(SHIPPED_MODEL)


def keypoint_calibration(setting: str) -> KeypointCalibration | None:
    """'' = the shipped calibration of YOLO11n-pose's keypoint confidences, 'none' = raw, else a JSON path."""
    if setting == "none":
        return None
    return KeypointCalibration.load(Path(setting) if setting else shipped_file(SHIPPED_CALIBRATION))
