"""Node parameters from one schema YAML per node (exlow_pose_ros/nodes/parameter_schemas/<node>.yaml): type, default,
description, range and whether it may change at run time. Nodes declare exactly these, with descriptors ROS
tools show and enforce (`ros2 param describe`, ranges, read-only), reject parameters they do not have (a typo
must not be ignored silently), and `--help` prints them.

Schema format (one entry per parameter):

    model_path:
      type: string            # string | int | double | bool | string_array
      default: ""
      description: what it is, with units
      choices: [a, b]         # optional
      range: [0, 100]         # optional, inclusive
      dynamic: true           # optional: `ros2 param set` may change it while the node runs

The ROS params files config/<node>.yaml (`--params-file`, the launch file's `params_file`) hold every default;
`python -m exlow_pose_ros.nodes.parameters` rewrites them from the schemas, and a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "exlow_pose_ros"
TYPES = {"string": str, "int": int, "double": float, "bool": bool, "string_array": list}
# The ROS node name of each schema (params files address nodes by name).
NODE_NAMES = {"tracker_node": "exlow_pose_tracker", "pose_node": "exlow_pose_pose",
              "video_source_node": "video_source_node", "bag_recorder_node": "bag_recorder_node"}
# Parameters every rclpy node may be given besides its own.
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_PARAMETER_PREFIXES = ("qos_overrides.",)
# Parameters of earlier releases, with what replaces them, so an old params file is told what to change.
REMOVED_PARAMETERS = {
    "max_missing_frames": "removed: a track's run ends at the first frame it misses (as training windows do), so "
                          "it never had an effect; delete it",
}


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    default: Any
    description: str
    choices: tuple | None = None
    range: tuple[float, float] | None = None
    dynamic: bool = False

    def check(self, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name}={value!r} must be one of {list(self.choices)}")
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise ValueError(f"parameter {self.name}={value!r} must lie in [{self.range[0]}, {self.range[1]}]")


def schema_text(node_name: str) -> str:
    """The schema YAML of a node, from the installed package (package data, wherever it is installed)."""
    resource = resources.files(__package__) / "parameter_schemas" / f"{node_name}.yaml"
    if not resource.is_file():
        raise ValueError(f"no parameter schema for node {node_name!r}; known: {', '.join(NODE_NAMES)}")
    return resource.read_text()


def load_schema(node_name: str) -> dict[str, ParameterSpec]:
    entries = yaml.safe_load(schema_text(node_name)) or {}
    specs = {}
    for name, entry in entries.items():
        kind = entry["type"]
        if kind not in TYPES:
            raise ValueError(f"schema {node_name}: parameter {name} has unknown type {kind!r}")
        default = float(entry["default"]) if kind == "double" else entry["default"]
        specs[name] = ParameterSpec(name, kind, default, entry["description"].strip(),
                                    tuple(entry["choices"]) if "choices" in entry else None,
                                    tuple(entry["range"]) if "range" in entry else None,
                                    bool(entry.get("dynamic", False)))
        specs[name].check(specs[name].default)
    return specs


def descriptor(spec: ParameterSpec):
    """The rcl_interfaces ParameterDescriptor of a spec: description, range (rclpy enforces it), choices as
    the constraint text, read-only unless the schema marks it dynamic."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    result = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic,
                                 dynamic_typing=spec.type == "string")
    if spec.choices is not None:
        result.additional_constraints = f"one of {list(spec.choices)}"
    if spec.range is not None and spec.type == "int":
        result.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=0)]
    elif spec.range is not None and spec.type == "double":
        result.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                          to_value=float(spec.range[1]), step=0.0)]
    return result


def unknown_parameters(given: list[str], specs: dict[str, ParameterSpec]) -> list[str]:
    """The given names that are neither the node's nor every ROS node's."""
    return [name for name in given if name not in specs and name not in ROS_PARAMETERS
            and not name.startswith(ROS_PARAMETER_PREFIXES)]


def unknown_parameter_error(node_name: str, unknown: list[str], specs: dict[str, ParameterSpec]) -> str:
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(specs), n=1)
        hint = REMOVED_PARAMETERS.get(name) or (f"did you mean {close[0]!r}?" if close else "")
        hints.append(f"{name!r}" + (f" ({hint})" if hint else ""))
    return (f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(hints)} for {NODE_NAMES[node_name]}; "
            f"`{NODE_NAMES[node_name]} --help` lists them")


