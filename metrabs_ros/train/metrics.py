"""3D pose metrics (inputs in metres: pred, gt (..., J, 3); results in metres or fractions) and
box average precision for detectors.

- MPJPE: mean per-joint position error after aligning the poses' roots (or means);
- absolute MPJPE: without alignment (camera frame);
- PA-MPJPE: after Procrustes alignment of each predicted pose to its truth (rotation, translation
  and scale), i.e. the error of the pose's shape alone;
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


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(..., J, 3) `pred` moved by the similarity transform (rotation, translation, scale) that
    brings each pose closest to `gt` in the least-squares sense (Umeyama, no reflections)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} differs from ground truth {gt.shape}')
    pred_mean, gt_mean = pred.mean(axis=-2, keepdims=True), gt.mean(axis=-2, keepdims=True)
    p, g = pred - pred_mean, gt - gt_mean
    u, s, vt = np.linalg.svd(np.swapaxes(p, -1, -2) @ g)  # sum_j p_j g_j^T = U S V^T
    sign = np.sign(np.linalg.det(u @ vt))
    s[..., -1] *= sign
    vt[..., -1, :] *= sign[..., None]
    rotation_t = u @ vt  # p @ R^T with R = V U^T
    scale = s.sum(-1) / np.maximum((p ** 2).sum((-2, -1)), 1e-12)
    return scale[..., None, None] * p @ rotation_t + gt_mean


def procrustes_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(..., J) Euclidean joint errors in metres after Procrustes alignment."""
    return np.linalg.norm(procrustes_align(pred, gt) - np.asarray(gt, np.float64), axis=-1)


def pa_mpjpe(pred, gt) -> float:
    return float(procrustes_errors(pred, gt).mean())


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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) intersection over union of x, y, w, h boxes a (A, 4) and b (B, 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    union = np.prod(a[:, None, 2:], -1) + np.prod(b[None, :, 2:], -1) - intersection
    return intersection / np.maximum(union, 1e-12)


def average_precision(detections, ground_truths, iou_threshold: float = 0.5) -> float:
    """Box AP (area under the interpolated precision-recall curve, all points) over images.

    detections: per image (D, 5) [x, y, w, h, score]; ground_truths: per image (G, 4).
    Each true box matches at most one detection, greedily by score."""
    scores, hits, n_true = matched_detections(detections, ground_truths, iou_threshold)
    if n_true == 0:
        raise ValueError('no ground-truth boxes')
    order = np.argsort(-scores, kind='stable')
    true_positives = np.cumsum(hits[order].astype(float))
    recall = np.concatenate([[0], true_positives / n_true])
    precision = np.concatenate([[1], true_positives / np.arange(1, len(order) + 1)])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def matched_detections(detections, ground_truths, iou_threshold: float = 0.5):
    """(scores (D,), hit (D,) bool, number of true boxes) over all images: each true box is
    matched by at most one detection, greedily by score, at IoU >= iou_threshold."""
    scores, hits, n_true = [], [], 0
    for found, truth in zip(detections, ground_truths):
        found = np.asarray(found, np.float64).reshape(-1, 5)
        found = found[np.argsort(-found[:, 4], kind='stable')]
        truth = np.asarray(truth, np.float64).reshape(-1, 4)
        n_true += len(truth)
        iou = box_iou(found[:, :4], truth)
        taken = np.zeros(len(truth), bool)
        for i in range(len(found)):
            candidates = np.where(~taken & (iou[i] >= iou_threshold))[0] if len(truth) else []
            best = candidates[np.argmax(iou[i, candidates])] if len(candidates) else None
            if best is not None:
                taken[best] = True
            scores.append(found[i, 4])
            hits.append(best is not None)
    return np.asarray(scores, np.float64), np.asarray(hits, bool), n_true
