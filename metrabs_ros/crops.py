"""Perspective-correct person crops and their test-time augmentations.

For each box a virtual pinhole camera (no distortion) is rotated to look along the undistorted
ray through the box centre, kept upright with respect to the world-up vector, and zoomed so that
the box fills the crop side S with the principal point at the crop centre. Augmentations rotate
the virtual camera about its optical axis, zoom, mirror (a rotation with determinant -1) and
change gamma. The image is warped by sampling the original (distorted) image along the rays of
the virtual camera's pixels: with cv2.remap on the CPU or torch grid_sample on any device, both
from the same sampling map. Crops that shrink the image by more than 2x sample a coarser level of
a 2x2 box-filter image pyramid instead (anti-aliasing, as the official code does).

Two geometry modes (CROP_GEOMETRIES, ModelConfig.crop_geometry): 'exact' computes the crop cameras
and sampling maps in float64 with the box points undistorted to convergence; 'official' (official
releases) repeats the official code's float32 arithmetic in its order, including its 5 fixed-point
steps of box-point undistortion, and the CPU back-end then blends with float32 weights as
grid_sample does (sample_bilinear), so that crops match the official crops to float32 rounding
(~1e-7). That matters: a model can turn sampling differences far below 1e-3 px into millimetres
(the random-weight parity release does, by up to 3.5 mm from about 1e-5 px, for a box cut by
the image edge).

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
CROP_GEOMETRIES = ('exact', 'official')
OFFICIAL_UNDISTORT_STEPS = 5  # fixed-point steps of the official box-point undistortion


@dataclass(frozen=True)
class Augmentations:
    """Per-augmentation parameters, each of shape (A,): the official test-time schedule."""

    angles_rad: np.ndarray
    scales: np.ndarray
    flips: np.ndarray
    gammas: np.ndarray

    @classmethod
    def official(cls, num_aug: int, float32: bool = False) -> 'Augmentations':
        """In-plane rotations over +-25 deg, zooms 0.8-1.1, alternating flips, gammas 0.6-1.0.

        float32: the official code's float32 values (its torch.linspace calls), for the 'official'
        crop geometry; else the float64 schedule.
        """
        if num_aug < 1:
            raise ValueError(f'num_aug must be at least 1, got {num_aug}')
        if float32:
            return cls._official_float32(num_aug)
        spread = np.deg2rad(ROTATION_SPREAD_DEGREES)
        angles = np.linspace(-spread, spread, num_aug) if num_aug > 1 else np.zeros(1)
        half = num_aug // 2
        scales = np.concatenate([np.linspace(0.8, 1.0, half, endpoint=False),
                                 np.linspace(1.0, 1.1, num_aug - half)])
        flips = (np.arange(num_aug) - half) % 2 != 0
        gammas = np.linspace(0.6, 1.0, num_aug) if num_aug > 1 else np.full(1, 0.8)
        return cls(angles, scales, flips, gammas)

    @classmethod
    def _official_float32(cls, num_aug: int) -> 'Augmentations':
        f32 = torch.float32
        spread = torch.tensor(np.deg2rad(ROTATION_SPREAD_DEGREES), dtype=f32)
        half = num_aug // 2
        low, one = torch.tensor(0.8, dtype=f32), torch.tensor(1.0, dtype=f32)
        # 0.8 .. 1.0 without the end point: the official linspace to 1.0 - step (one value: 0.8)
        below = torch.linspace(low, one - (one - low) / half, half) if half > 1 else low.repeat(half)
        scales = torch.cat([below, torch.linspace(1.0, 1.1, num_aug - half)])
        gamma_range = torch.tensor([0.6, 1.0], dtype=f32)
        if num_aug > 1:
            angles = torch.linspace(-spread, spread, num_aug)
            gammas = torch.linspace(gamma_range[0], gamma_range[1], num_aug)
        else:  # the official linspace of one value: the mean of the end points
            angles, gammas = torch.zeros(1), gamma_range.mean(0, keepdim=True)
        flips = (np.arange(num_aug) - half) % 2 != 0
        return cls(*(x.double().numpy() for x in (angles, scales)), flips, gammas.double().numpy())

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
    centre). mode: 'exact' or 'official' (CROP_GEOMETRIES); in 'official' mode R, K and scales
    hold the official code's float32 values and sampling_map follows its float32 arithmetic.
    """

    R: np.ndarray
    K: np.ndarray
    flips: np.ndarray
    gammas: np.ndarray
    box_index: np.ndarray
    side: int
    scales: np.ndarray
    mode: str = 'exact'

    def __len__(self) -> int:
        return len(self.R)

    def subset(self, index) -> 'CropGeometry':
        """The crops selected by a slice or index array."""
        return CropGeometry(self.R[index], self.K[index], self.flips[index], self.gammas[index],
                            self.box_index[index], self.side, self.scales[index], self.mode)

    def to_crop(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, ..., 3) original-camera points -> crop-camera points."""
        return np.einsum('nij,n...j->n...i', self.R, points_cam)

    def from_crop(self, points_crop: np.ndarray) -> np.ndarray:
        """(N, ..., 3) crop-camera points -> original-camera points (R is orthogonal)."""
        return np.einsum('nji,n...j->n...i', self.R, points_crop)


def crop_geometry(camera: Camera, boxes_xywh: np.ndarray, side: int,
                  augmentations: Augmentations | None = None, mode: str = 'exact') -> CropGeometry:
    """Crop cameras for boxes (B, 4) [x, y, w, h] pixels and each augmentation.

    mode: 'exact' (float64) or 'official' (the official code's float32 arithmetic, see
    _official_crop_cameras). Raises ValueError for a box where the distortion cannot be inverted.
    """
    if mode not in CROP_GEOMETRIES:
        raise ValueError(f'crop geometry mode must be one of {CROP_GEOMETRIES}, got {mode!r}')
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    augmentations = augmentations or Augmentations.identity()
    if np.any(boxes[:, 2:] <= 0) or not np.all(np.isfinite(boxes)):
        raise ValueError('boxes must be finite with positive width and height')
    n_aug, n_box = len(augmentations), len(boxes)
    if mode == 'official':
        R, K, scale = _official_crop_cameras(camera, boxes, side, augmentations)
    else:
        R_box, box_scale = _look_at_box(camera, boxes, side)  # (B, 3, 3), (B,)
        R = np.einsum('aij,bjk->abik', augmentations.rotation_flip_matrices(), R_box)
        scale = augmentations.scales[:, None] * box_scale[None, :]  # (A, B)
        K = np.zeros((n_aug, n_box, 3, 3))
        K[..., :2, :2] = camera.K[:2, :2] * scale[..., None, None]
        K[..., :2, 2] = side / 2
        K[..., 2, 2] = 1
    return CropGeometry(
        R=R.reshape(-1, 3, 3), K=K.reshape(-1, 3, 3),
        flips=np.repeat(augmentations.flips, n_box), gammas=np.repeat(augmentations.gammas, n_box),
        box_index=np.tile(np.arange(n_box), n_aug), side=side, scales=scale.reshape(-1), mode=mode)


def _official_crop_cameras(camera: Camera, boxes: np.ndarray, side: int,
                           augmentations: Augmentations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R (A, B, 3, 3), K (A, B, 3, 3), scales (A, B) as the official code computes them (float32).

    Official multiperson_model.py _get_new_rotation_and_scale and _get_crops: box points through
    K^-1, 5 fixed-point undistortion steps, look-at rotation, side midpoints reprojected with
    K R, scale = S / the larger extent; R = augmentation rotation-flip @ R_box, K = K[:2, :2] *
    (augmentation scale * box scale) with the principal point at S / 2. Returned as float64 arrays
    holding float32 values.
    """
    if not undistortable_boxes(camera, boxes).all():
        raise ValueError('a box lies where the lens distortion cannot be inverted')
    f32 = torch.float32
    n_box = len(boxes)
    K = torch.tensor(camera.K, dtype=f32).expand(n_box, 3, 3)
    x, y, w, h = torch.as_tensor(boxes, dtype=f32).T
    points = torch.stack([torch.stack([x + w / 2, y + h / 2], dim=1), torch.stack([x + w / 2, y], dim=1),
                          torch.stack([x + w, y + h / 2], dim=1), torch.stack([x + w / 2, y + h], dim=1),
                          torch.stack([x, y + h / 2], dim=1)], dim=1)
    normalized = torch.einsum('bpc,bCc->bpC', _homogeneous(points), torch.linalg.inv(K))[..., :2]
    if camera.has_distortion:
        normalized = _official_undistort(normalized, torch.tensor(camera.distortion_coeffs, dtype=f32))
    rays = _homogeneous(normalized)
    extrinsic = torch.tensor(camera.extrinsic, dtype=f32)[None]
    up = torch.einsum('c,bCc->bC', torch.tensor(camera.world_up, dtype=f32), extrinsic[..., :3, :3])
    R_box = _official_look_at(rays[:, 0], up.expand(n_box, 3))
    sides = torch.einsum('bpc,bCc->bpC', rays[:, 1:], K @ R_box)
    sides = sides[..., :2] / sides[..., 2:3]
    extent = torch.maximum(torch.linalg.norm(sides[:, 0] - sides[:, 2], dim=-1),
                           torch.linalg.norm(sides[:, 1] - sides[:, 3], dim=-1))
    box_scales = torch.tensor(side, dtype=f32) / extent

    angles = -torch.as_tensor(augmentations.angles_rad, dtype=f32)
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles), torch.ones_like(angles)
    rotation_flip = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1),
                                 torch.stack([zero, zero, one], -1)], -2)
    rotation_flip[torch.as_tensor(augmentations.flips), 0] *= -1  # as the official flip product: exact
    scales = torch.as_tensor(augmentations.scales, dtype=f32)[:, None] * box_scales[None, :]
    n_aug = len(augmentations)
    K_crop = torch.cat([
        torch.cat([K[None, :, :2, :2] * scales[:, :, None, None],
                   torch.full((n_aug, n_box, 2, 1), side / 2, dtype=f32)], dim=3),
        torch.cat([torch.zeros((n_aug, n_box, 1, 2), dtype=f32),
                   torch.ones((n_aug, n_box, 1, 1), dtype=f32)], dim=3)], dim=2)
    R = rotation_flip[:, None] @ R_box
    return R.double().numpy(), K_crop.double().numpy(), scales.double().numpy()


