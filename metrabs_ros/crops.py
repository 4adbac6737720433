"""Perspective-correct person crops and their test-time augmentations.

For each box a virtual pinhole camera (no distortion) is rotated to look along the undistorted
ray through the box centre, kept upright with respect to the world-up vector, and zoomed so that
the box fills the crop side S with the principal point at the crop centre. Augmentations rotate
the virtual camera about its optical axis, zoom, mirror (a rotation with determinant -1) and
change gamma. The image is warped by sampling the original (distorted) image along the rays of
the virtual camera's pixels: with cv2.remap on the CPU or torch grid_sample on any device, both
from the same sampling map. Crops that shrink the image by more than 2x sample a coarser level of
a 2x2 box-filter image pyramid instead (anti-aliasing, as the official code does).

Conventions: pixel coordinates have integer values at pixel centres (OpenCV); a crop rotation R
maps original-camera coordinates to crop-camera coordinates (p_crop = R p_orig).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from metrabs_ros import distortion
from metrabs_ros.camera import Camera

ROTATION_SPREAD_DEGREES = 25.0
GAMMA_ENCODING = 2.2
MAX_PYRAMID_LEVEL = 2  # levels 0 (full resolution), 1 (half), 2 (quarter)


@dataclass(frozen=True)
class Augmentations:
    """Per-augmentation parameters, each of shape (A,): the official test-time schedule."""

    angles_rad: np.ndarray
    scales: np.ndarray
    flips: np.ndarray
    gammas: np.ndarray

    @classmethod
    def official(cls, num_aug: int) -> 'Augmentations':
        """In-plane rotations over +-25 deg, zooms 0.8-1.1, alternating flips, gammas 0.6-1.0."""
        if num_aug < 1:
            raise ValueError(f'num_aug must be at least 1, got {num_aug}')
        spread = np.deg2rad(ROTATION_SPREAD_DEGREES)
        angles = np.linspace(-spread, spread, num_aug) if num_aug > 1 else np.zeros(1)
        half = num_aug // 2
        scales = np.concatenate([np.linspace(0.8, 1.0, half, endpoint=False),
                                 np.linspace(1.0, 1.1, num_aug - half)])
        flips = (np.arange(num_aug) - half) % 2 != 0
        gammas = np.linspace(0.6, 1.0, num_aug) if num_aug > 1 else np.full(1, 0.8)
        return cls(angles, scales, flips, gammas)

    @classmethod
    def identity(cls) -> 'Augmentations':
        return cls(np.zeros(1), np.ones(1), np.zeros(1, bool), np.ones(1))

    def __len__(self) -> int:
        return len(self.angles_rad)

    def rotation_flip_matrices(self) -> np.ndarray:
        """(A, 3, 3): rotate the crop camera by -angle about z, then mirror x where flipped."""
        cos, sin = np.cos(-self.angles_rad), np.sin(-self.angles_rad)
        zero, one = np.zeros_like(cos), np.ones_like(cos)
        rotation = np.stack([np.stack([cos, -sin, zero], -1), np.stack([sin, cos, zero], -1),
                             np.stack([zero, zero, one], -1)], -2)
        mirror = np.where(self.flips, -1.0, 1.0)
        rotation[:, 0, :] *= mirror[:, None]
        return rotation


@dataclass(frozen=True)
class CropGeometry:
    """Virtual crop cameras for B boxes x A augmentations, flattened to N = A * B (aug-major).

    R: (N, 3, 3) original camera -> crop camera (det -1 where flipped); K: (N, 3, 3) crop
    intrinsics; flips: (N,) bool; gammas: (N,); box_index: (N,) which box each crop shows;
    scales: (N,) zoom, crop focal length / original focal length (crop px per image px near the
    centre).
    """

    R: np.ndarray
    K: np.ndarray
    flips: np.ndarray
    gammas: np.ndarray
    box_index: np.ndarray
    side: int
    scales: np.ndarray

    def __len__(self) -> int:
        return len(self.R)

    def subset(self, index) -> 'CropGeometry':
        """The crops selected by a slice or index array."""
        return CropGeometry(self.R[index], self.K[index], self.flips[index], self.gammas[index],
                            self.box_index[index], self.side, self.scales[index])

    def to_crop(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, ..., 3) original-camera points -> crop-camera points."""
        return np.einsum('nij,n...j->n...i', self.R, points_cam)

    def from_crop(self, points_crop: np.ndarray) -> np.ndarray:
        """(N, ..., 3) crop-camera points -> original-camera points (R is orthogonal)."""
        return np.einsum('nji,n...j->n...i', self.R, points_crop)


