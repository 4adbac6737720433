"""The MeTRAbs head: one 1x1 conv giving J 2D and D*J metric 3D heatmap logits, soft-argmax decoding.

Coordinate mapping (official): a soft-argmax value c in [0, 1] along a heatmap axis maps to
crop pixels as ``c * last_centre + offset`` with ``last_centre = (S - 1) - (S - 1) % stride``.
Metric 3D: x, y are those pixels scaled by box_size / S, z is ``c * box_size``.
"""
from __future__ import annotations

import torch
from torch import nn

from metrabs_ros.model.config import ModelConfig


class MetrabsHead(nn.Module):
    """(N, C, h, w) features -> 2D (N, J, 2) crop pixels and 3D (N, J, 3) metres (offset unknown)."""

    def __init__(self, in_channels: int, config: ModelConfig):
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(in_channels, config.n_joints * (1 + config.depth), kernel_size=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.conv(features).float()
        n_joints = self.config.n_joints
        logits2d = logits[:, :n_joints]
        logits3d = logits[:, n_joints:].unflatten(1, (self.config.depth, n_joints))
        return decode_logits(logits2d, logits3d, self.config)


def decode_logits(logits2d: torch.Tensor, logits3d: torch.Tensor, config: ModelConfig):
    """logits2d (N, J, h, w), logits3d (N, D, J, h, w) -> coords2d_px (N, J, 2), coords3d_m (N, J, 3)."""
    coords2d = soft_argmax_2d(logits2d)
    coords3d = soft_argmax_3d(logits3d)
    return heatmap_to_pixels(coords2d, config), heatmap_to_metric(coords3d, config)


def soft_argmax_2d(logits: torch.Tensor) -> torch.Tensor:
    """(N, J, h, w) logits -> (N, J, 2) expected (x, y) in [0, 1]."""
    probs = torch.softmax(logits.flatten(-2), dim=-1).unflatten(-1, logits.shape[-2:])
    x = probs.sum(-2) @ _unit_grid(logits.shape[-1], probs)
    y = probs.sum(-1) @ _unit_grid(logits.shape[-2], probs)
    return torch.stack([x, y], dim=-1)


def soft_argmax_3d(logits: torch.Tensor) -> torch.Tensor:
    """(N, D, J, h, w) logits -> (N, J, 3) expected (x, y, z) in [0, 1]."""
    logits = logits.movedim(1, -1)  # (N, J, h, w, D)
    probs = torch.softmax(logits.flatten(-3), dim=-1).unflatten(-1, logits.shape[-3:])
    x = probs.sum((-3, -1)) @ _unit_grid(logits.shape[-2], probs)
    y = probs.sum((-2, -1)) @ _unit_grid(logits.shape[-3], probs)
    z = probs.sum((-3, -2)) @ _unit_grid(logits.shape[-1], probs)
    return torch.stack([x, y, z], dim=-1)


def heatmap_to_pixels(coords: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Unit heatmap coordinates -> crop pixel coordinates (official mapping)."""
    return coords * last_receptive_centre(config) + pixel_offset(config)


def pixels_to_heatmap(pixels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Inverse of heatmap_to_pixels."""
    return (pixels - pixel_offset(config)) / last_receptive_centre(config)


def heatmap_to_metric(coords: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Unit 3D heatmap coordinates -> metres relative to an unknown reference point."""
    xy = heatmap_to_pixels(coords[..., :2], config) * (config.box_size_m / config.crop_side)
    return torch.cat([xy, coords[..., 2:] * config.box_size_m], dim=-1)


def metric_to_heatmap(coords_m: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Inverse of heatmap_to_metric."""
    xy = pixels_to_heatmap(coords_m[..., :2] * (config.crop_side / config.box_size_m), config)
    return torch.cat([xy, coords_m[..., 2:] / config.box_size_m], dim=-1)


def last_receptive_centre(config: ModelConfig) -> int:
    last_pixel = config.crop_side - 1
    return last_pixel - last_pixel % config.stride


def pixel_offset(config: ModelConfig) -> float:
    half_stride = config.stride // 2
    return half_stride * (int(config.centered_stride) + int(config.legacy_centered_stride_bug))


def _unit_grid(n: int, like: torch.Tensor) -> torch.Tensor:
    if n == 1:
        return torch.full((1,), 0.5, dtype=like.dtype, device=like.device)
    return torch.linspace(0, 1, n, dtype=like.dtype, device=like.device)
