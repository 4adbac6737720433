"""Training examples: augmented perspective crops of the people in a synthetic sample.

Each person gets its own random augmentation (box shift and zoom, in-plane rotation, mirroring,
colour), a crop made by the estimator's crop code, and targets in that crop's camera:
3D joints in metres (mirrored labels where the crop is mirrored) and their 2D crop pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrabs_ros.crops import (Augmentations, crop_geometry, decode_gamma, encode_gamma,
                               sampling_map, warp_cv2)
from metrabs_ros.data.generator import Sample


@dataclass(frozen=True)
class AugmentationRanges:
    rotation_degrees: float = 20.0
    scale: tuple[float, float] = (0.8, 1.25)
    shift: float = 0.1  # of the box size
    flip_probability: float = 0.5
    colour: float = 0.2  # brightness / contrast / saturation jitter


@dataclass(frozen=True)
class Batch:
    """crops (N, 3, S, S) float32 RGB in [0, 1]; intrinsics (N, 3, 3); targets3d (N, J, 3)
    metres and targets2d (N, J, 2) pixels in each crop's camera."""

    crops: np.ndarray
    intrinsics: np.ndarray
    targets3d: np.ndarray
    targets2d: np.ndarray


def training_crops(sample: Sample, side: int, mirror: np.ndarray, rng: np.random.Generator,
                   ranges: AugmentationRanges | None = None, augment: bool = True) -> Batch:
    """One crop per person of `sample` (float32 arrays). People whose box lies where the lens
    distortion cannot be inverted (strong barrel distortion, image corners) are left out."""
    ranges = ranges or AugmentationRanges()
    linear = decode_gamma(sample.image)
    crops, intrinsics, targets3d, targets2d = [], [], [], []
    for joints3d, box in zip(sample.joints3d, sample.boxes):
        box = jitter_box(box, rng, ranges.shift) if augment else box
        augmentation = random_augmentation(rng, ranges) if augment else Augmentations.identity()
        try:
            geometry = crop_geometry(sample.camera, box[None], side, augmentation)
        except ValueError:
            continue
        crop = encode_gamma(warp_cv2(linear, sampling_map(sample.camera, geometry)),
                            geometry.gammas)[0]
        if augment:
            crop = jitter_colour(crop, rng, ranges.colour)
        in_crop = geometry.to_crop(joints3d[None])[0]
        if geometry.flips[0]:
            in_crop = in_crop[mirror]
        crops.append(crop.transpose(2, 0, 1))
        intrinsics.append(geometry.K[0])
        targets3d.append(in_crop)
        targets2d.append(in_crop[:, :2] / in_crop[:, 2:] @ geometry.K[0, :2, :2].T +
                         geometry.K[0, :2, 2])
    n_joints = sample.joints3d.shape[1]
    return Batch(np.asarray(crops, np.float32).reshape(-1, 3, side, side),
                 np.asarray(intrinsics, np.float32).reshape(-1, 3, 3),
                 np.asarray(targets3d, np.float32).reshape(-1, n_joints, 3),
                 np.asarray(targets2d, np.float32).reshape(-1, n_joints, 2))


def random_augmentation(rng: np.random.Generator, ranges: AugmentationRanges) -> Augmentations:
    return Augmentations(
        angles_rad=np.deg2rad(rng.uniform(-1, 1, 1) * ranges.rotation_degrees),
        scales=rng.uniform(*ranges.scale, 1),
        flips=rng.random(1) < ranges.flip_probability,
        gammas=np.ones(1))


def jitter_box(box: np.ndarray, rng: np.random.Generator, shift: float) -> np.ndarray:
    x, y, w, h = box
    side = max(w, h)
    dx, dy = rng.uniform(-shift, shift, 2) * side
    return np.array([x + dx, y + dy, w, h])


def jitter_colour(crop: np.ndarray, rng: np.random.Generator, amount: float,
                  channel_axis: int = -1) -> np.ndarray:
    """Random brightness, contrast and saturation changes of an RGB crop in [0, 1] (channels on
    `channel_axis`: -1 for (H, W, 3), 0 for (3, H, W))."""
    grey = crop.mean(axis=channel_axis, keepdims=True)
    crop = grey + (crop - grey) * rng.uniform(1 - amount, 1 + amount)
    crop = crop.mean() + (crop - crop.mean()) * rng.uniform(1 - amount, 1 + amount)
    return np.clip(crop * rng.uniform(1 - amount, 1 + amount), 0, 1)
