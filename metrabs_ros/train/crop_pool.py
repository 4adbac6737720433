"""Crop caches held in memory on the training device (metrabs-train --crops-on-device).

A GPU trains a small model far faster than loader processes can hand it float32 batches: the
whole cache (uint8, 49 KB per 128-pixel crop) is read into one tensor on the device, and each
batch is drawn there by index and colour-jittered there, with no loader processes at all.
Chunks that renderers add meanwhile are picked up every `refresh_every` batches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metrabs_ros.train.crop_cache import FIELDS
from metrabs_ros.train.crop_warp import ReaugmentationRanges, random_camera_changes, reaugment
from metrabs_ros.train.device_storage import DevicePool
from metrabs_ros.train.examples import Batch


class DeviceCropPool(DevicePool):
    """Endless batches (torch tensors on `device`, crops float32 in [0, 1]) drawn uniformly
    from every crop of the caches in `directories` (a path, comma-separated paths or a sequence
    of them), with fresh colour jitter and, given `reaugmentation` and the skeleton's
    `mirror_joints` permutation, a fresh camera turn, zoom and mirroring (crop_warp)."""

    def __init__(self, directories, batch_size: int, device: torch.device | str, seed: int,
                 colour_jitter: float = 0.2, refresh_every: int = 200,
                 reaugmentation: ReaugmentationRanges | None = None,
                 mirror_joints: np.ndarray | None = None):
        super().__init__(directories, batch_size, device, seed, refresh_every)
        self.colour_jitter = colour_jitter
        self.reaugmentation = reaugmentation
        if reaugmentation is not None:
            if mirror_joints is None:
                raise ValueError('reaugmentation mirrors crops: give mirror_joints')
            self.mirror_joints = torch.as_tensor(mirror_joints, device=self.device)

    def load_chunk(self, path: Path) -> None:
        self.storage.append({f: np.load(path / f'{f}.npy') for f in FIELDS})

    def sample(self) -> Batch:
        """One batch from the crops loaded so far."""
        index = torch.randint(self.size, (self.batch_size,), device=self.device,
                              generator=self.generator)
        batch = Batch(self.storage['crops'][index].float() / 255,
                      *(self.storage[f][index] for f in FIELDS[1:]))
        if self.reaugmentation is not None:
            changes, focal_factors = random_camera_changes(
                self.batch_size, batch.intrinsics[:, 0, 0], batch.crops.shape[-1],
                self.reaugmentation, self.generator)
            batch = reaugment(batch, changes, focal_factors, self.mirror_joints)
        factors = 1 + self.colour_jitter * (2 * torch.rand(
            (self.batch_size, 3), device=self.device, generator=self.generator) - 1)
        return Batch(jitter_colour_batch(batch.crops, factors), batch.intrinsics,
                     batch.targets3d, batch.targets2d)


def jitter_colour_batch(crops: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """examples.jitter_colour for a batch of (N, 3, H, W) crops in [0, 1], with each crop's
    saturation, contrast and brightness factors given as the columns of `factors` (N, 3)."""
    saturation, contrast, brightness = (factors[:, k, None, None, None] for k in range(3))
    grey = crops.mean(dim=1, keepdim=True)
    crops = grey + (crops - grey) * saturation
    mean = crops.mean(dim=(1, 2, 3), keepdim=True)
    crops = mean + (crops - mean) * contrast
    return (crops * brightness).clamp(0, 1)
