"""The pure core: crop convention, keypoints, windows, model contract, pose estimator, inference backends, the
detector/tracker wrapper and the resolver of shipped files. No rclpy, no ROS messages, no module-level torch."""