def crop_geometry(camera: Camera, boxes_xywh: np.ndarray, side: int,
                  augmentations: Augmentations | None = None) -> CropGeometry:
    """Crop cameras for boxes (B, 4) [x, y, w, h] pixels and each augmentation."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    augmentations = augmentations or Augmentations.identity()
    if np.any(boxes[:, 2:] <= 0) or not np.all(np.isfinite(boxes)):
        raise ValueError('boxes must be finite with positive width and height')
    R_box, box_scale = _look_at_box(camera, boxes, side)  # (B, 3, 3), (B,)
    n_aug, n_box = len(augmentations), len(boxes)
    R = np.einsum('aij,bjk->abik', augmentations.rotation_flip_matrices(), R_box)
    scale = augmentations.scales[:, None] * box_scale[None, :]  # (A, B)
    K = np.zeros((n_aug, n_box, 3, 3))
    K[..., :2, :2] = camera.K[:2, :2] * scale[..., None, None]
    K[..., :2, 2] = side / 2
    K[..., 2, 2] = 1
    return CropGeometry(
        R=R.reshape(-1, 3, 3), K=K.reshape(-1, 3, 3),
        flips=np.repeat(augmentations.flips, n_box), gammas=np.repeat(augmentations.gammas, n_box),
        box_index=np.tile(np.arange(n_box), n_aug), side=side, scales=scale.reshape(-1))


def undistortable_boxes(camera: Camera, boxes_xywh: np.ndarray) -> np.ndarray:
    """(B,) bool: the lens distortion can be inverted at the box's centre and side midpoints.

    Only such boxes get a crop camera (crop_geometry raises a ValueError for the others).
    """
    rays = camera.undistort_pixels(_box_points(np.asarray(boxes_xywh, dtype=np.float64)))
    return np.isfinite(rays).all(axis=(1, 2))


def _box_points(boxes: np.ndarray) -> np.ndarray:
    """(B, 5, 2) pixels: centre, top, right, bottom and left midpoints of boxes (B, 4) x, y, w, h."""
    x, y, w, h = boxes.T
    return np.stack([[x + w / 2, y + h / 2], [x + w / 2, y], [x + w, y + h / 2],
                     [x + w / 2, y + h], [x, y + h / 2]], axis=0).transpose(2, 0, 1)


def _look_at_box(camera: Camera, boxes: np.ndarray, side: int):
    rays = camera.undistort_pixels(_box_points(boxes))
    if not np.all(np.isfinite(rays)):
        raise ValueError('a box lies where the lens distortion cannot be inverted')
    rays = np.concatenate([rays, np.ones_like(rays[..., :1])], axis=-1)
    R = look_at(rays[:, 0], camera.up_in_camera)
    sides = np.einsum('bij,bpj->bpi', R, rays[:, 1:])
    sides_px = sides[..., :2] / sides[..., 2:] @ camera.K[:2, :2].T
    extent = np.maximum(np.linalg.norm(sides_px[:, 0] - sides_px[:, 2], axis=-1),
                        np.linalg.norm(sides_px[:, 1] - sides_px[:, 3], axis=-1))
    return R, side / extent


def look_at(forward: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(B, 3) forward directions, (3,) up -> (B, 3, 3) rotations whose rows are the new axes.

    z = forward, x = z cross up (image right), y = z cross x (image down, opposite to up).
    """
    z = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    x = np.cross(z, up)
    degenerate = np.linalg.norm(x, axis=-1) < 1e-9
    x[degenerate] = np.stack([z[degenerate, 2], np.zeros(degenerate.sum()), -z[degenerate, 0]], -1)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def sampling_map(camera: Camera, geometry: CropGeometry, antialias: int = 1,
                 device: str | torch.device = 'cpu') -> torch.Tensor:
    """(N, S*a, S*a, 2) float32 pixel coordinates in the original image for every crop pixel."""
    a = int(antialias)
    size = geometry.side * a
    coords = torch.arange(size, dtype=torch.float64, device=device)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing='xy'), -1).reshape(1, -1, 2)
    # Render pixel i of the a-times larger crop averages into crop pixel (i - (a - 1) / 2) / a.
    grid = (grid - (a - 1) / 2) / a
    pixels = crop_to_image_pixels(camera, geometry, grid.expand(len(geometry), -1, -1))
    return pixels.reshape(len(geometry), size, size, 2).float()


