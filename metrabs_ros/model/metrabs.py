"""The MeTRAbs crop model: crops + crop intrinsics -> absolute metric 3D poses in the crop camera."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from metrabs_ros.model.backbones import EFFICIENTNETS, build_backbone
from metrabs_ros.model.config import ModelConfig
from metrabs_ros.model.heads import MetrabsHead
from metrabs_ros.model.output_skeletons import OutputSkeletons
from metrabs_ros.model.reconstruct import project, reconstruct_absolute
from metrabs_ros.skeletons import make_skeleton_from_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CropOutput(NamedTuple):
    """Raw-joint outputs for a batch of crops (crop camera frame)."""

    poses3d_m: torch.Tensor  # (N, J_raw, 3) absolute, metres
    coords2d_px: torch.Tensor  # (N, J_raw, 2) 2D head, crop pixels
    coords3d_rel_m: torch.Tensor  # (N, J_raw, 3) 3D head, metres, unknown offset
    in_fov: torch.Tensor  # (N, J_raw) bool, 2D head inside the crop's field of view


class Metrabs(nn.Module):
    """Backbone + MeTRAbs head + absolute reconstruction."""

    def __init__(self, config: ModelConfig, output_skeletons: OutputSkeletons | None = None):
        super().__init__()
        self.config = config
        shift = config.centered_stride and config.backbone in EFFICIENTNETS
        self.backbone, channels = build_backbone(
            config.backbone, shift_last_stride=shift, stride=config.stride)
        self.head = MetrabsHead(channels, config)
        if output_skeletons is None:
            output_skeletons = OutputSkeletons.identity(make_skeleton_from_indices(
                config.skeleton, config.joint_names, np.array(config.joint_edges).reshape(-1, 2)))
        self.output_skeletons = output_skeletons
        mean, std = _normalization(config.input_normalization)
        self.register_buffer('input_mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('input_std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        # Training speed option: run the backbone under autocast to this dtype (e.g. bfloat16 on
        # CPUs with AMX); the head, decoding and the absolute solve stay float32.
        self.backbone_autocast: torch.dtype | None = None

    def forward(self, crops: torch.Tensor, intrinsics: torch.Tensor) -> CropOutput:
        """crops: (N, 3, S, S) RGB in [0, 1]; intrinsics: (N, 3, 3) crop camera K in pixels."""
        normalized = (crops - self.input_mean) / self.input_std
        if self.backbone_autocast is None:
            features = self.backbone(normalized)
        else:
            with torch.autocast(crops.device.type, dtype=self.backbone_autocast):
                features = self.backbone(normalized)
            features = features.float()
        coords2d_px, coords3d_rel_m = self.head(features)
        in_fov = is_within_fov(coords2d_px, self.config)
        poses3d_m = reconstruct_absolute(
            coords2d_px, coords3d_rel_m, intrinsics, in_fov,
            mix_3d_inside_fov=self.config.mix_3d_inside_fov,
            weak_perspective=self.config.weak_perspective,
            ridge_lambda=self.config.ridge_lambda,
            normalization=self.config.solve_normalization)
        return CropOutput(poses3d_m, coords2d_px, coords3d_rel_m, in_fov)

    @torch.inference_mode()
    def predict(self, crops: torch.Tensor, intrinsics: torch.Tensor,
                skeleton: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Poses of `skeleton` (default: the model's first) for a batch of crops.

        Returns poses3d_m (N, J, 3) metres in the crop camera frame and poses2d_px (N, J, 2),
        their projection into the crop (joints outside the crop project outside [0, S)).
        """
        crops, intrinsics = self._check_inputs(crops, intrinsics)
        poses3d = self.forward(crops, intrinsics).poses3d_m
        poses3d = self.output_skeletons.select(poses3d, skeleton or self.output_skeletons.default)
        return poses3d, project(poses3d, intrinsics.to(poses3d.dtype))

    def _check_inputs(self, crops: torch.Tensor, intrinsics: torch.Tensor):
        side = self.config.crop_side
        device = self.input_mean.device
        crops = torch.as_tensor(crops, device=device)
        intrinsics = torch.as_tensor(intrinsics, dtype=torch.float32, device=device)
        if crops.ndim != 4 or crops.shape[1:] != (3, side, side):
            raise ValueError(f'crops must have shape (N, 3, {side}, {side}), got {tuple(crops.shape)}')
        if not crops.is_floating_point():
            raise ValueError(f'crops must be floating point RGB in [0, 1], got {crops.dtype}')
        if intrinsics.shape != (len(crops), 3, 3):
            raise ValueError(f'intrinsics must have shape ({len(crops)}, 3, 3), '
                             f'got {tuple(intrinsics.shape)}')
        if not torch.isfinite(intrinsics).all():
            raise ValueError('intrinsics contain non-finite values')
        return crops, intrinsics


def is_within_fov(coords2d_px: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """(N, J) True where the 2D head lies inside the crop by a margin of border_factor * stride."""
    offset = 0 if config.centered_stride else -config.stride / 2
    margin = config.stride * config.fov_border_factor
    lower, upper = margin + offset, config.crop_side - margin + offset
    return ((coords2d_px >= lower) & (coords2d_px <= upper)).all(dim=-1)


def _normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name == 'imagenet':
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # x * 2 - 1