def _homogeneous(points: torch.Tensor) -> torch.Tensor:
    return torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)


def _official_look_at(forward: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """look_at in float32 torch as the official ptu3d.lookat_matrix (forward, up: (B, 3))."""
    z = forward / torch.linalg.norm(forward, dim=-1, keepdim=True)
    x = torch.linalg.cross(z, up)
    x_alternative = torch.stack([z[:, 2], torch.zeros_like(z[:, 2]), -z[:, 0]], dim=1)
    x = torch.where(torch.linalg.norm(x, dim=-1, keepdim=True) == 0, x_alternative, x)
    x = x / torch.linalg.norm(x, dim=-1, keepdim=True)
    return torch.stack([x, torch.linalg.cross(z, x), z], dim=1)


def _official_distortion_parts(xy: torch.Tensor, coeffs: torch.Tensor):
    """The official (a, b, c) with distort(xy) = xy * (a + b) + c; coeffs (12,) OpenCV order.

    a: radial factor (rational), b: 2 (x p2 + y p1), c: (p2, p1) r^2 + thin prism, each (..., 1|2).
    """
    k1, k2, _, _, k3, k4, k5, k6 = (coeffs[i:i + 1] for i in range(8))
    r2 = torch.sum(torch.square(xy), dim=-1, keepdim=True)
    a = (((k3 * r2 + k2) * r2 + k1) * r2 + 1) / (((k6 * r2 + k5) * r2 + k4) * r2 + 1)
    p2_p1 = torch.flip(coeffs[2:4], dims=[-1])
    b = 2 * torch.sum(xy * p2_p1, dim=-1, keepdim=True)
    c = (coeffs[9:12:2] * r2 + p2_p1 + coeffs[8:11:2]) * r2
    return a, b, c


def _official_distort(xy: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    a, b, c = _official_distortion_parts(xy, coeffs)
    return xy * (a + b) + c


def _official_undistort(xy_distorted: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """The official inverse of _official_distort: OFFICIAL_UNDISTORT_STEPS fixed-point steps from xy."""
    xy = xy_distorted
    for _ in range(OFFICIAL_UNDISTORT_STEPS):
        a, b, c = _official_distortion_parts(xy, coeffs)
        xy = (xy_distorted - c - xy * b) / a
    return xy


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
                 device: str | torch.device = 'cpu', levels: np.ndarray | None = None) -> torch.Tensor:
    """(N, S*a, S*a, 2) float32 pixel coordinates in the original image for every crop pixel.

    The coordinates are in pyramid level levels[i] of the image for crop i (pyramid_levels;
    default level 0). 'official' geometry: computed as the official warp does (float32).
    """
    levels = np.zeros(len(geometry), np.int64) if levels is None else np.asarray(levels)
    if geometry.mode == 'official':
        return _official_sampling_map(camera, geometry, antialias, levels, device)
    a = int(antialias)
    size = geometry.side * a
    coords = torch.arange(size, dtype=torch.float64, device=device)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing='xy'), -1).reshape(1, -1, 2)
    # Render pixel i of the a-times larger crop averages into crop pixel (i - (a - 1) / 2) / a.
    grid = (grid - (a - 1) / 2) / a
    pixels = crop_to_image_pixels(camera, geometry, grid.expand(len(geometry), -1, -1))
    for level in np.unique(levels[levels > 0]):
        select = torch.from_numpy(levels == level).to(device)
        pixels[select] = to_level_pixels(pixels[select], int(level))
    return pixels.reshape(len(geometry), size, size, 2).float()


