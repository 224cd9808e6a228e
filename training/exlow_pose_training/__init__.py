"""exlow_pose_training: datasets, models, training, evaluation and export for exlow_pose (offline)."""
