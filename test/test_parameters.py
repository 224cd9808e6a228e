"""Node parameters: the params files in config/ as rcl itself reads them, unknown names refused, ranges and
choices enforced, and run-time changes only where the schema allows them (in-process rclpy nodes)."""

from __future__ import annotations

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from exlow_pose_ros.nodes.parameters import NODE_NAMES, declare, load_schema, params_file_text

from conftest import REPO


def ros_node(name: str, arguments: list[str], namespace: str = "/robot1/perception"):
    """A real rclpy node whose command line holds `arguments` (after --ros-args), in its own context."""
    context = Context()
    rclpy.init(args=["test", "--ros-args", *arguments], context=context)
    return Node(name, namespace=namespace, context=context), context


@pytest.fixture
def make_node():
    made = []

    def make(name: str, arguments: list[str]) -> Node:
        node, context = ros_node(name, arguments)
        made.append((node, context))
        return node

    yield make
    for node, context in made:
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("schema", list(NODE_NAMES))
def test_each_params_file_is_what_rcl_reads_as_every_default(make_node, schema):
    path = REPO / "config" / f"{schema}.yaml"
    assert path.read_text() == params_file_text(schema), \
        f"{path} is out of date: run `python -m exlow_pose_ros.nodes.parameters`"
    node = make_node(NODE_NAMES[schema], ["--params-file", str(path)])
    overrides = {name: parameter.value for name, parameter in node._parameter_overrides.items()}
    specs = load_schema(schema)
    written = {name: spec.default for name, spec in specs.items() if spec.default != []}  # [] has no rcl type
    assert overrides == written
    values = declare(node, schema)
    assert values == {name: spec.default for name, spec in specs.items()}


def test_a_params_file_under_another_namespace_and_overrides_apply(make_node, tmp_path):
    document = yaml.safe_load((REPO / "config" / "pose_node.yaml").read_text())
    section = document["/**/exlow_pose_pose"]["ros__parameters"]
    section.update(output_mode="latest", marker_depth=2.5, max_tracks=7)
    # One file for the whole pipeline: the tracker's section must not reach the pose node.
    document.update(yaml.safe_load((REPO / "config" / "tracker_node.yaml").read_text()))
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document))
    node = make_node("exlow_pose_pose", ["--params-file", str(path), "-p", "max_tracks:=9"])
    values = declare(node, "pose_node")
    assert (values["output_mode"], values["marker_depth"], values["max_tracks"]) == ("latest", 2.5, 9)


@pytest.mark.parametrize("arguments,words", [
    (["-p", "modle_path:=x.onnx"], ("unknown parameter 'modle_path'", "did you mean 'model_path'", "--help")),
    (["-p", "max_missing_frames:=15"], ("unknown parameter 'max_missing_frames'", "removed", "delete it")),
    (["-p", "output_mode:=middle"], ("output_mode", "middle", "centre")),
    (["-p", "jpeg_quality:=500"], ("jpeg_quality", "500")),
    (["-p", "marker_depth:=2"], ("marker_depth", "decimal point")),
])
def test_bad_parameters_stop_the_node_with_one_line(make_node, arguments, words):
    node = make_node("exlow_pose_pose", arguments)
    with pytest.raises(ValueError) as caught:
        declare(node, "pose_node")
    text = str(caught.value)
    assert "\n" not in text and all(word in text for word in words), text


def test_ros_parameters_every_node_has_are_not_unknown(make_node):
    node = make_node("exlow_pose_pose", ["-p", "use_sim_time:=true"])
    assert declare(node, "pose_node")["output_mode"] == "centre"


def test_dynamic_parameters_change_at_run_time_and_the_rest_are_read_only(make_node):
    node = make_node("exlow_pose_pose", [])
    changes: list[list[str]] = []
    values = declare(node, "pose_node", on_change=changes.append)
    assert node.set_parameters([Parameter("output_mode", value="latest")])[0].successful
    assert values["output_mode"] == "latest" and changes == [["output_mode"]]
    refused = {
        "read-only": Parameter("model_path", value="other.onnx"),
        "outside the choices": Parameter("keypoint_source", value="teacher"),
        "out of range": Parameter("jpeg_quality", value=0),
        "wrong type": Parameter("max_tracks", value="many"),
    }
    for why, parameter in refused.items():
        result = node.set_parameters([parameter])[0]
        assert not result.successful, why
        assert values[parameter.name] == load_schema("pose_node")[parameter.name].default, why
    assert changes == [["output_mode"]]
    descriptor = node.describe_parameter("marker_depth")
    assert descriptor.floating_point_range[0].to_value == load_schema("pose_node")["marker_depth"].range[1]
    assert node.describe_parameter("model_path").read_only
