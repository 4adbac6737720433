"""Pinhole camera with OpenCV distortion, extrinsics and a world-up vector.

Frames: the camera frame is the optical frame (x right, y down, z forward, REP-103); the
extrinsic matrix maps world points to camera points. Units: metres, pixels, radians.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metrabs_ros import distortion

DEFAULT_FOV_DEGREES = 55.0
DEFAULT_WORLD_UP = (0.0, -1.0, 0.0)


@dataclass(frozen=True)
class Camera:
    """Immutable camera model.

    K: (3, 3) intrinsics in pixels. distortion_coeffs: (12,) OpenCV order (zero-padded).
    extrinsic: (4, 4) world -> camera. world_up: (3,) unit up direction in the world frame.
    image_size: (width, height) in pixels, or None when unknown.
    """

    K: np.ndarray
    distortion_coeffs: np.ndarray = field(default_factory=lambda: np.zeros(distortion.N_COEFFS))
    extrinsic: np.ndarray = field(default_factory=lambda: np.eye(4))
    world_up: np.ndarray = field(default_factory=lambda: np.array(DEFAULT_WORLD_UP))
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        object.__setattr__(self, 'K', validate_intrinsics(self.K))
        object.__setattr__(
            self, 'distortion_coeffs', distortion.as_distortion_coeffs(self.distortion_coeffs))
        object.__setattr__(self, 'extrinsic', _validate_extrinsic(self.extrinsic))
        object.__setattr__(self, 'world_up', _validate_up(self.world_up))
        if self.image_size is not None:
            width, height = (int(v) for v in self.image_size)
            if width <= 0 or height <= 0:
                raise ValueError(f'image_size must be positive (width, height), got {self.image_size}')
            object.__setattr__(self, 'image_size', (width, height))
        for array in (self.K, self.distortion_coeffs, self.extrinsic, self.world_up):
            array.setflags(write=False)

    @classmethod
    def from_fov(cls, fov_degrees: float, image_size: tuple[int, int], **kwargs) -> 'Camera':
        """Camera whose larger image side spans fov_degrees; principal point at the centre.

        image_size: (width, height) pixels. focal = max(W, H) / (2 tan(fov / 2)).
        """
        width, height = image_size
        if not 0 < fov_degrees < 180:
            raise ValueError(f'fov_degrees must be in (0, 180), got {fov_degrees}')
        focal = max(width, height) / (2 * np.tan(np.deg2rad(fov_degrees) / 2))
        K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        return cls(K=K, image_size=(width, height), **kwargs)

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.distortion_coeffs))

    @property
    def R(self) -> np.ndarray:
        """(3, 3) rotation world -> camera."""
        return self.extrinsic[:3, :3]

    @property
    def up_in_camera(self) -> np.ndarray:
        """(3,) the world-up direction expressed in the camera frame."""
        return self.R @ self.world_up

    def world_to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) metres, world frame -> (..., 3) metres, camera frame."""
        return points_world @ self.R.T + self.extrinsic[:3, 3]

    def camera_to_world(self, points_cam: np.ndarray) -> np.ndarray:
        """(..., 3) metres, camera frame -> (..., 3) metres, world frame."""
        return (points_cam - self.extrinsic[:3, 3]) @ self.R

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points -> (..., 2) distorted pixel coordinates."""
        points_cam = np.asarray(points_cam, dtype=np.float64)
        normalized = points_cam[..., :2] / points_cam[..., 2:3]
        if self.has_distortion:
            normalized = distortion.distort(normalized, self.distortion_coeffs)
        return normalized @ self.K[:2, :2].T + self.K[:2, 2]

    def undistort_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 2) distorted pixels -> (..., 2) undistorted normalized coords (NaN if no solution
        inside the distortion's fold radius: beyond it the model's roots are unphysical)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        normalized = np.linalg.solve(self.K[:2, :2], (pixels - self.K[:2, 2]).reshape(-1, 2).T).T
        normalized = normalized.reshape(pixels.shape)
        if self.has_distortion:
            normalized = distortion.undistort(normalized, self.distortion_coeffs)
            beyond = np.linalg.norm(normalized, axis=-1) >= distortion.fold_radius(
                self.distortion_coeffs)
            normalized = np.where(beyond[..., None], np.nan, normalized)
        return normalized

    def unproject(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 2) distorted pixels -> (..., 3) unit-norm viewing rays in the camera frame."""
        normalized = self.undistort_pixels(pixels)
        rays = np.concatenate([normalized, np.ones_like(normalized[..., :1])], axis=-1)
        return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def validate_intrinsics(K) -> np.ndarray:
    """Return K as a float64 (3, 3) array or raise ValueError if non-finite or degenerate."""
    K = np.array(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'intrinsic matrix must be 3x3, got shape {K.shape}')
    if not np.all(np.isfinite(K)):
        raise ValueError(f'intrinsic matrix has non-finite entries: {K.tolist()}')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}')
    if K[1, 0] != 0 or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f'intrinsic matrix must be [[fx s cx] [0 fy cy] [0 0 1]], got {K.tolist()}')
    return K


def _validate_extrinsic(extrinsic) -> np.ndarray:
    extrinsic = np.array(extrinsic, dtype=np.float64)
    if extrinsic.shape != (4, 4) or not np.all(np.isfinite(extrinsic)):
        raise ValueError(f'extrinsic must be a finite 4x4 matrix, got {extrinsic.tolist()}')
    R = extrinsic[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError('extrinsic rotation block must be a proper rotation matrix')
    if not np.allclose(extrinsic[3], [0, 0, 0, 1]):
        raise ValueError('extrinsic last row must be [0, 0, 0, 1]')
    return extrinsic


def _validate_up(world_up) -> np.ndarray:
    up = np.array(world_up, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(up) if up.shape == (3,) else 0.0
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f'world_up must be a finite non-zero 3-vector, got {world_up}')
    return up / norm
