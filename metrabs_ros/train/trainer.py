"""Training a MeTRAbs model on synthetic humanoids (metrabs-train), resumable.

Data: people rendered on the fly by the synthetic generator (training clips only), cropped with
random augmentation, or (--data-dir) crops pre-rendered by metrabs-render-crops, which may still
be rendering. Optimizer: AdamW, linear warm-up then cosine decay. The absolute-pose loss is
ramped in from `absolute_loss_start` over `absolute_loss_ramp` steps; until
`weak_perspective_until` its reconstruction is weak-perspective. --init-from starts from another
model's weights (e.g. the bundled model, to continue its training in a new session).
--precision auto runs the backbone in bfloat16 where the CPU has AMX (about 1.9x faster here).
Checkpoints: out_dir/model (project format) + out_dir/train_state.pt.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metrabs_ros.bundled import DEFAULT_MODEL, SYNTHETIC_DOMAIN
from metrabs_ros.estimator import resolve_device
from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.model.reconstruct import reconstruct_absolute
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.train.baseline_25d import (Heatmap25D, is_25d_directory, load_25d, losses_25d,
                                            save_25d)
from metrabs_ros.train.examples import Batch, training_crops
from metrabs_ros.train.loop import (batch_iterator, config_from_command_line, optimizer_step,
                                     rendered_samples, restore_training_state, run_training,
                                     save_training_state, scheduled_lr_factor, uses_bfloat16)
from metrabs_ros.train.losses import absolute_loss_weight, metrabs_losses
from metrabs_ros.weights import load_checkpoint, save_checkpoint

SKELETON = 'humanoid_15'


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str
    backbone: str = 'resnet18'
    crop_side: int = 128
    stride: int = 32  # 16: ResNet with a dilated last stage, 8x8 heatmaps on 128-pixel crops
    batch_size: int = 16
    steps: int = 20000
    learning_rate: float = 3e-4
    weight_decay: float = 3e-3
    warmup_steps: int = 500
    absolute_loss_start: int = 2000
    absolute_loss_ramp: int = 3000
    weak_perspective_until: int = 0
    checkpoint_every: int = 500
    seed: int = 0
    device: str = 'auto'
    data_workers: int = 1  # processes rendering batches while the model trains (0: inline)
    model_kind: str = 'metrabs'  # or '2.5d': the heatmap baseline of the truncation ablation
    data_dir: str = ''  # crop caches (metrabs-render-crops), comma-separated; '': render live
    init_from: str = ''  # a model directory (or 'bundled') whose weights start a new run
    precision: str = 'auto'  # 'fp32', 'bf16' (backbone autocast) or 'auto'
    pose_mixing: float = 0.0  # rendering live: probability of limbs spliced from other frames
    # > 0: stop after this many seconds in this process, the cosine decay running over that time
    # instead of over `steps` (a leased GPU: fixed time, unknown step rate)
    time_budget_s: float = 0.0
    channels_last: bool = False  # NHWC activations (faster bfloat16 convolutions on GPUs)
    # with data_dir: hold the caches in memory on the training device and draw and jitter
    # batches there, no loader processes (a GPU outruns them; needs ~49 KB per 128-pixel crop)
    crops_on_device: bool = False
    # with crops_on_device: turn, zoom and mirror every drawn crop's camera afresh on the
    # device (crop_warp), so that reused crops are new views
    reaugment_on_device: bool = False


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.out_dir = Path(config.out_dir)
        skeleton = get_skeleton(SKELETON)
        self.mirror = skeleton.mirror
        if config.model_kind not in ('metrabs', '2.5d'):
            raise ValueError(f"model_kind must be 'metrabs' or '2.5d', got {config.model_kind!r}")
        self.baseline = config.model_kind == '2.5d'
        if (self.out_dir / 'model' / 'config.json').exists():
            self.model = load_checkpoint(self.out_dir / 'model')
        elif is_25d_directory(self.out_dir / 'model'):
            self.model = load_25d(self.out_dir / 'model')
        else:
            torch.manual_seed(config.seed)
            model_config = ModelConfig(
                backbone=config.backbone, joint_names=skeleton.joint_names,
                joint_edges=skeleton.edges.tolist(), skeleton=SKELETON,
                crop_side=config.crop_side, stride=config.stride, input_normalization='imagenet',
                training_domain=SYNTHETIC_DOMAIN)
            self.model = Heatmap25D(model_config) if self.baseline else Metrabs(model_config)
            if config.init_from:
                self._load_initial_weights(config.init_from)
        if uses_bfloat16(config.precision, self.device):
            self.model.backbone_autocast = torch.bfloat16
        self.model.to(self.device).train()
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.started = time.monotonic()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.skipped_steps = 0
        self.step_count = restore_training_state(self.out_dir / 'train_state.pt',
                                                 self.optimizer, self.scheduler)

    def _load_initial_weights(self, source: str) -> None:
        initial = load_checkpoint(DEFAULT_MODEL if source == 'bundled' else source)
        if initial.config.crop_side != self.config.crop_side:
            raise ValueError(f'--init-from {source}: crop side {initial.config.crop_side}, '
                             f'not {self.config.crop_side}')
        self.model.load_state_dict(initial.state_dict())
        # Deployment settings calibrated for the initial model's joints carry over.
        self.model.config = dataclasses.replace(
            self.model.config, implausible_pose_rules=initial.config.implausible_pose_rules,
            box_coverage=initial.config.box_coverage)
        print(f'metrabs-train: weights initialized from {source} (stride {initial.config.stride}, '
              f'training at stride {self.config.stride})')

    def _lr_factor(self, step: int) -> float:
        return scheduled_lr_factor(step, self.config, self.started)

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimizer step on a batch; returns the loss terms."""
        to = lambda a: torch.as_tensor(a).to(self.device)  # noqa: E731
        crops, intrinsics, targets3d, targets2d = (to(a) for a in (
            batch.crops, batch.intrinsics, batch.targets3d, batch.targets2d))
        if self.config.channels_last:
            crops = crops.contiguous(memory_format=torch.channels_last)
        output = self.model(crops, intrinsics)
        if self.baseline:
            losses = losses_25d(*output, targets3d, targets2d, self.config.crop_side)
        else:
            weight = absolute_loss_weight(self.step_count, self.config.absolute_loss_start,
                                          self.config.absolute_loss_ramp)
            if weight > 0 and self.step_count < self.config.weak_perspective_until:
                output = output._replace(poses3d_m=reconstruct_absolute(
                    output.coords2d_px, output.coords3d_rel_m, intrinsics, output.in_fov,
                    weak_perspective=True))
            losses = metrabs_losses(output, targets3d, targets2d, self.config.crop_side,
                                    weight)
        if optimizer_step(losses['total'], self.model.parameters(), self.optimizer,
                          self.scheduler) is None:
            self.skipped_steps += 1
        self.step_count += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.baseline:
            save_25d(self.model, self.out_dir / 'model')
        else:
            save_checkpoint(self.model, self.out_dir / 'model')
        save_training_state(self.out_dir / 'train_state.pt', self.step_count, self.optimizer,
                            self.scheduler, self.config)

    def batches(self):
        """Endless batches of augmented crops from freshly rendered training samples, rendered
        in `data_workers` background processes (a resumed run continues with new samples), or
        from the crop caches in data_dir (read onto the device where crops_on_device)."""
        if self.config.data_dir and self.config.crops_on_device:
            from metrabs_ros.train.crop_pool import DeviceCropPool
            from metrabs_ros.train.crop_warp import ReaugmentationRanges
            ranges = ReaugmentationRanges() if self.config.reaugment_on_device else None
            return iter(DeviceCropPool(self.config.data_dir, self.config.batch_size, self.device,
                                       self.config.seed + self.step_count,
                                       reaugmentation=ranges, mirror_joints=self.mirror))
        if self.config.data_dir:
            from metrabs_ros.train.crop_cache import CachedBatches
            return batch_iterator(CachedBatches(self.config.data_dir, self.config.batch_size,
                                                self.config.seed + self.step_count),
                                  self.config.data_workers)
        dataset = RenderedBatches(self.config, self.mirror, first_sample=self.step_count *
                                  self.config.batch_size)
        return batch_iterator(dataset, self.config.data_workers)

    def run(self) -> None:
        """Train until config.steps; on SIGTERM or Ctrl-C save a checkpoint and stop."""
        run_training(self, 'metrabs-train')


class RenderedBatches(torch.utils.data.IterableDataset):
    """Batches of training crops; with several workers, each renders its own samples."""

    def __init__(self, config: TrainConfig, mirror: np.ndarray, first_sample: int):
        self.config, self.mirror, self.first_sample = config, mirror, first_sample

    def __iter__(self):
        size, pending = self.config.batch_size, []
        for sample, rng in rendered_samples(self.config.seed, self.config.seed,
                                            self.first_sample, self.config.pose_mixing):
            if len(sample.boxes):
                pending.append(training_crops(sample, self.config.crop_side, self.mirror, rng))
            if sum(len(b.crops) for b in pending) >= size:
                yield Batch(*(np.concatenate(parts)[:size]
                              for parts in zip(*(dataclasses.astuple(b) for b in pending))))
                pending = []


def main(argv=None) -> int:
    Trainer(config_from_command_line(TrainConfig, 'metrabs-train', __doc__, argv)).run()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
