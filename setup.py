"""ament_python package exlow_pose_ros: the ROS 2 nodes and the pure-Python core they wrap."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "exlow_pose_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={f"{PACKAGE}.nodes": ["parameter_schemas/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz.in")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.md") + glob("models/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="exlow_pose maintainers",
    maintainer_email="maintainers@exlow-pose.invalid",
    description="Human 2D pose of tiny people from 16x16 crop histories (PTEN), for ROS 2.",
    license="AGPL-3.0-or-later",
    entry_points={
        "console_scripts": [
            "exlow_pose_demo = exlow_pose_ros.tools.demo:main",
            "exlow_pose_tracker = exlow_pose_ros.nodes.tracker_node:main",
            "exlow_pose_pose = exlow_pose_ros.nodes.pose_node:main",
            "exlow_pose_video_source = exlow_pose_ros.tools.video_source_node:main",
            "exlow_pose_recorder = exlow_pose_ros.tools.bag_recorder_node:main",
            "exlow_pose_video = exlow_pose_ros.tools.offline:main",
            "exlow_pose_evaluate_bag = exlow_pose_ros.tools.bag_evaluation:main",
            "exlow_pose_soak = exlow_pose_ros.tools.soak:main",
            "exlow_pose_benchmark = exlow_pose_ros.tools.pipeline_benchmark:main",
        ],
    },
)
