"""Test helpers: exact ("oracle") heatmap logits for known coordinates, and look-at crop cameras."""
from __future__ import annotations

import numpy as np
import torch

from metrabs_ros.model.config import ModelConfig
from metrabs_ros.model.heads import metric_to_heatmap, pixels_to_heatmap

LOG_FLOOR = 1e-30


def axis_log_weights(coords: torch.Tensor, n: int) -> torch.Tensor:
    """(..., ) unit coords -> (..., n) log weights whose soft-argmax mean is exactly the coord."""
    position = coords.clamp(0, 1) * (n - 1)
    lower = position.floor().clamp(max=n - 2)
    frac = position - lower
    weights = torch.zeros(coords.shape + (n,), dtype=torch.float64)
    weights.scatter_(-1, lower.long()[..., None], (1 - frac)[..., None])
    weights.scatter_add_(-1, lower.long()[..., None] + 1, frac[..., None])
    return (weights + LOG_FLOOR).log()


def oracle_logits(coords2d_px: torch.Tensor, coords3d_m: torch.Tensor, config: ModelConfig):
    """Logits (N, J, h, w) and (N, D, J, h, w) decoding to the given 2D pixels / 3D metres.

    2D coordinates outside the heatmap range are clamped (as a real 2D head must).
    """
    n_cells = config.crop_side // config.stride
    c2 = pixels_to_heatmap(coords2d_px.double(), config)
    c3 = metric_to_heatmap(coords3d_m.double(), config)
    if (c3 < 0).any() or (c3 > 1).any():
        raise ValueError('3D coordinates must lie inside the metric box')
    lx, ly = axis_log_weights(c2[..., 0], n_cells), axis_log_weights(c2[..., 1], n_cells)
    logits2d = ly[..., :, None] + lx[..., None, :]
    lx3, ly3 = axis_log_weights(c3[..., 0], n_cells), axis_log_weights(c3[..., 1], n_cells)
    lz3 = axis_log_weights(c3[..., 2], config.depth)
    logits3d = lz3[..., :, None, None] + ly3[..., None, :, None] + lx3[..., None, None, :]
    return logits2d, logits3d.movedim(-3, 1)  # (N, J, D, h, w) -> (N, D, J, h, w)


def look_at_rotation(target: np.ndarray, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """Rotation (3, 3) from a camera frame to a virtual camera whose z axis points at target."""
    z = target / np.linalg.norm(target)
    x = np.cross(z, np.asarray(up))  # y down, so x = z cross (-y)... points right
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def crop_intrinsics(focal: float, side: int) -> np.ndarray:
    return np.array([[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1.0]])


def example_pose(n_joints: int, centre=(0.3, 0.2, 4.0), seed: int = 0) -> np.ndarray:
    """A deterministic (J, 3) point set of human extent (about 1.7 m tall) around centre."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform([-0.4, -0.85, -0.3], [0.4, 0.85, 0.3], size=(n_joints, 3))
    return pose + np.asarray(centre)
