"""Synthetic ex-low renders with exact ground truth, driven by the motion corpus."""
