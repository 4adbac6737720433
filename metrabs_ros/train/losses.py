"""The paper's training losses (metres and crop pixels in; scalar tensors out).

- metric 3D: L1 between mean-centred predicted (3D head) and true poses, metres;
- 2D: L1 between the 2D head and the true crop pixels of the joints inside the crop, divided
  by the crop side;
- absolute: L1 between the reconstructed absolute pose and the truth, metres, with a weight the
  trainer ramps up from 0 once the relative heads have become sensible (switching it on at full
  weight sets the relative heads back: docs/diagnosis_bundled_model.md).
"""
from __future__ import annotations

import torch

from metrabs_ros.model.metrabs import CropOutput

LOSS_2D_FACTOR = 0.2
ABSOLUTE_LOSS_FACTOR = 0.1


def metrabs_losses(output: CropOutput, targets3d: torch.Tensor, targets2d: torch.Tensor,
                   crop_side: int, absolute_weight: float) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted 'total'; absolute_weight 0 leaves the absolute term out,
    1 gives it the paper's weight (ABSOLUTE_LOSS_FACTOR)."""
    centred_pred = output.coords3d_rel_m - output.coords3d_rel_m.mean(dim=1, keepdim=True)
    centred_true = targets3d - targets3d.mean(dim=1, keepdim=True)
    loss3d = (centred_pred - centred_true).abs().mean()
    in_crop = ((targets2d >= 0) & (targets2d <= crop_side - 1)).all(dim=-1, keepdim=True)
    error2d = (output.coords2d_px - targets2d).abs() * in_crop
    loss2d = error2d.sum() / (in_crop.sum() * 2).clamp(min=1) / crop_side
    losses = dict(loss3d=loss3d, loss2d=loss2d)
    total = loss3d + LOSS_2D_FACTOR * loss2d
    if absolute_weight > 0:
        losses['loss_abs'] = (output.poses3d_m - targets3d).abs().mean()
        total = total + absolute_weight * ABSOLUTE_LOSS_FACTOR * losses['loss_abs']
    losses['total'] = total
    return losses


def absolute_loss_weight(step: int, start: int, ramp_steps: int) -> float:
    """The absolute term's weight at `step`: 0 before `start`, then rising linearly to 1 over
    `ramp_steps` (0: at once)."""
    if step < start:
        return 0.0
    return min(1.0, (step - start + 1) / max(1, ramp_steps))
