"""Synthetic ground truth: pybullet's humanoid posed by motion clips, rendered by TinyRenderer."""
