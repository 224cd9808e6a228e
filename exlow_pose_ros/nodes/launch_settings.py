"""What launch/exlow_pose.launch.py gives each node, from its launch arguments: parameters (params file, then
the arguments given), remappings, ROS arguments and the RViz config. Plain functions over strings, so they are
tested here although `launch` itself comes only with an apt ROS 2 install."""

from __future__ import annotations

import posixpath
from string import Template
from typing import Any

from .parameters import load_schema

# name -> (default, description). Node parameters default to "" = as in params_file (else the schema default).
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "image": ("/camera/image_raw", "sensor_msgs/Image topic of the camera (with compressed_input, its "
              "CompressedImage is <image>/compressed)"),
    "camera_info": ("", "sensor_msgs/CameraInfo topic; empty: camera_info next to the image topic"),
    "camera_frame": ("camera_optical_frame", "the camera's optical frame (its images' frame_id): RViz's fixed frame"),
    "namespace": ("exlow_pose", "namespace of the pipeline's nodes and topics"),
    "params_file": ("", "ROS 2 params file for both nodes (sections /**/exlow_pose_tracker and "
                    "/**/exlow_pose_pose; start from config/tracker_node.yaml and config/pose_node.yaml)"),
    "use_sim_time": ("false", "use /clock (bag playback with --clock)"),
    "log_level": ("info", "log level of both nodes: debug, info, warn, error or fatal"),
    "rviz": ("false", "start RViz on the pipeline's outputs"),
    # Shortcuts for the parameters changed most; empty leaves them to params_file.
    "detector_model": ("", "tracker: detector weights; empty: yolo11n-pose.pt from $EXLOW_POSE_ASSETS/models"),
    "image_size": ("", "tracker: detector input size (small people need large sizes; default 1280)"),
    "device": ("", "tracker: detector torch device (cpu, cuda:0, ...)"),
    "tile_size": ("", "tracker: tiled detection for tiny people in full-size frames, tile side in pixels "
                  "(0: off; 320 on a GPU)"),
    "compressed_input": ("", "tracker and pose: subscribe to <image>/compressed (true/false)"),
    "model_path": ("", "pose: model (.onnx); empty: the shipped reference model"),
    "backend": ("", "pose: auto, onnxruntime, tensorrt or torch"),
    "output_mode": ("", "pose: centre (paper, 2 frames of delay) or latest (no delay)"),
}
NODE_SHORTCUTS = {"tracker_node": ("detector_model", "image_size", "device", "tile_size", "compressed_input"),
                  "pose_node": ("model_path", "backend", "output_mode", "compressed_input")}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def typed(schema: str, name: str, text: str) -> Any:
    """A launch argument's text as the parameter's type; ValueError naming the argument when it does not fit."""
    spec = load_schema(schema)[name]
    if spec.type == "bool":
        value: Any = typed_bool(name, text)
    else:
        try:
            value = {"int": int, "double": float}.get(spec.type, str)(text)
        except ValueError:
            raise ValueError(f"launch argument {name}:={text!r} is not a {spec.type}") from None
    spec.check(value)
    return value


def node_parameters(schema: str, arguments: dict[str, str]) -> list[Any]:
    """The `parameters` of a node: the params file when given, then the launch arguments that were given."""
    given = {name: typed(schema, name, arguments[name]) for name in NODE_SHORTCUTS[schema] if arguments.get(name)}
    files = [arguments["params_file"]] if arguments.get("params_file") else []
    return [*files, {"use_sim_time": typed_bool("use_sim_time", arguments.get("use_sim_time", "false")), **given}]


def typed_bool(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"launch argument {name}:={text!r} is not a bool (true or false)")
    return text.lower() == "true"


def camera_info_topic(arguments: dict[str, str]) -> str:
    return arguments.get("camera_info") or posixpath.join(posixpath.dirname(arguments["image"]), "camera_info")


def remappings(arguments: dict[str, str]) -> list[tuple[str, str]]:
    """The nodes' relative input topics onto the camera's; `image/compressed` needs its own rule (a remap of
    `image` does not reach it)."""
    image = arguments["image"]
    return [("image", image), ("image/compressed", f"{image}/compressed"),
            ("camera_info", camera_info_topic(arguments))]


def ros_arguments(arguments: dict[str, str]) -> list[str]:
    level = arguments.get("log_level", "info").lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={level!r} must be one of {', '.join(LOG_LEVELS)}")
    return ["--ros-args", "--log-level", level]


def rviz_config(template: str, arguments: dict[str, str]) -> str:
    """The RViz config template (config/exlow_pose.rviz.in) with the pipeline's topics in the launch namespace
    and the camera's frame as the fixed frame."""
    namespace = "/" + arguments["namespace"].strip("/") if arguments["namespace"].strip("/") else ""
    return Template(template).substitute(annotated_image=f"{namespace}/annotated_image",
                                         skeleton_markers=f"{namespace}/skeleton_markers",
                                         image=arguments["image"], camera_frame=arguments["camera_frame"])
