"""Synthetic ground truth: human-like bodies moved by pybullet's humanoid motion clips, ray-cast."""