def crop_to_image_pixels(camera: Camera, geometry: CropGeometry,
                         crop_pixels: torch.Tensor) -> torch.Tensor:
    """(N, P, 2) crop pixels -> (N, P, 2) original-image pixels (distorted), float64.

    Rays behind the original camera map far outside the image.
    """
    device = crop_pixels.device
    crop_to_ray = torch.as_tensor(  # R^T K_crop^-1: crop pixel -> ray in the original camera
        np.einsum('nji,njk->nik', geometry.R, np.linalg.inv(geometry.K)), device=device)
    homogeneous = torch.cat([crop_pixels.double(), torch.ones_like(crop_pixels[..., :1]).double()], -1)
    rays = torch.einsum('nij,npj->npi', crop_to_ray, homogeneous)
    normalized = rays[..., :2] / rays[..., 2:].clamp(min=1e-9)
    if camera.has_distortion:
        coeffs = torch.tensor(camera.distortion_coeffs, device=device)
        normalized = distortion.distort(normalized, coeffs)
    K = torch.tensor(camera.K, device=device)
    pixels = normalized @ K[:2, :2].T + K[:2, 2]
    return torch.where(rays[..., 2:] > 1e-9, pixels, torch.full_like(pixels, -1e6))


def pyramid_levels(geometry: CropGeometry, antialias: int = 1) -> np.ndarray:
    """(N,) int: the image-pyramid level each crop samples (official rule).

    A crop rendered antialias times larger zooms the image by s = scale * antialias; it samples
    level floor(-log2(s)) clipped to [0, MAX_PYRAMID_LEVEL], i.e. level 1 once it shrinks the image
    by more than 2x.
    """
    zoom = geometry.scales * antialias
    return np.clip(np.floor(-np.log2(zoom)), 0, MAX_PYRAMID_LEVEL).astype(np.int64)


