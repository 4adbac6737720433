"""Implausible-pose suppression and 3D pose non-maximum suppression (the official rules).

- bone lengths: implausible if any bone is < 0.1x or > 3x its typical length and off by > 0.3 m;
- augmentation consistency: after scale alignment, more than J // 4 joints must vary by < 0.2 m
  across the test-time augmentations;
- box consistency: the 2D pose's bounding box must cover more than half of the detection box
  (a fraction calibrated per model for joint sets that stop short of the head top, hands and
  feet: ModelConfig.box_coverage);
- pose NMS: scale-aligned joint distances d give a similarity mean(relu(1 - d / 0.3 m)) over the
  J // 4 largest distances; poses more similar than 0.4 to a higher-scoring one are dropped.
Units: metres and pixels.
"""
from __future__ import annotations

import numpy as np

from metrabs_ros.skeletons import Skeleton

BONE_RATIO_RANGE = (0.1, 3.0)
BONE_ABS_DIFF_M = 0.3
AUG_STDEV_M = 0.2
BOX_COVERAGE = 0.5
NMS_DISTANCE_SCALE_M = 0.3
NMS_SIMILARITY_THRESHOLD = 0.4

# Joint positions of a standing adult (metres, y down, x to the person's left), used only for
# typical bone lengths. Keys are the official joint names.
CANONICAL_JOINTS_M = {
    'pelv': (0.0, 0.0, 0.0), 'lhip': (0.09, 0.02, 0.0), 'rhip': (-0.09, 0.02, 0.0),
    'lkne': (0.10, 0.42, 0.0), 'rkne': (-0.10, 0.42, 0.0),
    'lank': (0.10, 0.83, -0.02), 'rank': (-0.10, 0.83, -0.02),
    'ltoe': (0.11, 0.88, 0.13), 'rtoe': (-0.11, 0.88, 0.13),
    'spi1': (0.0, -0.10, -0.01), 'tors': (0.0, -0.22, 0.0), 'spi2': (0.0, -0.24, 0.0),
    'spi3': (0.0, -0.30, 0.0), 'thor': (0.0, -0.25, 0.0), 'neck': (0.0, -0.50, -0.01),
    'lcla': (0.07, -0.44, 0.0), 'rcla': (-0.07, -0.44, 0.0),
    'lsho': (0.18, -0.46, 0.0), 'rsho': (-0.18, -0.46, 0.0),
    'lelb': (0.20, -0.18, 0.0), 'relb': (-0.20, -0.18, 0.0),
    'lwri': (0.21, 0.07, 0.02), 'rwri': (-0.21, 0.07, 0.02),
    'lhan': (0.21, 0.15, 0.03), 'rhan': (-0.21, 0.15, 0.03),
    'head': (0.0, -0.58, 0.03), 'htop': (0.0, -0.76, 0.0), 'nose': (0.0, -0.62, 0.11),
    'leye': (0.03, -0.66, 0.09), 'reye': (-0.03, -0.66, 0.09),
    'lear': (0.07, -0.64, 0.0), 'rear': (-0.07, -0.64, 0.0),
}


def typical_bone_lengths(skeleton: Skeleton) -> np.ndarray:
    """(E,) typical bone lengths in metres; NaN for bones whose joints are not in the table."""
    lengths = []
    for a, b in skeleton.edges:
        pa = CANONICAL_JOINTS_M.get(skeleton.joint_names[a])
        pb = CANONICAL_JOINTS_M.get(skeleton.joint_names[b])
        lengths.append(np.nan if pa is None or pb is None else np.linalg.norm(np.subtract(pa, pb)))
    return np.array(lengths)


