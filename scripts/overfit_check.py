"""Overfit test (docs/diagnosis_bundled_model.md): train a MeTRAbs model from scratch on a few
hundred FIXED training crops and watch whether the training error goes to zero.

Crops: people of the generator's training clips, cropped from their ground-truth boxes without
augmentation, rendered once. Training: metrabs-train's losses, optimizer and schedule (AdamW,
warm-up + cosine, absolute loss from the same fraction of the run as the bundled model: 1200 of
3500 steps, weak perspective until 2000 of 3500; --no-absolute-loss: never). Every --eval-every
steps the model (eval mode) is measured on the same crops: root-relative MPJPE of the 3D head and
of the final poses, PA-MPJPE, 2D error; the mean pose of the crops is the constant baseline. CPU
time per step and the gradient norm are recorded, so variants can be compared at equal CPU time.

Variants (--variant): 'bundled' (ResNet-18, 128 px, stride 32: a 4x4 heatmap grid), 'stride16'
(the same with the last ResNet stage unstrided: an 8x8 grid at 128 px), 'crop256' (256 px crops,
stride 32: 8x8).

Usage: OMP_NUM_THREADS=1 python scripts/overfit_check.py --variant bundled --steps 300 --out f.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from metrabs_ros.data.generator import TEST_CLIPS, TRAIN_CLIPS, SyntheticGenerator
from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.model.reconstruct import reconstruct_absolute
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.train.examples import Batch, training_crops
from metrabs_ros.train.loop import optimizer_step, warmup_cosine
from metrabs_ros.train.losses import absolute_loss_weight, metrabs_losses
from metrabs_ros.train.metrics import joint_errors, procrustes_errors

SKELETON = get_skeleton('humanoid_15')
VARIANTS = {'bundled': (128, 32), 'stride16': (128, 16), 'crop256': (256, 32)}  # crop side, stride


def fixed_crops(n_crops: int, side: int, clips, seed: int) -> Batch:
    """The first n_crops people of the generator's samples (seed), cropped from their boxes."""
    generator = SyntheticGenerator(clips, seed=seed)
    parts, total, index = [], 0, 0
    rng = np.random.default_rng(seed)
    try:
        while total < n_crops:
            sample = generator.sample(index)
            index += 1
            if len(sample.boxes):
                parts.append(training_crops(sample, side, SKELETON.mirror, rng, augment=False))
                total += len(parts[-1].crops)
    finally:
        generator.close()
    return Batch(*(np.concatenate([getattr(p, f) for p in parts])[:n_crops]
                   for f in ('crops', 'intrinsics', 'targets3d', 'targets2d')))


def build_model(variant: str, seed: int) -> Metrabs:
    side, stride = VARIANTS[variant]
    torch.manual_seed(seed)
    model = Metrabs(ModelConfig(
        backbone='resnet18', joint_names=SKELETON.joint_names, joint_edges=SKELETON.edges.tolist(),
        skeleton='humanoid_15', crop_side=side, stride=stride, input_normalization='imagenet'))
    if stride == 16:  # layer4's first block without its stride: features at 1/16
        block = model.backbone[7][0]
        block.conv1.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    return model


@torch.no_grad()
def measure(model: Metrabs, data: Batch, chunk: int = 64) -> dict[str, float]:
    """Errors (mm, px) of the model in eval mode on all crops of `data`."""
    model.eval()
    head3d, poses3d, coords2d = [], [], []
    for start in range(0, len(data.crops), chunk):
        output = model(torch.from_numpy(data.crops[start:start + chunk]),
                       torch.from_numpy(data.intrinsics[start:start + chunk]))
        head3d.append(output.coords3d_rel_m.numpy())
        poses3d.append(output.poses3d_m.numpy())
        coords2d.append(output.coords2d_px.numpy())
    model.train()
    head3d, poses3d, coords2d = map(np.concatenate, (head3d, poses3d, coords2d))
    truth = data.targets3d
    errors = dict(head3d_mpjpe_mm=1000 * joint_errors(head3d, truth).mean(),
                  mpjpe_mm=1000 * joint_errors(poses3d, truth).mean(),
                  pa_mpjpe_mm=1000 * procrustes_errors(poses3d, truth).mean(),
                  abs_mpjpe_mm=1000 * joint_errors(poses3d, truth, absolute=True).mean(),
                  error2d_px=np.linalg.norm(coords2d - data.targets2d, axis=-1).mean())
    return {name: float(value) for name, value in errors.items()}


