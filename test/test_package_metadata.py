"""package.xml, setup.py and the documented robot build agree with the code."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from ament_index_python.packages import get_packages_with_prefixes
from catkin_pkg.package import parse_package

from conftest import REPO, console_scripts_in_setup_py

PYTHON_SOURCES = sorted((REPO / "exlow_pose_ros").rglob("*.py"))

# Python module -> rosdep key, for modules that are not ROS packages themselves.
ROSDEP_KEY_OF_MODULE = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "rich": "python3-rich",
    "onnxruntime": "python3-onnxruntime-pip",
    "ultralytics": "python3-ultralytics-pip",
    "lap": "python3-lap-pip",
    "rosbags": "python3-rosbags-pip",
    "matplotlib": "python3-matplotlib",
}


def is_optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside `try: ... except ImportError` is optional (e.g. cv_bridge)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            return True
    return False


def required_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if not is_optional(node, parents):
            modules.update(name.split(".")[0] for name in names)
    return modules


def third_party_imports() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in PYTHON_SOURCES:
        for module in required_imports(path):
            if module in sys.stdlib_module_names or module in ("exlow_pose_ros", "__future__"):
                continue
            found.setdefault(module, []).append(str(path.relative_to(REPO)))
    return found


def declared_run_dependencies() -> set[str]:
    package = parse_package(str(REPO / "package.xml"))
    return {d.name for d in package.exec_depends + package.build_export_depends}


def test_package_xml_declares_every_module_the_package_imports():
    ros_packages = set(get_packages_with_prefixes())
    declared = declared_run_dependencies()
    missing = []
    for module, files in sorted(third_party_imports().items()):
        key = module if module in ros_packages else ROSDEP_KEY_OF_MODULE.get(module)
        if key is None:
            missing.append(f"{module} (imported by {files}): add it to ROSDEP_KEY_OF_MODULE and package.xml")
        elif key not in declared:
            missing.append(f"{key} for `import {module}` in {files}")
    assert not missing, "package.xml lacks exec_depend entries:\n" + "\n".join(missing)


def test_import_scanner_sees_required_and_optional_imports():
    imports = required_imports(REPO / "exlow_pose_ros" / "nodes" / "image_conversion.py")
    assert {"numpy", "sensor_msgs", "std_msgs"} <= imports
    assert "cv_bridge" not in imports  # guarded by try/except ImportError


def test_every_pip_rosdep_key_has_a_rule_in_the_shipped_rosdep_file():
    rules = yaml.safe_load((REPO / "rosdep" / "exlow_pose.yaml").read_text())
    package = parse_package(str(REPO / "package.xml"))
    pip_keys = {d.name for d in package.exec_depends + package.test_depends if d.name.endswith("-pip")}
    assert pip_keys <= set(rules), f"keys without a rule: {sorted(pip_keys - set(rules))}"
    for key in pip_keys:
        for platform in ("ubuntu", "debian"):
            assert rules[key][platform]["pip"]["packages"], f"{key} has no pip package on {platform}"


def test_interface_package_declares_the_packages_its_messages_use():
    used = set()
    for msg in (REPO / "exlow_pose_msgs" / "msg").glob("*.msg"):
        for line in msg.read_text().splitlines():
            field_type = line.split("#")[0].split()[:1]
            if field_type and "/" in field_type[0]:
                used.add(field_type[0].split("/")[0])
            elif field_type and field_type[0] in ("time", "duration"):
                used.add("builtin_interfaces")
    package = parse_package(str(REPO / "exlow_pose_msgs" / "package.xml"))
    declared = {d.name for d in package.build_depends} & {d.name for d in package.exec_depends}
    assert used, "no field types found: the .msg parser in this test is broken"
    assert used <= declared, f"exlow_pose_msgs/package.xml lacks <depend> on {sorted(used - declared)}"
    cmake = (REPO / "exlow_pose_msgs" / "CMakeLists.txt").read_text()
    for msg in (REPO / "exlow_pose_msgs" / "msg").glob("*.msg"):
        assert f'"msg/{msg.name}"' in cmake, f"{msg.name} is not generated by CMakeLists.txt"


@pytest.mark.parametrize("script", sorted(console_scripts_in_setup_py()))
def test_console_script_is_installed_and_answers_help(script):
    target = console_scripts_in_setup_py()[script]
    module = target.split(":")[0]
    assert importlib.util.find_spec(module), f"{script} points at missing module {module}"
    executable = Path(sysconfig.get_path("scripts")) / script
    assert executable.exists(), f"{script} is not installed; run scripts/setup.sh"
    result = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage:" in result.stdout and script in result.stdout


@pytest.mark.skipif(not (Path(sysconfig.get_path("scripts")) / "colcon").exists(), reason="colcon not installed")
def test_documented_colcon_build_finds_and_builds_both_packages(tmp_path):
    """The robot path of the README: the nested interface package must be named in --base-paths."""
    source = tmp_path / "src" / "exlow_pose"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    colcon = str(Path(sysconfig.get_path("scripts")) / "colcon")
    env = dict(os.environ, CMAKE_PREFIX_PATH=sys.prefix)

    plain = subprocess.run([colcon, "list", "--names-only"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert plain == ["exlow_pose_ros"], "colcon now descends into package folders: simplify the README"

    base_paths = ["--base-paths", "src", "src/exlow_pose/exlow_pose_msgs"]
    listed = subprocess.run([colcon, "list", *base_paths], cwd=tmp_path, env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "exlow_pose_msgs\tsrc/exlow_pose/exlow_pose_msgs\t(ros.ament_cmake)" in listed
    assert "exlow_pose_ros\tsrc/exlow_pose\t(ros.ament_python)" in listed

    build = subprocess.run(
        [colcon, "build", *base_paths, "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = tmp_path / "install"
    # `ros2 run exlow_pose_ros <script>` looks in lib/<package>; ament finds packages by marker.
    for script in console_scripts_in_setup_py():
        assert (install / "exlow_pose_ros" / "lib" / "exlow_pose_ros" / script).exists()
    assert (install / "exlow_pose_ros" / "share/ament_index/resource_index/packages/exlow_pose_ros").exists()
    assert (install / "exlow_pose_msgs" / "share/ament_index/resource_index/packages/exlow_pose_msgs").exists()
    # The colcon-built messages import and serialise from the install tree.
    site = next((install / "exlow_pose_msgs" / "lib").glob("python3*/site-packages"))
    probe = subprocess.run(
        [sys.executable, "-c",
         "import exlow_pose_msgs.msg as m, rclpy.serialization as s; "
         "a = m.Skeleton2DArray(skeletons=[m.Skeleton2D(track_id=7)]); "
         "b = s.deserialize_message(s.serialize_message(a), m.Skeleton2DArray); "
         f"assert b == a and m.__file__.startswith({str(site)!r}); print('ok')"],
        env=dict(env, PYTHONPATH=str(site),
                 LD_LIBRARY_PATH=f"{install / 'exlow_pose_msgs' / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}"),
        capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "ok", probe.stdout + probe.stderr