def plausible_bone_lengths(poses3d: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """(P, J, 3) poses -> (P,) True where no bone length is implausible."""
    typical = typical_bone_lengths(skeleton)
    known = np.isfinite(typical)
    edges = skeleton.edges[known]
    lengths = np.linalg.norm(poses3d[:, edges[:, 0]] - poses3d[:, edges[:, 1]], axis=-1)
    ratio = lengths / typical[known]
    wrong_ratio = (ratio < BONE_RATIO_RANGE[0]) | (ratio > BONE_RATIO_RANGE[1])
    far_off = np.abs(lengths - typical[known]) > BONE_ABS_DIFF_M
    return ~np.any(wrong_ratio & far_off, axis=-1)


def consistent_augmentations(poses3d_aug: np.ndarray) -> np.ndarray:
    """(P, A, J, 3) per-augmentation poses -> (P,) True where the augmentations agree."""
    n_joints = poses3d_aug.shape[-2]
    stdev = joint_spread(scale_align(poses3d_aug))
    return np.count_nonzero(stdev < AUG_STDEV_M, axis=-1) > n_joints // 4


def joint_spread(poses3d_aug: np.ndarray) -> np.ndarray:
    """(..., A, J, 3) -> (..., J) standard deviation of each joint's position across A (metres)."""
    return np.sqrt(np.var(poses3d_aug, axis=-3).sum(-1))


def scale_align(poses: np.ndarray) -> np.ndarray:
    """(..., A, J, 3): rescale each pose to the mean RMS scale of the A poses."""
    square_scales = np.mean(np.square(poses), axis=(-2, -1), keepdims=True)
    mean_square_scale = np.mean(square_scales, axis=-3, keepdims=True)
    return poses * np.sqrt(mean_square_scale / square_scales)


def box_coverage(poses2d: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """(P, J, 2) pixels, (P, 4+) x, y, w, h boxes -> (P,) fraction of each box that the
    bounding box of its 2D pose covers."""
    start = np.maximum(boxes_xywh[:, :2], poses2d.min(axis=1))
    end = np.minimum(boxes_xywh[:, :2] + boxes_xywh[:, 2:4], poses2d.max(axis=1))
    intersection = np.prod(np.clip(end - start, 0, None), axis=-1)
    return intersection / np.maximum(np.prod(boxes_xywh[:, 2:4], axis=-1), 1e-12)


def consistent_with_boxes(poses2d: np.ndarray, boxes_xywh: np.ndarray,
                          coverage: float = BOX_COVERAGE) -> np.ndarray:
    """(P, J, 2) pixels, (P, 4+) boxes -> (P,) True where the pose box covers more than
    `coverage` of the box."""
    return box_coverage(poses2d, boxes_xywh) > coverage


def pose_similarity(poses3d: np.ndarray) -> np.ndarray:
    """(P, J, 3) poses -> (P, P) pairwise similarity in [0, 1] (1: identical)."""
    square_scales = np.mean(np.square(poses3d), axis=(-2, -1))
    mean_square = (square_scales[:, None] + square_scales[None, :]) / 2
    factor1 = np.sqrt(mean_square / square_scales[:, None])[..., None, None]
    factor2 = np.sqrt(mean_square / square_scales[None, :])[..., None, None]
    distances = np.linalg.norm(factor1 * poses3d[:, None] - factor2 * poses3d[None, :], axis=-1)
    k = max(1, poses3d.shape[-2] // 4)
    largest = -np.sort(-distances, axis=-1)[..., :k]
    return np.mean(np.maximum(0, 1 - largest / NMS_DISTANCE_SCALE_M), axis=-1)


def pose_nms(poses3d: np.ndarray, scores: np.ndarray,
             threshold: float = NMS_SIMILARITY_THRESHOLD) -> np.ndarray:
    """Indices of the poses kept by greedy similarity NMS, highest score first."""
    similarity = pose_similarity(poses3d) if len(poses3d) else np.zeros((0, 0))
    kept = []
    for i in np.argsort(-np.asarray(scores), kind='stable'):
        if all(similarity[i, j] <= threshold for j in kept):
            kept.append(i)
    return np.array(kept, dtype=np.int64)


def plausible_pose_indices(poses3d: np.ndarray, poses3d_aug: np.ndarray, poses2d: np.ndarray,
                           boxes: np.ndarray, skeleton: Skeleton, rules: bool = True,
                           coverage: float = BOX_COVERAGE) -> np.ndarray:
    """All rules (unless rules is False), then NMS: indices into the P poses that survive, by
    descending score.

    poses3d: (P, J, 3) averaged; poses3d_aug: (P, A, J, 3); poses2d: (P, J, 2); boxes: (P, 5).
    rules: apply the plausibility rules; False for models they do not fit (duplicates are
    still removed). coverage: the box-consistency threshold.
    """
    valid = np.ones(len(poses3d), bool)
    if rules:
        valid = (plausible_bone_lengths(poses3d, skeleton) &
                 consistent_augmentations(poses3d_aug) & consistent_with_boxes(poses2d, boxes, coverage))
    candidates = np.flatnonzero(valid)
    return candidates[pose_nms(poses3d[candidates], boxes[candidates, 4])]
