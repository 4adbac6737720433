"""OpenCV lens distortion on normalized image coordinates, for numpy arrays and torch tensors.

Coefficients follow OpenCV / ``sensor_msgs/CameraInfo`` order:
``k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4]]]`` (plumb_bob = 5, rational_polynomial = 8,
with thin prism = 12). Shorter vectors are zero-padded to 12.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

N_COEFFS = 12
SUPPORTED_LENGTHS = (0, 4, 5, 8, 12)


def as_distortion_coeffs(coeffs) -> np.ndarray:
    """Validate OpenCV distortion coefficients and zero-pad them to 12 (float64)."""
    d = np.asarray([] if coeffs is None else coeffs, dtype=np.float64).reshape(-1)
    if d.size not in SUPPORTED_LENGTHS:
        raise ValueError(
            f'distortion must have one of {SUPPORTED_LENGTHS} coefficients '
            f'(k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4]]]), got {d.size}')
    if not np.all(np.isfinite(d)):
        raise ValueError(f'distortion coefficients must be finite, got {d.tolist()}')
    return np.concatenate([d, np.zeros(N_COEFFS - d.size)])


def distort(xy, coeffs):
    """Apply distortion to normalized coords xy (..., 2); coeffs (..., 12) broadcast against xy.

    Works on numpy arrays and torch tensors alike (only elementwise arithmetic).
    """
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 = (coeffs[..., i] for i in range(N_COEFFS))
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    radial = (1 + k1 * r2 + k2 * r4 + k3 * r6) / (1 + k4 * r2 + k5 * r4 + k6 * r6)
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) + s1 * r2 + s2 * r4
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y + s3 * r2 + s4 * r4
    return _stack_last(xd, yd, like=xy)


def undistort(xy_distorted: np.ndarray, coeffs: np.ndarray, max_iter: int = 50,
              tol: float = 1e-14) -> np.ndarray:
    """Invert `distort` by Newton's method (numpy, float64); non-converged points become NaN.

    xy_distorted: (..., 2) distorted normalized coords; coeffs: (12,).
    """
    target = np.asarray(xy_distorted, dtype=np.float64)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if not np.any(coeffs):
        return target.copy()
    shape = target.shape
    target = target.reshape(-1, 2)
    xy = target.copy()
    active = np.arange(len(xy))  # points still iterating: each stops once it has converged
    h = 1e-7
    dx, dy = np.array([h, 0.0]), np.array([0.0, h])
    for _ in range(max_iter):
        current = xy[active]
        residual = distort(current, coeffs) - target[active]
        moving = np.abs(residual).max(axis=-1) >= tol
        active, current, residual = active[moving], current[moving], residual[moving]
        if not len(active):
            break
        jac_x = (distort(current + dx, coeffs) - distort(current - dx, coeffs)) / (2 * h)
        jac_y = (distort(current + dy, coeffs) - distort(current - dy, coeffs)) / (2 * h)
        det = jac_x[:, 0] * jac_y[:, 1] - jac_y[:, 0] * jac_x[:, 1]
        step_x = (jac_y[:, 1] * residual[:, 0] - jac_y[:, 0] * residual[:, 1]) / det
        step_y = (jac_x[:, 0] * residual[:, 1] - jac_x[:, 1] * residual[:, 0]) / det
        xy[active] = current - np.stack([step_x, step_y], axis=-1)
    residual = np.abs(distort(xy, coeffs) - target).max(axis=-1)
    return np.where((residual < 1e-9)[..., np.newaxis], xy, np.nan).reshape(shape)


def fold_radius(coeffs) -> float:
    """The normalized radius where the radial distortion stops growing with the radius (inf if
    it grows up to radius 10). Beyond it the model folds back: distorted points there have
    further, unphysical preimages that `undistort` may converge to."""
    return _fold_radius(tuple(as_distortion_coeffs(coeffs).tolist()))


@lru_cache(maxsize=64)  # one scan per camera calibration, not per frame
def _fold_radius(coeffs: tuple[float, ...], max_radius: float = 10.0,
                 steps: int = 20000) -> float:
    coeffs = np.asarray(coeffs)
    r = np.linspace(0.0, max_radius, steps + 1)
    k1, k2, k3, k4, k5, k6 = coeffs[[0, 1, 4, 5, 6, 7]]
    r2 = r * r
    distorted = r * (1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3) / (
        1 + k4 * r2 + k5 * r2 ** 2 + k6 * r2 ** 3)
    falling = np.flatnonzero(np.diff(distorted) <= 0)
    return float(r[falling[0]]) if len(falling) else float('inf')


def _stack_last(a, b, like):
    if isinstance(like, np.ndarray):
        return np.stack([a, b], axis=-1)
    import torch
    return torch.stack([a, b], dim=-1)