def image_pyramid(image, n_levels: int) -> list:
    """[image, half, quarter, ...] (n_levels entries), each the 2x2 box average of the previous.

    image: numpy (H, W, C) or torch (..., C, H, W) float; an odd last row/column is dropped (as
    avg_pool2d does), so level-l pixel centres lie at (p + 0.5) / 2**l - 0.5 in level-0 pixels p.
    """
    levels = [image]
    for _ in range(1, n_levels):
        previous = levels[-1]
        if isinstance(previous, np.ndarray):
            even = previous[:previous.shape[0] // 2 * 2, :previous.shape[1] // 2 * 2]
            levels.append(0.25 * ((even[0::2, 0::2] + even[1::2, 0::2]) +
                                  (even[0::2, 1::2] + even[1::2, 1::2])))
        else:
            levels.append(F.avg_pool2d(previous, 2))
    return levels


def to_level_pixels(pixels, level: int):
    """Level-0 pixel coordinates (integer at pixel centres) -> coordinates in pyramid level `level`."""
    return (pixels + 0.5) / 2 ** level - 0.5 if level else pixels


def warp_cv2(pyramid: np.ndarray | list[np.ndarray], maps: torch.Tensor, antialias: int = 1,
             levels: np.ndarray | None = None) -> np.ndarray:
    """CPU warp -> (N, S, S, 3) float32 crops.

    pyramid: a (H, W, 3) float32 image or its image_pyramid; maps: from sampling_map (level-0
    pixels); levels: (N,) pyramid level per crop (pyramid_levels; default all 0).
    """
    import cv2
    pyramid = [pyramid] if isinstance(pyramid, np.ndarray) else pyramid
    levels = np.zeros(len(maps), np.int64) if levels is None else levels
    crops = []
    for m, level in zip(maps.cpu().numpy(), levels):
        m = to_level_pixels(m, int(level))
        crop = cv2.remap(pyramid[level], m[..., 0], m[..., 1], interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if antialias > 1:
            crop = crop.reshape(crop.shape[0] // antialias, antialias,
                                crop.shape[1] // antialias, antialias, -1).mean((1, 3))
        crops.append(crop)
    return np.stack(crops).astype(np.float32)


def warp_torch(pyramid: torch.Tensor | list[torch.Tensor], maps: torch.Tensor,
               image_index: torch.Tensor | None = None, antialias: int = 1,
               levels: np.ndarray | None = None) -> torch.Tensor:
    """Batched warp on any device -> crops (N, 3, S, S).

    pyramid: images (I, 3, H, W) float or their image_pyramid; maps: from sampling_map (level-0
    pixels); image_index: (N,) which image each map samples (default: all from image 0);
    levels: (N,) pyramid level per crop (pyramid_levels; default all 0).
    """
    pyramid = [pyramid] if isinstance(pyramid, torch.Tensor) else pyramid
    if image_index is None:
        image_index = torch.zeros(len(maps), dtype=torch.long, device=maps.device)
    levels = np.zeros(len(maps), np.int64) if levels is None else np.asarray(levels)
    used = np.unique(levels)
    if len(used) <= 1:  # one level (usually 0): no gather / scatter
        crops = _grid_sample(pyramid, maps, image_index, int(used[0]) if len(used) else 0)
    else:
        parts = [(np.flatnonzero(levels == level), level) for level in used]
        sampled = [_grid_sample(pyramid, maps[select], image_index[select], int(level))
                   for select, level in parts]
        crops = sampled[0].new_empty((len(maps), *sampled[0].shape[1:]))
        for (select, _), part in zip(parts, sampled):
            crops[torch.from_numpy(select).to(crops.device)] = part
    return F.avg_pool2d(crops, antialias) if antialias > 1 else crops


def _grid_sample(pyramid: list[torch.Tensor], maps: torch.Tensor, image_index: torch.Tensor,
                 level: int) -> torch.Tensor:
    """Bilinear samples of pyramid[level] at level-0 pixel maps (N, h, w, 2) -> (N, 3, h, w)."""
    images = pyramid[level]
    height, width = images.shape[-2:]
    scale = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)], device=maps.device)
    grid = (to_level_pixels(maps, level) * scale - 1).to(images.dtype)
    return F.grid_sample(images[image_index], grid, mode='bilinear', padding_mode='zeros',
                         align_corners=True)


def encode_gamma(crops, gammas, encoding: float = GAMMA_ENCODING):
    """Crops (N, ...) in [0, 1] -> crops ** (gamma / encoding) with each crop's gamma (N,).

    With encoding 2.2 the input is linear light (see decode_gamma); with 1.0 it is display values.
    """
    shape = (-1,) + (1,) * (crops.ndim - 1)
    if isinstance(crops, np.ndarray):
        exponent = (np.asarray(gammas, dtype=np.float32) / encoding).reshape(shape)
        return np.clip(crops, 0, None) ** exponent
    exponent = torch.as_tensor(np.asarray(gammas) / encoding, dtype=crops.dtype,
                               device=crops.device).reshape(shape)
    return crops.clamp(min=0) ** exponent


def decode_gamma(image_uint8, encoding: float = GAMMA_ENCODING):
    """uint8 display image -> float32 in [0, 1] raised to `encoding` (linear light for 2.2)."""
    if isinstance(image_uint8, np.ndarray):
        if image_uint8.dtype == np.uint8:  # a 256-entry table: ~5x faster than the power
            return _gamma_table(float(encoding))[image_uint8]
        return (image_uint8.astype(np.float32) / 255) ** encoding
    return (image_uint8.float() / 255) ** encoding


@lru_cache(maxsize=8)
def _gamma_table(encoding: float) -> np.ndarray:
    return (np.arange(256, dtype=np.float32) / 255) ** np.float32(encoding)


def uncrop_poses(poses_crop: np.ndarray, geometry: CropGeometry,
                 mirror: np.ndarray) -> np.ndarray:
    """(N, J, 3) crop-camera poses -> original-camera poses, undoing flips with `mirror` (J,)."""
    poses = np.where(geometry.flips[:, None, None], poses_crop[:, mirror], poses_crop)
    return geometry.from_crop(poses)
