"""The 2.5D heatmap baseline of the truncation ablation, and the crop-level comparison with MeTRo.

The baseline has the same backbone and a head of the same size as MeTRAbs, but its volumetric
heatmap spans the crop's image plane in x, y (crop pixels, the 2D head's mapping) and depth
relative to the root joint in z (metres, the same 2.2 m range). A joint outside the crop cannot
be placed outside it. To compare root-relative poses, the baseline's joints are back-projected
with the ground-truth root depth (an advantage the MeTRo model does not get).

Comparison (``python -m metrabs_ros.train.baseline_25d``): people of a test set cropped from
their ground-truth boxes without augmentation; root-relative MPJPE on all crops, on truncated
crops (a joint outside the crop), and on the joints outside the crop.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metrabs_ros.model import ModelConfig
from metrabs_ros.model.backbones import build_backbone
from metrabs_ros.model.heads import heatmap_to_pixels, soft_argmax_3d
from metrabs_ros.model.metrabs import IMAGENET_MEAN, IMAGENET_STD

CONFIG_FILE = 'config_25d.json'
WEIGHTS_FILE = 'model_25d.safetensors'


class Heatmap25D(nn.Module):
    """crops (N, 3, S, S) RGB in [0, 1] -> (uv (N, J, 2) crop pixels, depth (N, J) metres
    relative to the root joint)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone, channels = build_backbone(config.backbone, stride=config.stride)
        self.head = nn.Conv2d(channels, config.depth * config.n_joints, kernel_size=1)
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, crops: torch.Tensor, intrinsics: torch.Tensor | None = None):
        logits = self.head(self.backbone((crops - self.mean) / self.std)).float()
        unit = soft_argmax_3d(logits.unflatten(1, (self.config.depth, self.config.n_joints)))
        uv = heatmap_to_pixels(unit[..., :2], self.config)
        return uv, (unit[..., 2] - 0.5) * self.config.box_size_m


def losses_25d(uv: torch.Tensor, depth: torch.Tensor, targets3d: torch.Tensor,
               targets2d: torch.Tensor, crop_side: int) -> dict[str, torch.Tensor]:
    """L1 of the root-relative depth (metres) and of the image position (as a fraction of the
    crop side times the 2.2 m box, so both are about metres), over all joints."""
    true_depth = targets3d[..., 2] - targets3d[..., :1, 2]
    loss_depth = (depth - true_depth).abs().mean()
    loss2d = (uv - targets2d).abs().mean() / crop_side
    return dict(loss_depth=loss_depth, loss2d=loss2d, total=loss_depth + 2.2 * loss2d)


def back_project(uv: np.ndarray, depth: np.ndarray, root_depth: np.ndarray,
                 intrinsics: np.ndarray) -> np.ndarray:
    """(N, J, 3) camera-frame joints from pixels (N, J, 2), root-relative depths (N, J),
    root depths (N,) and K (N, 3, 3)."""
    z = root_depth[:, None] + depth
    x = (uv[..., 0] - intrinsics[:, None, 0, 2]) / intrinsics[:, None, 0, 0] * z
    y = (uv[..., 1] - intrinsics[:, None, 1, 2]) / intrinsics[:, None, 1, 1] * z
    return np.stack([x, y, z], axis=-1)


def save_25d(model: Heatmap25D, directory: str | Path) -> None:
    import safetensors.torch
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(model.config), indent=2))
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(directory / WEIGHTS_FILE))


def load_25d(directory: str | Path) -> Heatmap25D:
    import safetensors.torch
    directory = Path(directory)
    model = Heatmap25D(ModelConfig(**json.loads((directory / CONFIG_FILE).read_text())))
    model.load_state_dict(safetensors.torch.load_file(str(directory / WEIGHTS_FILE)))
    return model


def is_25d_directory(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file()


@torch.inference_mode()
def root_relative_predictions(model, crops: np.ndarray, intrinsics: np.ndarray,
                              targets3d: np.ndarray) -> np.ndarray:
    """Root-relative (N, J, 3) poses in the crop camera from a MeTRo model (its 3D head) or the
    2.5D baseline (back-projected with the true root depth)."""
    crops_t, intrinsics_t = torch.from_numpy(crops), torch.from_numpy(intrinsics)
    if isinstance(model, Heatmap25D):
        uv, depth = (t.numpy() for t in model(crops_t))
        poses = back_project(uv, depth, targets3d[:, 0, 2], intrinsics)
    else:
        poses = model(crops_t, intrinsics_t).coords3d_rel_m.numpy()
    return poses - poses[:, :1]


def compare_on_crops(models: dict, samples, mirror: np.ndarray) -> dict[str, dict[str, float]]:
    """Per model: MPJPE (mm) on all crops, truncated crops and out-of-crop joints."""
    from metrabs_ros.train.examples import training_crops
    errors = {name: [] for name in models}
    outside = []
    rng = np.random.default_rng(0)
    for sample in samples:
        if not len(sample.boxes):
            continue
        side = next(iter(models.values())).config.crop_side
        batch = training_crops(sample, side, mirror, rng, augment=False)
        if not len(batch.crops):
            continue
        truth = batch.targets3d - batch.targets3d[:, :1]
        outside.append(((batch.targets2d < 0) | (batch.targets2d > side - 1)).any(-1))
        for name, model in models.items():
            predicted = root_relative_predictions(model, batch.crops, batch.intrinsics,
                                                  batch.targets3d)
            errors[name].append(np.linalg.norm(predicted - truth, axis=-1))
    outside = np.concatenate(outside)
    truncated = outside.any(axis=1)
    result = {}
    for name, parts in errors.items():
        e = 1000 * np.concatenate(parts)
        result[name] = dict(crops=len(e), mpjpe_mm=float(e.mean()),
                            truncated_crops=int(truncated.sum()),
                            truncated_mpjpe_mm=_mean(e[truncated]),
                            outside_joints=int(outside.sum()),
                            outside_joint_error_mm=_mean(e[outside]))
    return result


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float('nan')


def main(argv=None) -> int:
    from metrabs_ros.data.dataset import dataset_size, load_sample
    from metrabs_ros.skeletons import get_skeleton
    from metrabs_ros.weights import load_checkpoint
    parser = argparse.ArgumentParser(prog='python -m metrabs_ros.train.baseline_25d',
                                     description=__doc__)
    parser.add_argument('--metro', type=Path, required=True, help='metrabs-train model directory')
    parser.add_argument('--baseline', type=Path, required=True,
                        help='metrabs-train --model-kind 2.5d model directory')
    parser.add_argument('--data', type=Path, required=True)
    parser.add_argument('--out', type=Path, default=None, help='write the result as JSON here')
    args = parser.parse_args(argv)
    models = dict(metro=load_checkpoint(args.metro).eval(), baseline_25d=load_25d(
        args.baseline).eval())
    count = dataset_size(args.data)
    result = compare_on_crops(models, (load_sample(args.data, i) for i in range(count)),
                              get_skeleton('humanoid_15').mirror)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