def _official_sampling_map(camera: Camera, geometry: CropGeometry, antialias: int, levels: np.ndarray,
                           device: str | torch.device) -> torch.Tensor:
    """sampling_map in float32 as the official warp (warping.py warp_single_image), crop by crop.

    Crop pixel -> ray by (K_crop R)^-1 (times the corner-aligned 1/a scaling when antialiasing),
    projection, official distortion, then the level's intrinsics corner_aligned(2^-level) K.
    Unlike the official code, rays behind the camera map far outside the image.
    """
    f32 = torch.float32
    crop_to_ray = torch.linalg.inv(torch.as_tensor(geometry.K, dtype=f32) @
                                   torch.as_tensor(geometry.R, dtype=f32))
    if antialias > 1:
        crop_to_ray = crop_to_ray @ _corner_aligned_scaling(1 / antialias)
    coords = torch.arange(geometry.side * antialias, device=device)
    grid = _homogeneous(torch.stack(torch.meshgrid(coords, coords, indexing='xy'), dim=-1).float())
    K = torch.tensor(camera.K, dtype=f32)
    coeffs = torch.tensor(camera.distortion_coeffs, dtype=f32, device=device)
    maps = []
    for matrix, level in zip(crop_to_ray.to(device), levels):
        rays = torch.einsum('hwc,Cc->hwC', grid, matrix)
        normalized = rays[..., :2] / rays[..., 2:3]
        if camera.has_distortion:
            normalized = _official_distort(normalized, coeffs)
        K_level = (_corner_aligned_scaling(0.5 ** int(level)) @ K).to(device)
        pixels = torch.einsum('hwc,Cc->hwC', _homogeneous(normalized), K_level)[..., :2]
        maps.append(torch.where(rays[..., 2:3] > 0, pixels, torch.full_like(pixels, -1e6)))
    return torch.stack(maps)