def declare(node, node_name: str, on_change: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Declare every schema parameter on `node` and return the values in effect (overrides applied). The dict
    stays current: a `ros2 param set` of a dynamic parameter updates it, then calls `on_change(names)`.

    A wrongly typed override (`max_duration:=10` for a double), a value out of range and an unknown name each
    become a ValueError of one line. String parameters take any type (`rate:=30` arrives as an integer) and
    are read as text.
    """
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.exceptions import ParameterException
    from rclpy.parameter import Parameter

    specs = load_schema(node_name)
    unknown = unknown_parameters(list(node._parameter_overrides), specs)  # rclpy keeps no public list of them
    if unknown:
        raise ValueError(unknown_parameter_error(node_name, unknown, specs))
    values: dict[str, Any] = {}
    for spec in specs.values():
        default = spec.default if spec.type != "string_array" or spec.default else Parameter.Type.STRING_ARRAY
        try:
            value = node.declare_parameter(spec.name, default, descriptor(spec)).value
        except ParameterException as error:
            hint = " (doubles need a decimal point, e.g. 10.0)" if spec.type == "double" else ""
            raise ValueError(f"parameter {spec.name}: {error}{hint}") from None
        if spec.type == "string" and not isinstance(value, str):
            value = str(value)
        if spec.type == "string_array" and value is None:
            value = []  # declared by type only: no entries given
        spec.check(value)
        values[spec.name] = value

    def validate(parameters: list[Parameter]) -> SetParametersResult:
        # rclpy has already refused read-only parameters, wrong types and values out of range.
        for parameter in parameters:
            spec = specs.get(parameter.name)
            if spec is None:
                continue
            try:
                spec.check(parameter.value)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def apply(parameters: list[Parameter]) -> None:
        changed = [p.name for p in parameters if p.name in specs]
        for name in changed:
            values[name] = next(p.value for p in parameters if p.name == name)
        if changed and on_change is not None:
            on_change(changed)

    node.add_on_set_parameters_callback(validate)
    node.add_post_set_parameters_callback(apply)
    return values


def help_text(node_name: str) -> str:
    lines = [f"Parameters (set with --ros-args -p NAME:=VALUE or --params-file FILE; defaults in "
             f"config/{node_name}.yaml; * = may be changed at run time with `ros2 param set`):"]
    for spec in load_schema(node_name).values():
        extra = f" one of {list(spec.choices)}" if spec.choices else (f" in {list(spec.range)}" if spec.range else "")
        lines.append(f"  {spec.name} ({spec.type}, default {spec.default!r}{extra}){' *' if spec.dynamic else ''}")
        lines.append(f"      {spec.description}")
    return "\n".join(lines)


def params_file_text(node_name: str) -> str:
    """A ROS 2 params file with every parameter of the node at its default, each described in a comment.
    `/**/name` matches the node in any namespace, so one file serves every launch."""
    lines = [f"# ROS 2 parameters of {NODE_NAMES[node_name]} at their defaults: --ros-args --params-file this file.",
             f"# Written from exlow_pose_ros/nodes/parameter_schemas/{node_name}.yaml by",
             "# `python -m exlow_pose_ros.nodes.parameters`; copy it and change what you need (unknown names are",
             "# refused at start-up).",
             f"/**/{NODE_NAMES[node_name]}:", "  ros__parameters:"]
    for spec in load_schema(node_name).values():
        words, line = spec.description.split(), "    #"
        for word in words:  # wrap the description at 110 characters
            if len(line) + len(word) + 1 > 110:
                lines.append(line)
                line = "    #"
            line += f" {word}"
        lines.append(line)
        if isinstance(spec.default, list) and spec.default:
            lines.append(f"    {spec.name}:")
            lines += [f"      - {yaml.safe_dump(item, width=1000).strip().removesuffix('...').strip()}"
                      for item in spec.default]
            continue
        value = yaml.safe_dump(spec.default, default_flow_style=True).strip().removesuffix("...").strip()
        # rcl reads `[]` as a value without a type: an empty list stays a comment, to be filled in.
        lines.append(f"    {'# ' if value == '[]' else ''}{spec.name}: {value}")
    return "\n".join(lines) + "\n"


def write_params_files(folder: Path) -> list[Path]:
    written = []
    for node_name in NODE_NAMES:
        path = folder / f"{node_name}.yaml"
        path.write_text(params_file_text(node_name))
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("config")  # run from the repository root
    for written_path in write_params_files(target):
        print(f"wrote {written_path}")
