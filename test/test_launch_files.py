"""Launch files: checked statically and through exlow_pose_ros.nodes.launch_settings here (no `launch` package on
PyPI), run for real where `ros2 launch` exists."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from exlow_pose_ros.nodes.launch_settings import (
    LAUNCH_ARGUMENTS,
    NODE_SHORTCUTS,
    node_parameters,
    remappings,
    ros_arguments,
    rviz_config,
)
from exlow_pose_ros.nodes.parameters import ROS_PARAMETERS, load_schema

from conftest import REPO, console_scripts_in_setup_py

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
SCHEMA_OF_EXECUTABLE = {"exlow_pose_tracker": "tracker_node", "exlow_pose_pose": "pose_node",
                        "exlow_pose_video_source": "video_source_node", "exlow_pose_recorder": "bag_recorder_node"}
EXTERNAL_EXECUTABLES = {("rviz2", "rviz2")}
DEFAULTS = {name: default for name, (default, _) in LAUNCH_ARGUMENTS.items()}


def node_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Node"]


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_there_is_a_launch_file_for_the_pipeline():
    assert any("exlow_pose" in p.name for p in LAUNCH_FILES)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_node_is_an_installed_executable(path):
    scripts = console_scripts_in_setup_py()
    calls = node_calls(path)
    assert calls, f"{path.name} starts no Node"
    for call in calls:
        package = ast.literal_eval(keyword(call, "package"))
        executable = ast.literal_eval(keyword(call, "executable"))
        if (package, executable) in EXTERNAL_EXECUTABLES:
            continue
        assert package == "exlow_pose_ros", f"{path.name}: unknown package {package}"
        assert executable in scripts, f"{path.name}: {executable} is not a console script in setup.py"


def test_the_launch_arguments_ros_users_expect_are_there():
    assert {"params_file", "use_sim_time", "log_level", "namespace", "image", "camera_info", "rviz"} <= set(DEFAULTS)
    for schema, names in NODE_SHORTCUTS.items():
        declared = load_schema(schema)
        assert all(name in declared and DEFAULTS[name] == "" for name in names), schema


def test_defaults_leave_every_parameter_to_the_node():
    for schema in NODE_SHORTCUTS:
        assert node_parameters(schema, DEFAULTS) == [{"use_sim_time": False}]
    assert set(ROS_PARAMETERS) >= {"use_sim_time"}  # the nodes accept it


def test_given_arguments_come_after_the_params_file_with_their_types(tmp_path):
    params = tmp_path / "pipeline.yaml"
    params.write_text("")
    arguments = {**DEFAULTS, "params_file": str(params), "image_size": "640", "compressed_input": "True",
                 "output_mode": "latest", "use_sim_time": "true"}
    assert node_parameters("tracker_node", arguments) == [
        str(params), {"use_sim_time": True, "image_size": 640, "compressed_input": True}]
    # Both nodes read the camera's images: a compressed-only camera is compressed for both.
    assert node_parameters("pose_node", arguments) == [str(params), {"use_sim_time": True, "output_mode": "latest",
                                                                     "compressed_input": True}]


@pytest.mark.parametrize("name,value,words", [
    ("image_size", "big", ("image_size", "int")), ("image_size", "64", ("image_size", "160")),
    ("output_mode", "middle", ("output_mode", "centre")), ("use_sim_time", "yes", ("use_sim_time", "true")),
    ("compressed_input", "1", ("compressed_input", "bool"))])
def test_bad_launch_arguments_are_named(name, value, words):
    with pytest.raises(ValueError) as caught:
        for schema in NODE_SHORTCUTS:
            node_parameters(schema, {**DEFAULTS, name: value})
    assert all(word in str(caught.value) for word in words), caught.value
    with pytest.raises(ValueError, match="log_level"):
        ros_arguments({**DEFAULTS, "log_level": "loud"})


def test_compressed_input_and_camera_info_follow_the_image_remap():
    rules = dict(remappings({**DEFAULTS, "image": "/front/color/image_raw"}))
    assert rules == {"image": "/front/color/image_raw", "image/compressed": "/front/color/image_raw/compressed",
                     "camera_info": "/front/color/camera_info"}
    assert dict(remappings({**DEFAULTS, "camera_info": "/calib/info"}))["camera_info"] == "/calib/info"
    assert ros_arguments({**DEFAULTS, "log_level": "DEBUG"}) == ["--ros-args", "--log-level", "debug"]


def test_the_rviz_config_follows_the_namespace_and_the_camera_frame():
    template = (REPO / "config" / "exlow_pose.rviz.in").read_text()
    text = rviz_config(template, {**DEFAULTS, "namespace": "/robot2/people", "camera_frame": "front_optical",
                                  "image": "/front/image_raw"})
    document = yaml.safe_load(text)
    displays = {d["Class"]: d for d in document["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "/robot2/people/annotated_image"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/robot2/people/skeleton_markers"
    assert displays["rviz_default_plugins/Camera"]["Topic"]["Value"] == "/front/image_raw"
    assert document["Visualization Manager"]["Global Options"]["Fixed Frame"] == "front_optical"
    assert "$" not in text.split("\n", 2)[2]


def test_the_launch_file_passes_what_launch_settings_decide():
    source = LAUNCH_FILES[0].read_text()
    for function in ("node_parameters", "remappings", "ros_arguments", "rviz_config"):
        assert f"{function}(" in source, f"the launch file does not use {function}"
    calls = {ast.literal_eval(keyword(c, "executable")): c for c in node_calls(LAUNCH_FILES[0])}
    for executable in ("exlow_pose_tracker", "exlow_pose_pose"):
        schema = ast.unparse(keyword(calls[executable], "parameters"))
        assert SCHEMA_OF_EXECUTABLE[executable] in schema, f"{executable} gets another node's parameters"


def test_every_node_schema_is_valid_and_documented():
    for schema in SCHEMA_OF_EXECUTABLE.values():
        for spec in load_schema(schema).values():
            assert len(spec.description) > 15, f"{schema}.{spec.name} needs a real description"


@pytest.mark.skipif(shutil.which("ros2") is None, reason="`ros2 launch` is not installed here (apt ROS 2 only)")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_starts_its_nodes(path):
    process = subprocess.Popen(["ros2", "launch", "exlow_pose_ros", path.name, "log_level:=debug",
                                "use_sim_time:=false"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        deadline, names = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "exlow_pose_pose" not in names:
            names = subprocess.run(["ros2", "node", "list"], capture_output=True, text=True).stdout
            time.sleep(1)
        assert "exlow_pose_tracker" in names and "exlow_pose_pose" in names, names
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
