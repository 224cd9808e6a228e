"""exlow_pose_ros: human 2D pose of tiny people from 16x16 crop histories, for ROS 2.

Pure-Python modules (image conversion, crops, buffers, inference backends) import no ROS node
machinery and can be used and tested without a running ROS graph; `exlow_pose_ros.nodes` holds
the thin ROS 2 nodes over them.
"""
