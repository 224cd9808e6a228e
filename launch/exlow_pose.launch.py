"""The exlow_pose pipeline on a camera: tracker -> pose, with RViz optional.

    ros2 launch exlow_pose_ros exlow_pose.launch.py image:=/camera/color/image_raw backend:=tensorrt
    ros2 launch exlow_pose_ros exlow_pose.launch.py params_file:=my_pipeline.yaml use_sim_time:=true rviz:=true

`ros2 launch exlow_pose_ros exlow_pose.launch.py --show-args` lists the arguments. What each node gets from
them (parameters, remappings, log level, the RViz config) is decided in exlow_pose_ros/nodes/launch_settings.py;
every parameter's default and description is in config/<node>.yaml, and `ros2 run exlow_pose_ros <node>
--help` lists them.
"""

import tempfile
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from exlow_pose_ros.nodes.launch_settings import (
    LAUNCH_ARGUMENTS,
    node_parameters,
    remappings,
    ros_arguments,
    rviz_config,
)


def pipeline(context, *_, **__):
    arguments = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    common = {"namespace": arguments["namespace"], "output": "screen", "remappings": remappings(arguments),
              "arguments": ros_arguments(arguments)}
    tracker = Node(package="exlow_pose_ros", executable="exlow_pose_tracker", name="exlow_pose_tracker",
                   parameters=node_parameters("tracker_node", arguments), **common)
    pose = Node(package="exlow_pose_ros", executable="exlow_pose_pose", name="exlow_pose_pose",
                parameters=node_parameters("pose_node", arguments), **common)
    template = Path(get_package_share_directory("exlow_pose_ros")) / "config" / "exlow_pose.rviz.in"
    with tempfile.NamedTemporaryFile("w", prefix="exlow_pose_", suffix=".rviz", delete=False) as config:
        config.write(rviz_config(template.read_text(), arguments))
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                condition=IfCondition(arguments["rviz"]), arguments=["-d", config.name])
    return [tracker, pose, rviz]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=pipeline)])
