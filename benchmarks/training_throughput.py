"""Training-side throughput: crops per second of the data (rendering synthetic samples and
cropping them, as metrabs-render-crops does; reading the crop cache, as metrabs-train
--data-dir does, by a loader process or held on the device) and of the training step
(forward, losses, backward, AdamW) in float32 and with the bfloat16 backbone, on one process
with the current torch thread count.

    OMP_NUM_THREADS=1 python benchmarks/training_throughput.py [--crop-side 128]
        [--batch-size 16] [--samples 40] [--steps 12] [--device auto|cpu|cuda]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, resolve


def rendering(side: int, samples: int) -> tuple[float, float]:
    """(samples per second, crops per second) of rendering + cropping training samples."""
    from metrabs_ros.data.generator import TRAIN_CLIPS, SyntheticGenerator
    from metrabs_ros.skeletons import get_skeleton
    from metrabs_ros.train.examples import training_crops
    mirror = get_skeleton('humanoid_15').mirror
    generator = SyntheticGenerator(TRAIN_CLIPS, seed=99)
    rng = np.random.default_rng(0)
    generator.sample(0)  # warm-up: loads clips and background photos
    crops, started = 0, time.perf_counter()
    for index in range(1, samples + 1):
        crops += len(training_crops(generator.sample(index), side, mirror, rng).crops)
    elapsed = time.perf_counter() - started
    generator.close()
    return samples / elapsed, crops / elapsed


def cache_reading(side: int, batch_size: int, device: torch.device | None = None,
                  batches: int = 50) -> float:
    """Crops per second drawn from a crop cache (uint8, colour jitter): memory-mapped by a loader
    process (device None, metrabs-train --data-dir) or held on `device` (--crops-on-device)."""
    from metrabs_ros.train.crop_cache import CachedBatches, _write_chunk
    from metrabs_ros.train.crop_pool import DeviceCropPool
    from metrabs_ros.train.examples import Batch
    with tempfile.TemporaryDirectory() as directory:
        n = 512
        _write_chunk(Path(directory), 0, Batch(
            np.random.rand(n, 3, side, side).astype(np.float32),
            np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
            np.random.rand(n, 15, 3).astype(np.float32),
            np.random.rand(n, 15, 2).astype(np.float32)))
        if device is None:
            iterator = iter(CachedBatches(directory, batch_size, seed=0))
        else:
            iterator = iter(DeviceCropPool(directory, batch_size, device, seed=0))
        next(iterator)
        started = time.perf_counter()
        for _ in range(batches):
            batch = next(iterator)
        if device is not None and device.type == 'cuda':
            float(batch.crops[0, 0, 0, 0])  # waits for the device
        return batches * batch_size / (time.perf_counter() - started)


def training_step(side: int, batch_size: int, steps: int, device, bfloat16: bool) -> float:
    """Crops per second of metrabs-train's step on random crops with real targets' shapes."""
    from metrabs_ros.train.examples import Batch
    from metrabs_ros.train.trainer import TrainConfig, Trainer
    with tempfile.TemporaryDirectory() as directory:
        trainer = Trainer(TrainConfig(directory, crop_side=side, batch_size=batch_size,
                                      device=str(device), absolute_loss_start=0,
                                      precision='bf16' if bfloat16 else 'fp32'))
        K = np.array([[side, 0, side / 2], [0, side, side / 2], [0, 0, 1]], np.float32)
        targets3d = np.random.uniform(-0.8, 0.8, (batch_size, 15, 3)).astype(np.float32)
        targets3d[..., 2] += 5.0
        targets2d = targets3d[..., :2] / targets3d[..., 2:] * side + side / 2
        batch = Batch(np.random.rand(batch_size, 3, side, side).astype(np.float32),
                      np.tile(K, (batch_size, 1, 1)), targets3d, targets2d)
        for _ in range(2):
            trainer.train_step(batch)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--crop-side', type=int, default=128)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--samples', type=int, default=40)
    parser.add_argument('--steps', type=int, default=12)
    parser.add_argument('--device', default='auto')
    args = parser.parse_args()
    device = resolve(args.device)
    print(machine())
    samples_per_s, crops_per_s = rendering(args.crop_side, args.samples)
    print(f'rendering + cropping: {samples_per_s:.1f} samples/s, {crops_per_s:.1f} crops/s '
          f'({args.crop_side} px crops, 640x480 samples)')
    print(f'crop cache reading, loader process: '
          f'{cache_reading(args.crop_side, args.batch_size):.0f} crops/s')
    print(f'crop cache held on {device.type} (--crops-on-device): '
          f'{cache_reading(args.crop_side, args.batch_size, device):.0f} crops/s')
    for bfloat16 in (False, True):
        rate = training_step(args.crop_side, args.batch_size, args.steps, device, bfloat16)
        print(f'training step ({"bfloat16 backbone" if bfloat16 else "float32"}, batch '
              f'{args.batch_size}): {rate:.1f} crops/s, {args.batch_size / rate:.3f} s/step')


if __name__ == '__main__':
    main()
