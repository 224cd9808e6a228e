"""The exlow_pose pipeline on a camera: tracker -> pose, with RViz optional.

    ros2 launch exlow_pose_ros exlow_pose.launch.py image:=/camera/color/image_raw backend:=tensorrt

Every parameter's default and description is in config/<node>.yaml (the node declares exactly those);
the arguments below override the common ones. `ros2 run exlow_pose_ros <node> --help` lists the rest.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "image": ("/camera/image_raw", "sensor_msgs/Image topic of the camera"),
    "namespace": ("exlow_pose", "namespace of the pipeline's nodes and topics"),
    "detector_model": ("", "detector weights; empty: yolo11n-pose.pt from $EXLOW_POSE_ASSETS/models"),
    "image_size": ("1280", "detector input size (small people need large sizes)"),
    "device": ("cpu", "detector torch device (cpu, cuda:0, ...)"),
    "model_path": ("", "pose model (.onnx); empty: the shipped reference model"),
    "backend": ("auto", "pose backend: auto, onnxruntime, tensorrt or torch"),
    "output_mode": ("centre", "centre (paper, 2 frames of delay) or latest (no delay)"),
    "rviz": ("false", "start RViz with config/exlow_pose.rviz"),
}


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    tracker = Node(
        package="exlow_pose_ros", executable="exlow_pose_tracker", name="exlow_pose_tracker",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[{
            "detector_model": LaunchConfiguration("detector_model"),
            "image_size": ParameterValue(LaunchConfiguration("image_size"), value_type=int),
            "device": LaunchConfiguration("device"),
        }],
        remappings=[("image", LaunchConfiguration("image"))],
    )
    pose = Node(
        package="exlow_pose_ros", executable="exlow_pose_pose", name="exlow_pose_pose",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[{
            "model_path": LaunchConfiguration("model_path"),
            "backend": LaunchConfiguration("backend"),
            "output_mode": LaunchConfiguration("output_mode"),
        }],
        remappings=[("image", LaunchConfiguration("image"))],
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        condition=IfCondition(LaunchConfiguration("rviz")),
        arguments=["-d", PathJoinSubstitution([FindPackageShare("exlow_pose_ros"), "config", "exlow_pose.rviz"])],
    )
    return LaunchDescription([*declared, tracker, pose, rviz])
