"""Thin ROS 2 nodes: each translates messages and parameters to and from one pure-Python module."""