def mean_pose_mpjpe_mm(data: Batch) -> float:
    """MPJPE of the crops' own mean root-relative pose (the best constant, about)."""
    relative = data.targets3d - data.targets3d[:, :1]
    return float(1000 * joint_errors(np.broadcast_to(relative.mean(0), relative.shape),
                                     relative).mean())


def train(model: Metrabs, data: Batch, steps: int, batch_size: int, learning_rate: float,
          warmup_steps: int, eval_every: int, seed: int, absolute_loss: bool = True,
          absolute_ramp: float = 0.0, precision: str = 'fp32') -> dict:
    side = model.config.crop_side
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, steps))
    absolute_start, weak_until = round(steps * 1200 / 3500), round(steps * 2000 / 3500)
    ramp_steps = round(steps * absolute_ramp)
    if ramp_steps:  # the ramped schedule: no weak-perspective phase
        weak_until = 0
    if precision == 'bf16':
        model.backbone_autocast = torch.bfloat16
    rng = np.random.default_rng(seed)
    order = np.zeros(0, int)
    log, evaluations, cpu_seconds = [], [], 0.0
    model.train()
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            evaluations.append(dict(step=step, cpu_s=cpu_seconds, **measure(model, data)))
            print(json.dumps({k: round(v, 1) for k, v in evaluations[-1].items()}), flush=True)
        if step == steps:
            break
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(data.crops))])
        chosen, order = order[:batch_size], order[batch_size:]
        started = time.process_time()
        crops, intrinsics, targets3d, targets2d = (torch.from_numpy(a[chosen]) for a in (
            data.crops, data.intrinsics, data.targets3d, data.targets2d))
        output = model(crops, intrinsics)
        weight = absolute_loss_weight(step, absolute_start, ramp_steps) if absolute_loss else 0.0
        if weight > 0 and step < weak_until:
            output = output._replace(poses3d_m=reconstruct_absolute(
                output.coords2d_px, output.coords3d_rel_m, intrinsics, output.in_fov,
                weak_perspective=True))
        losses = metrabs_losses(output, targets3d, targets2d, side, weight)
        norm = optimizer_step(losses['total'], model.parameters(), optimizer, scheduler)
        cpu_seconds += time.process_time() - started
        log.append(dict(step=step, gradient_norm=float('nan') if norm is None else norm,
                        **{k: float(v.detach()) for k, v in losses.items()}))
    return dict(losses=log, evaluations=evaluations, cpu_s_per_step=cpu_seconds / max(1, steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variant', choices=sorted(VARIANTS), default='bundled')
    parser.add_argument('--crops', type=int, default=256)
    parser.add_argument('--held-out', type=int, default=128,
                        help='crops of the test clips measured after training (0: none)')
    parser.add_argument('--steps', type=int, default=300)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--learning-rate', type=float, default=1e-3)
    parser.add_argument('--warmup-steps', type=int, default=30)
    parser.add_argument('--eval-every', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-seed', type=int, default=12345)
    parser.add_argument('--no-absolute-loss', action='store_true',
                        help='train the relative heads only (no absolute-pose loss)')
    parser.add_argument('--absolute-ramp', type=float, default=0.0,
                        help='ramp the absolute loss in over this fraction of the run, without a '
                             'weak-perspective phase (0: switch it on at full weight)')
    parser.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32',
                        help='bf16: backbone under bfloat16 autocast (fast on CPUs with AMX)')
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    side = VARIANTS[args.variant][0]
    data = fixed_crops(args.crops, side, TRAIN_CLIPS, args.data_seed)
    print(f'{len(data.crops)} fixed crops of {side} px; their mean pose: MPJPE '
          f'{mean_pose_mpjpe_mm(data):.1f} mm', flush=True)
    model = build_model(args.variant, args.seed)
    result = train(model, data, args.steps, args.batch_size, args.learning_rate,
                   args.warmup_steps, args.eval_every, args.seed, not args.no_absolute_loss,
                   args.absolute_ramp, args.precision)
    result.update(variant=args.variant, args=vars(args) | dict(out=str(args.out)),
                  mean_pose_mpjpe_mm=mean_pose_mpjpe_mm(data))
    if args.held_out:
        held_out = fixed_crops(args.held_out, side, TEST_CLIPS, args.data_seed)
        result['held_out'] = dict(crops=len(held_out.crops), **measure(model, held_out),
                                  mean_pose_mpjpe_mm=mean_pose_mpjpe_mm(held_out))
        print('held out:', json.dumps({k: round(v, 1) for k, v in result['held_out'].items()}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
