"""Absolute 3D pose from the 2D head (image rays) and the root-relative metric 3D head.

A reference point r (metres, camera frame) is solved so that ``X_rel + r`` lies on the rays of the
in-FOV joints: for each such joint with normalized image coords (u, v),
``r_x - u r_z = u Z_rel - X_rel`` and ``r_y - v r_z = v Z_rel - Y_rel``, solved by weighted ridge
least squares after RMS-normalizing the ray coordinates and the right-hand side. The ridge acts on
the normalized unknowns, so the normalization changes the result: 'batch' takes one RMS over the
whole batch, as the official MeTRAbs code does (each crop's result then depends on the other
crops of the call); 'per_crop' takes it per sample (the result does not depend on the batch).
Inside the FOV the output mixes the 3D-based joint with the back-projected ray point.
"""
from __future__ import annotations

import torch

OUT_OF_FOV_WEIGHT = 1e-4
SOLVE_NORMALIZATIONS = ('batch', 'per_crop')


def reconstruct_absolute(
        coords2d_px: torch.Tensor, coords3d_rel_m: torch.Tensor, intrinsics: torch.Tensor,
        in_fov: torch.Tensor, mix_3d_inside_fov: float = 0.5, weak_perspective: bool = False,
        ridge_lambda: float = 1e-6, normalization: str = 'batch') -> torch.Tensor:
    """Absolute (N, J, 3) metres in the crop camera frame.

    coords2d_px: (N, J, 2) crop pixels; coords3d_rel_m: (N, J, 3) metres up to an unknown offset;
    intrinsics: (N, 3, 3) crop camera K; in_fov: (N, J) bool, joints usable for the solve;
    normalization: 'batch' (official, the default) or 'per_crop', see the module docstring.
    Differentiable; solved in float64 with autocast disabled, returned in the inputs' dtype
    (at least float32).
    """
    if normalization not in SOLVE_NORMALIZATIONS:
        raise ValueError(f'normalization must be one of {SOLVE_NORMALIZATIONS}, got {normalization!r}')
    dtype = torch.promote_types(coords3d_rel_m.dtype, torch.float32)
    with torch.autocast(device_type=coords2d_px.device.type, enabled=False):
        coords2d_px, coords3d_rel_m, intrinsics = (
            t.double() for t in (coords2d_px, coords3d_rel_m, intrinsics))
        normalized = pixels_to_normalized(coords2d_px, intrinsics)
        if weak_perspective:
            ref = reference_point_weak_perspective(normalized, coords3d_rel_m, in_fov)
        else:
            ref = reference_point(normalized, coords3d_rel_m, in_fov, ridge_lambda, normalization)
        abs_3d_based = coords3d_rel_m + ref[:, None]
        abs_ray_based = to_homogeneous(normalized) * abs_3d_based[..., 2:]
        mixed = mix_3d_inside_fov * abs_3d_based + (1 - mix_3d_inside_fov) * abs_ray_based
        return torch.where(in_fov[..., None], mixed, abs_3d_based).to(dtype)


def reference_point(normalized: torch.Tensor, coords3d_rel: torch.Tensor, in_fov: torch.Tensor,
                    ridge_lambda: float = 1e-6, normalization: str = 'batch') -> torch.Tensor:
    """Weighted ridge least-squares reference point (N, 3); inputs as in reconstruct_absolute."""
    u, v = normalized[..., 0], normalized[..., 1]
    X, Y, Z = coords3d_rel.unbind(-1)
    bx, by = u * Z - X, v * Z - Y
    per_crop = normalization == 'per_crop'
    scale2d = _rms(normalized, per_crop)
    scale_b = _rms(torch.stack([bx, by], dim=-1), per_crop)
    u, v = u / scale2d[:, None], v / scale2d[:, None]
    bx, by = bx / scale_b[:, None], by / scale_b[:, None]

    w2 = (in_fov.to(normalized.dtype) + OUT_OF_FOV_WEIGHT).square()
    sum_w2 = w2.sum(-1)
    zero = torch.zeros_like(sum_w2)
    s_u, s_v = (w2 * u).sum(-1), (w2 * v).sum(-1)
    normal_matrix = torch.stack([
        torch.stack([sum_w2, zero, -s_u], -1),
        torch.stack([zero, sum_w2, -s_v], -1),
        torch.stack([-s_u, -s_v, (w2 * (u * u + v * v)).sum(-1)], -1)], -2)
    normal_matrix = normal_matrix + ridge_lambda * torch.eye(
        3, dtype=normal_matrix.dtype, device=normal_matrix.device)
    rhs = torch.stack([(w2 * bx).sum(-1), (w2 * by).sum(-1), -(w2 * (u * bx + v * by)).sum(-1)], -1)
    solution = torch.linalg.solve(normal_matrix, rhs)
    return solution * torch.stack([scale_b, scale_b, scale_b / scale2d], -1)


def reference_point_weak_perspective(normalized: torch.Tensor, coords3d_rel: torch.Tensor,
                                     in_fov: torch.Tensor) -> torch.Tensor:
    """Reference point (N, 3) matching the 2D and 3D spreads (scaled orthographic camera)."""
    mask = in_fov.to(normalized.dtype)[..., None]
    n_valid = mask.sum(1).clamp(min=1)
    mean3d = (coords3d_rel * mask).sum(1) / n_valid
    mean2d = (normalized * mask).sum(1) / n_valid
    # Clamp before the square root: its gradient at 0 is infinite (NaN with <= 1 joint in view).
    spread3d = (((coords3d_rel[..., :2] - mean3d[:, None, :2]).square() * mask).sum((1, 2)) /
                n_valid[:, 0]).clamp(min=1e-10).sqrt()
    spread2d = (((normalized - mean2d[:, None]).square() * mask).sum((1, 2)) /
                n_valid[:, 0]).clamp(min=1e-10).sqrt()
    depth = spread3d / spread2d
    return to_homogeneous(mean2d) * depth[:, None] - mean3d


def pixels_to_normalized(pixels: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(N, J, 2) pixels, (N, 3, 3) K -> (N, J, 2) normalized image coordinates."""
    return (to_homogeneous(pixels) @ torch.linalg.inv(intrinsics).transpose(1, 2))[..., :2]


def project(points: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(N, J, 3) camera-frame points, (N, 3, 3) K -> (N, J, 2) pixels (no distortion)."""
    normalized = points[..., :2] / points[..., 2:].clamp(min=1e-6)
    return to_homogeneous(normalized) @ intrinsics[:, :2].transpose(1, 2)


def to_homogeneous(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def _rms(x: torch.Tensor, per_crop: bool) -> torch.Tensor:
    """(N,) root mean square of each sample (per_crop) or of the whole batch (repeated N times)."""
    squares = x.square()
    mean = squares.mean(dim=tuple(range(1, x.ndim))) if per_crop else squares.mean().expand(len(x))
    return mean.clamp(min=1e-24).sqrt()
