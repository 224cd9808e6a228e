"""Human motion for training: CMU mocap (3D, forward kinematics), Penn Action (2D), virtual cameras."""
