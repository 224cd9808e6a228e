"""Node parameters from one schema YAML per node (config/<node>.yaml): type, default, description and
validation of each parameter. Nodes declare exactly these, with descriptions ROS tools can show
(`ros2 param describe`), and `--help` prints them.

Schema format (one entry per parameter):

    model_path:
      type: string            # string | int | double | bool | string_array
      default: ""
      description: what it is, with units
      choices: [a, b]         # optional
      range: [0, 100]         # optional, inclusive
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "exlow_pose_ros"
REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
TYPES = {"string": str, "int": int, "double": float, "bool": bool, "string_array": list}


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    default: Any
    description: str
    choices: tuple | None = None
    range: tuple[float, float] | None = None

    def check(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name}={value!r} must be one of {list(self.choices)}")
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise ValueError(f"parameter {self.name}={value!r} must lie in [{self.range[0]}, {self.range[1]}]")


def schema_path(node_name: str) -> Path:
    """The installed schema (share/exlow_pose_ros/config) or, in a source checkout, config/ of the repo."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / "config" / f"{node_name}.yaml"
        if installed.is_file():
            return installed
    except (ImportError, PackageNotFoundError):
        pass
    return REPO_CONFIG / f"{node_name}.yaml"


def load_schema(node_name: str) -> dict[str, ParameterSpec]:
    path = schema_path(node_name)
    entries = yaml.safe_load(path.read_text()) or {}
    specs = {}
    for name, entry in entries.items():
        kind = entry["type"]
        if kind not in TYPES:
            raise ValueError(f"{path}: parameter {name} has unknown type {kind!r}")
        default = entry["default"]
        if kind == "double":
            default = float(default)
        specs[name] = ParameterSpec(name, kind, default, entry["description"].strip(),
                                    tuple(entry["choices"]) if "choices" in entry else None,
                                    tuple(entry["range"]) if "range" in entry else None)
        specs[name].check(specs[name].default)
    return specs


def declare(node, node_name: str) -> dict[str, Any]:
    """Declare every schema parameter on `node` and return the values in effect (overrides applied).

    A wrongly typed override (`max_duration:=10` for a double) becomes a ValueError of one line. String
    parameters take any type (`rate:=30` arrives as an integer) and are read as text.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterException
    from rclpy.parameter import Parameter

    values = {}
    for spec in load_schema(node_name).values():
        descriptor = ParameterDescriptor(description=spec.description, read_only=True,
                                         dynamic_typing=spec.type == "string")
        default = spec.default if spec.type != "string_array" or spec.default else Parameter.Type.STRING_ARRAY
        try:
            value = node.declare_parameter(spec.name, default, descriptor).value
        except ParameterException as error:
            hint = " (doubles need a decimal point, e.g. 10.0)" if spec.type == "double" else ""
            raise ValueError(f"parameter {spec.name}: {error}{hint}") from None
        if spec.type == "string" and not isinstance(value, str):
            value = str(value)
        spec.check(value)
        values[spec.name] = value
    return values


def help_text(node_name: str) -> str:
    lines = [f"Parameters (set with --ros-args -p NAME:=VALUE or a --params-file; schema {schema_path(node_name)}):"]
    for spec in load_schema(node_name).values():
        extra = f" one of {list(spec.choices)}" if spec.choices else (f" in {list(spec.range)}" if spec.range else "")
        lines.append(f"  {spec.name} ({spec.type}, default {spec.default!r}{extra})")
        lines.append(f"      {spec.description}")
    return "\n".join(lines)