def _corner_aligned_scaling(factor: float) -> torch.Tensor:
    """(3, 3) float32 pixel scaling by `factor` about the image corner (-0.5, -0.5) (official)."""
    shift = (factor - 1) / 2
    return torch.tensor([[factor, 0, shift], [0, factor, shift], [0, 0, 1]], dtype=torch.float32)


def crop_to_image_pixels(camera: Camera, geometry: CropGeometry,
                         crop_pixels: torch.Tensor) -> torch.Tensor:
    """(N, P, 2) crop pixels -> (N, P, 2) original-image pixels (distorted), float64.

    Rays behind the original camera, and rays beyond the lens distortion's fold radius (which
    the distortion model would fold back into the image), map far outside the image.
    """
    device = crop_pixels.device
    crop_to_ray = torch.as_tensor(  # R^T K_crop^-1: crop pixel -> ray in the original camera
        np.einsum('nji,njk->nik', geometry.R, np.linalg.inv(geometry.K)), device=device)
    homogeneous = torch.cat([crop_pixels.double(), torch.ones_like(crop_pixels[..., :1]).double()], -1)
    rays = torch.einsum('nij,npj->npi', crop_to_ray, homogeneous)
    normalized = rays[..., :2] / rays[..., 2:].clamp(min=1e-9)
    imaged = rays[..., 2:] > 1e-9
    if camera.has_distortion:
        fold = distortion.fold_radius(camera.distortion_coeffs)
        imaged &= torch.linalg.norm(normalized, dim=-1, keepdim=True) < fold
        coeffs = torch.tensor(camera.distortion_coeffs, device=device)
        normalized = distortion.distort(normalized, coeffs)
    K = torch.tensor(camera.K, device=device)
    pixels = normalized @ K[:2, :2].T + K[:2, 2]
    return torch.where(imaged, pixels, torch.full_like(pixels, -1e6))


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
             levels: np.ndarray | None = None, exact_weights: bool = False) -> np.ndarray:
    """CPU warp -> (N, S, S, 3) float32 crops.

    pyramid: a (H, W, 3) float32 image or its image_pyramid; maps: from sampling_map (pixels of
    each crop's level); levels: (N,) pyramid level per crop (pyramid_levels; default all 0).
    exact_weights: sample as torch grid_sample does (sample_bilinear, several times slower) instead
    of with cv2.remap, whose bilinear weights OpenCV 4 quantizes to 1/32 px (OpenCV 5 interpolates
    in float but without grid_sample's coordinate round trip).
    """
    import cv2
    pyramid = [pyramid] if isinstance(pyramid, np.ndarray) else pyramid
    levels = np.zeros(len(maps), np.int64) if levels is None else levels
    crops = []
    for m, level in zip(maps.cpu().numpy(), levels):
        if exact_weights:
            crop = sample_bilinear(pyramid[level], m)
        else:
            crop = cv2.remap(pyramid[level], m[..., 0], m[..., 1], interpolation=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if antialias > 1:
            crop = crop.reshape(crop.shape[0] // antialias, antialias,
                                crop.shape[1] // antialias, antialias, -1).mean((1, 3))
        crops.append(crop)
    return np.stack(crops).astype(np.float32)


def sample_bilinear(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 image at (h, w, 2) float32 pixel coordinates -> (h, w, C) float32.

    As torch grid_sample (bilinear, zeros outside, align_corners) on the CPU: the coordinates
    make its normalization round trip (which moves them by up to ~1e-5 px), the weights and the
    weighted sum are float32 in its order. The 4 neighbours come from cv2.remap INTER_NEAREST.
    """
    import cv2
    height, width = image.shape[:2]

    def source(coordinate: np.ndarray, size: int) -> np.ndarray:  # _grid_sample, then grid_sample
        normalized = (coordinate / np.float32(max(size - 1, 1))) * 2 - 1
        return np.nan_to_num((normalized + 1) * np.float32((size - 1) / 2), copy=False,
                             nan=-2, posinf=-2, neginf=-2)  # non-finite: outside

    def neighbour(xs: np.ndarray, ys: np.ndarray, weight: np.ndarray) -> np.ndarray:
        values = cv2.remap(image, xs, ys, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0).reshape(*xs.shape, -1)
        values *= weight[..., None]
        return values

    pixels = np.asarray(pixels, np.float32)
    x, y = source(pixels[..., 0], width), source(pixels[..., 1], height)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    rx, ry = 1 - fx, 1 - fy
    x1, y1 = x0 + 1, y0 + 1
    crop = neighbour(x0, y0, ry * rx)
    crop += neighbour(x1, y0, ry * fx)
    crop += neighbour(x0, y1, fy * rx)
    crop += neighbour(x1, y1, fy * fx)
    return crop


def warp_torch(pyramid: torch.Tensor | list[torch.Tensor], maps: torch.Tensor,
               image_index: torch.Tensor | None = None, antialias: int = 1,
               levels: np.ndarray | None = None) -> torch.Tensor:
    """Batched warp on any device -> crops (N, 3, S, S).

    pyramid: images (I, 3, H, W) float or their image_pyramid; maps: from sampling_map (pixels of
    each crop's level); image_index: (N,) which image each map samples (default: all from image 0);
    levels: (N,) pyramid level per crop (pyramid_levels; default all 0).
    """
    pyramid = [pyramid] if isinstance(pyramid, torch.Tensor) else pyramid
    if image_index is None:
        image_index = torch.zeros(len(maps), dtype=torch.long, device=maps.device)
    levels = np.zeros(len(maps), np.int64) if levels is None else np.asarray(levels)
    used = np.unique(levels)
    if len(used) <= 1:  # one level (usually 0): no gather / scatter
        crops = _grid_sample(pyramid[int(used[0]) if len(used) else 0], maps, image_index)
    else:
        parts = [(np.flatnonzero(levels == level), level) for level in used]
        sampled = [_grid_sample(pyramid[int(level)], maps[select], image_index[select])
                   for select, level in parts]
        crops = sampled[0].new_empty((len(maps), *sampled[0].shape[1:]))
        for (select, _), part in zip(parts, sampled):
            crops[torch.from_numpy(select).to(crops.device)] = part
    return F.avg_pool2d(crops, antialias) if antialias > 1 else crops


def _grid_sample(images: torch.Tensor, maps: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images (I, 3, H, W) at pixel maps (N, h, w, 2) -> (N, 3, h, w)."""
    height, width = images.shape[-2:]
    size = torch.tensor([max(width - 1, 1), max(height - 1, 1)], dtype=maps.dtype, device=maps.device)
    grid = ((maps / size) * 2 - 1).to(images.dtype)  # as the official warp normalizes
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
    exponent = (torch.as_tensor(np.asarray(gammas), dtype=crops.dtype, device=crops.device) /
                encoding).reshape(shape)
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
