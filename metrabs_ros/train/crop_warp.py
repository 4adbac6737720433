"""Fresh geometric augmentation of cached crops on the training device.

A cached crop is a perspective crop with its own camera (intrinsics K, targets in that camera's
frame). Turning that camera about its centre (roll about the optical axis, small pan and tilt),
mirroring it and changing its focal length gives a new crop that is again an exact perspective
crop: each new pixel samples the old crop at K_old M^T K_new^-1 p_new (a homography), the 3D
targets become M X (mirrored joints swap labels) and the 2D targets their projection with
K_new. So every reuse of a rendered crop shows the network a new view, not the same pixels
(rendering bounds a GPU run: docs/training_bundled_model.md, section 10). Pixels that fall
outside the old crop are black, as in the estimator's crops at image borders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metrabs_ros.train.device_storage import uniform
from metrabs_ros.train.examples import Batch


@dataclass(frozen=True)
class ReaugmentationRanges:
    roll_degrees: float = 15.0  # turn about the optical axis (in-plane rotation)
    scale: tuple[float, float] = (0.9, 1.15)  # focal length factor (zoom)
    shift: float = 0.05  # pan and tilt, as a fraction of the crop side at the crop centre
    flip_probability: float = 0.5


def random_camera_changes(n: int, focal: torch.Tensor, side: int, ranges: ReaugmentationRanges,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation-mirror matrices M (n, 3, 3) and focal factors (n,) for n crops whose
    focal lengths in pixels are `focal` (n,)."""
    device = focal.device
    roll = uniform(n, -1, 1, generator) * math.radians(ranges.roll_degrees)
    max_turn = torch.atan(ranges.shift * side / focal)
    pan, tilt = uniform(n, -1, 1, generator) * max_turn, uniform(n, -1, 1, generator) * max_turn
    flips = torch.rand(n, device=device, generator=generator) < ranges.flip_probability
    mirror = torch.ones(n, 3, device=device)
    mirror[:, 0] = torch.where(flips, -1.0, 1.0)
    rotation = rotation_z(roll) @ rotation_x(tilt) @ rotation_y(pan)
    return rotation @ torch.diag_embed(mirror), uniform(n, *ranges.scale, generator)


def reaugment(batch: Batch, changes: torch.Tensor, focal_factors: torch.Tensor,
              mirror_joints: torch.Tensor) -> Batch:
    """The crops of `batch` (torch tensors, crops (N, 3, S, S) float) seen by their cameras
    turned and mirrored by `changes` (N, 3, 3; determinant -1 where mirrored) with focal lengths
    times `focal_factors` (N,); mirrored crops get their joints relabelled by `mirror_joints`."""
    side = batch.crops.shape[-1]
    new_intrinsics = batch.intrinsics.clone()
    new_intrinsics[:, :2, :2] *= focal_factors[:, None, None]
    homography = batch.intrinsics @ changes.transpose(1, 2) @ torch.linalg.inv(new_intrinsics)
    pixels = torch.arange(side, device=batch.crops.device, dtype=torch.float32)
    y, x = torch.meshgrid(pixels, pixels, indexing='ij')
    new_pixels = torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 3)
    old = new_pixels @ homography.transpose(1, 2)  # (N, S*S, 3)
    old = old[..., :2] / old[..., 2:]
    grid = ((old + 0.5) * (2 / side) - 1).reshape(-1, side, side, 2)
    crops = F.grid_sample(batch.crops, grid, mode='bilinear', padding_mode='zeros',
                          align_corners=False)

    targets3d = batch.targets3d @ changes.transpose(1, 2)
    mirrored = torch.linalg.det(changes) < 0
    targets3d = torch.where(mirrored[:, None, None], targets3d[:, mirror_joints], targets3d)
    projected = targets3d @ new_intrinsics.transpose(1, 2)
    targets2d = projected[..., :2] / projected[..., 2:]
    return Batch(crops, new_intrinsics, targets3d, targets2d)


def rotation_x(angle: torch.Tensor) -> torch.Tensor:
    return _rotation(angle, 1, 2)


def rotation_y(angle: torch.Tensor) -> torch.Tensor:
    return _rotation(angle, 2, 0)


def rotation_z(angle: torch.Tensor) -> torch.Tensor:
    return _rotation(angle, 0, 1)


def _rotation(angle: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Rotations (N, 3, 3) by `angle` (N,) radians in the plane of axes a -> b."""
    matrix = torch.eye(3, device=angle.device).repeat(len(angle), 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    matrix[:, a, a], matrix[:, a, b] = cos, -sin
    matrix[:, b, a], matrix[:, b, b] = sin, cos
    return matrix
