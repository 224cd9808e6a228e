"""Dependencies point one way: tools -> nodes -> core <- training. The core holds no ROS (rclpy, messages) and
imports torch only inside functions (TensorRT's CUDA buffers, on a GPU), so it runs anywhere; the runtime never
imports training (the torch backend comes through an entry point). Read from the source with ast, lazy imports
inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

ROOMS = {  # room -> the rooms it may import from
    "core": {"core"},
    "nodes": {"core", "nodes"},
    "tools": {"core", "nodes", "tools"},
    "training": {"core", "training"},
    "launch": {"nodes"},
}
ROS_PACKAGES = ("rclpy", "rosidl", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs",
                "geometry_msgs", "visualization_msgs", "diagnostic_msgs", "exlow_pose_msgs", "launch", "launch_ros",
                "cv_bridge", "rosbags")


def room_of_module(name: str) -> str | None:
    if name.startswith("exlow_pose_training"):
        return "training"
    for room in ("core", "nodes", "tools"):
        if name == f"exlow_pose_ros.{room}" or name.startswith(f"exlow_pose_ros.{room}."):
            return room
    return "package root" if name == "exlow_pose_ros" else None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO / "training" if "training" in path.relative_to(REPO).parts[:1] else REPO) \
        .with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[tuple[Path, str]]:
    files = [(p, room_of_module(module_name(p))) for p in (REPO / "exlow_pose_ros").rglob("*.py")]
    files += [(p, "training") for p in (REPO / "training" / "exlow_pose_training").rglob("*.py")]
    files += [(p, "launch") for p in (REPO / "launch").glob("*.launch.py")]
    return [(p, room) for p, room in files if room not in (None, "package root")]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, at module level) of every import in the file."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    top_level = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, id(node) in top_level))
    return found


@pytest.mark.parametrize("path,room", sources(), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else v)
def test_imports_point_one_way(path, room):
    for name, _ in imports(path):
        target = room_of_module(name)
        if target is None:
            continue
        assert target != "package root", f"{path.relative_to(REPO)} imports the package root {name}"
        assert target in ROOMS[room], f"{path.relative_to(REPO)} ({room}) imports {name} ({target})"


@pytest.mark.parametrize("path", [p for p, room in sources() if room == "core"], ids=lambda p: p.name)
def test_the_core_has_no_ros_and_no_module_level_torch(path):
    for name, top_level in imports(path):
        assert name.split(".")[0] not in ROS_PACKAGES, f"{path.relative_to(REPO)} imports {name}"
        assert not (top_level and name.split(".")[0] == "torch"), f"{path.relative_to(REPO)} imports torch at load"


def test_every_package_file_is_in_a_room():
    loose = [p for p in (REPO / "exlow_pose_ros").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside core/, nodes/ and tools/: {loose}"


def test_the_rooms_hold_what_the_readme_says():
    core = {p.stem for p in (REPO / "exlow_pose_ros" / "core").rglob("*.py")}
    assert {"crop", "windows", "model_contract", "pose_estimator", "person_tracker", "stream_guard", "assets",
            "onnxruntime_backend", "tensorrt_backend"} <= core
    assert "torch_backend" not in core and (REPO / "training" / "exlow_pose_training" / "torch_backend.py").is_file()
