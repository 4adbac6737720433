"""Model-only bound: crops per second of backbone + head + reconstruction at the model's crop
side, for several batch sizes, and the counted FLOPs per crop -> achieved GFLOP/s.

    python benchmarks/model_throughput.py [--model DIR] [--device auto|cpu|cuda]
        [--batch-sizes 1 8 32 64] [--dtype float32|float16|bfloat16] [--channels-last]
        [--compile] [--seconds 3]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import load_pose_model, machine, resolve


def flops_per_crop(model, side: int, device) -> float:
    crops = torch.rand(1, 3, side, side, device=device)
    K = torch.tensor([[[side, 0, side / 2], [0, side, side / 2], [0, 0, 1.0]]], device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(crops, K)
    return float(counter.get_total_flops())


def crops_per_second(model, side: int, batch: int, device, dtype, channels_last: bool,
                     seconds: float) -> float:
    crops = torch.rand(batch, 3, side, side, device=device)
    if channels_last:
        crops = crops.contiguous(memory_format=torch.channels_last)
    K = torch.tensor([[side, 0, side / 2], [0, side, side / 2], [0, 0, 1.0]],
                     device=device).expand(batch, 3, 3)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def run():
        with torch.inference_mode(), autocast:
            model(crops, K)

    for _ in range(3):  # warm-up (cuDNN autotuning, compilation)
        run()
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        run()
        count += 1
    sync()
    return count * batch / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default=None, help='model directory (default: bundled)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8, 32, 64])
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float16', 'bfloat16'))
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true', help='torch.compile the backbone')
    parser.add_argument('--seconds', type=float, default=3.0, help='timing per batch size')
    args = parser.parse_args(argv)
    device = resolve(args.device)
    model = load_pose_model(args.model).to(device).eval()
    side = model.config.crop_side
    gflop = flops_per_crop(model, side, device) / 1e9
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model.backbone = torch.compile(model.backbone)
    dtype = getattr(torch, args.dtype)
    print(f'machine: {machine()}')
    print(f'model: {model.config.backbone}, crop {side} px, {gflop:.3f} GFLOP per crop '
          f'(counted, fp32 forward); device {device}, {args.dtype}, '
          f'channels_last={args.channels_last}, compile={args.compile}')
    print('| batch | crops/s | ms per batch | GFLOP/s |')
    print('| ---: | ---: | ---: | ---: |')
    for batch in args.batch_sizes:
        rate = crops_per_second(model, side, batch, device, dtype, args.channels_last,
                                args.seconds)
        print(f'| {batch} | {rate:.1f} | {1000 * batch / rate:.1f} | {rate * gflop:.1f} |')


if __name__ == '__main__':
    main()
