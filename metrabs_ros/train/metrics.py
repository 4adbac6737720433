"""3D pose metrics. Inputs in metres: pred, gt (..., J, 3); results in metres or fractions.

- MPJPE: mean per-joint position error after aligning the poses' roots (or means);
- absolute MPJPE: without alignment (camera frame);
- PCK: fraction of joints within a threshold (root-aligned), 0.15 m by default;
- AUC: mean PCK over thresholds 0 to 0.15 m in 31 steps.
"""
from __future__ import annotations

import numpy as np

PCK_THRESHOLD_M = 0.15
AUC_THRESHOLDS_M = np.linspace(0.0, 0.15, 31)


def align_roots(poses: np.ndarray, root: int | None) -> np.ndarray:
    """Subtract joint `root` (or the mean of all joints when None) from each pose."""
    reference = poses.mean(axis=-2, keepdims=True) if root is None else poses[..., root:root + 1, :]
    return poses - reference


def joint_errors(pred: np.ndarray, gt: np.ndarray, root: int | None = 0,
                 absolute: bool = False) -> np.ndarray:
    """(..., J) Euclidean joint errors in metres, root-aligned unless absolute."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} differs from ground truth {gt.shape}')
    if not absolute:
        pred, gt = align_roots(pred, root), align_roots(gt, root)
    return np.linalg.norm(pred - gt, axis=-1)


def mpjpe(pred, gt, root: int | None = 0) -> float:
    return float(joint_errors(pred, gt, root).mean())


def absolute_mpjpe(pred, gt) -> float:
    return float(joint_errors(pred, gt, absolute=True).mean())


def pck(pred, gt, threshold_m: float = PCK_THRESHOLD_M, root: int | None = 0) -> float:
    return float((joint_errors(pred, gt, root) <= threshold_m).mean())


def auc(pred, gt, root: int | None = 0) -> float:
    errors = joint_errors(pred, gt, root)
    return float(np.mean([(errors <= t).mean() for t in AUC_THRESHOLDS_M]))


def pck_curve(pred, gt, thresholds_m=AUC_THRESHOLDS_M, root: int | None = 0) -> np.ndarray:
    """PCK at each threshold (for plots)."""
    errors = joint_errors(pred, gt, root)
    return np.array([(errors <= t).mean() for t in thresholds_m])
