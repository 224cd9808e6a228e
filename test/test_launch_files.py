"""Launch files: checked statically here (no `launch` package on PyPI), run for real where `ros2 launch` exists."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from exlow_pose_ros.parameters import load_schema

from conftest import REPO, console_scripts_in_setup_py

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
# Our executables and the parameter schema (config/<name>.yaml) each declares.
SCHEMA_OF_EXECUTABLE = {"exlow_pose_tracker": "tracker_node", "exlow_pose_pose": "pose_node",
                        "exlow_pose_video_source": "video_source_node", "exlow_pose_recorder": "bag_recorder_node"}
EXTERNAL_EXECUTABLES = {("rviz2", "rviz2")}


def node_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Node"]


def keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_there_is_a_launch_file_for_the_pipeline():
    assert any("exlow_pose" in p.name for p in LAUNCH_FILES)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_node_is_an_installed_executable_with_declared_parameters(path):
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
        declared = load_schema(SCHEMA_OF_EXECUTABLE[executable])
        for entry in getattr(keyword(call, "parameters"), "elts", []):
            if isinstance(entry, ast.Dict):
                for key in entry.keys:
                    name = ast.literal_eval(key)
                    assert name in declared, f"{path.name}: {executable} does not declare parameter {name!r}"
            else:  # a parameter file: a string path that must exist in the package
                file_name = ast.literal_eval(entry)
                assert (REPO / file_name).is_file(), f"{path.name}: parameter file {file_name} does not exist"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_files_a_launch_file_names_exist(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value \
                and node.value.endswith((".rviz", ".yaml")):
            assert (REPO / "config" / node.value).is_file(), f"{path.name} names missing config/{node.value}"


def test_every_node_schema_is_valid_and_documented():
    for schema in SCHEMA_OF_EXECUTABLE.values():
        if (REPO / "config" / f"{schema}.yaml").exists():
            for spec in load_schema(schema).values():
                assert len(spec.description) > 15, f"{schema}.{spec.name} needs a real description"


@pytest.mark.skipif(shutil.which("ros2") is None, reason="`ros2 launch` is not installed here (apt ROS 2 only)")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_starts_its_nodes(path):
    process = subprocess.Popen(["ros2", "launch", "exlow_pose_ros", path.name], stdout=subprocess.PIPE,
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
