"""The paper's training losses (metres and crop pixels in; scalar tensors out).

- metric 3D: L1 between mean-centred predicted (3D head) and true poses, metres;
- 2D: L1 between the 2D head and the true crop pixels of the joints inside the crop, divided
  by the crop side;
- absolute: L1 between the reconstructed absolute pose and the truth, metres (switched on after
  a warm-up, when the relative heads have become sensible).
"""
from __future__ import annotations

import torch

from metrabs_ros.model.metrabs import CropOutput

LOSS_2D_FACTOR = 0.2
ABSOLUTE_LOSS_FACTOR = 0.1


def metrabs_losses(output: CropOutput, targets3d: torch.Tensor, targets2d: torch.Tensor,
                   crop_side: int, absolute: bool) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted 'total'."""
    centred_pred = output.coords3d_rel_m - output.coords3d_rel_m.mean(dim=1, keepdim=True)
    centred_true = targets3d - targets3d.mean(dim=1, keepdim=True)
    loss3d = (centred_pred - centred_true).abs().mean()
    in_crop = ((targets2d >= 0) & (targets2d <= crop_side - 1)).all(dim=-1, keepdim=True)
    error2d = (output.coords2d_px - targets2d).abs() * in_crop
    loss2d = error2d.sum() / (in_crop.sum() * 2).clamp(min=1) / crop_side
    losses = dict(loss3d=loss3d, loss2d=loss2d)
    total = loss3d + LOSS_2D_FACTOR * loss2d
    if absolute:
        losses['loss_abs'] = (output.poses3d_m - targets3d).abs().mean()
        total = total + ABSOLUTE_LOSS_FACTOR * losses['loss_abs']
    losses['total'] = total
    return losses
