"""Plot a training run's loss curve (out_dir/train_log.jsonl of metrabs-train) as running means.

Usage: python scripts/plot_training_log.py RUN_DIR OUT.png [--window 250] [--title TEXT]
    [--batch-size N] (crops per step, for the axis label; default 16)
    [--compare OTHER_RUN] (also that run's 3D loss, dashed: an A/B on the same data)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode='valid')


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / 'train_log.jsonl').read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('run', type=Path)
    parser.add_argument('out', type=Path)
    parser.add_argument('--window', type=int, default=250)
    parser.add_argument('--title', default='')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--compare', type=Path, default=None)
    args = parser.parse_args()
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = read_log(args.run)
    steps = np.array([r['step'] for r in rows])
    figure, axis = plt.subplots(figsize=(8, 4.5))
    if args.compare is not None:
        other = read_log(args.compare)
        axis.plot(running_mean(np.array([r['step'] for r in other]), args.window),
                  running_mean(np.array([r['loss3d'] for r in other]), args.window), 'k--',
                  label=f'3D (L1, m), {args.compare.name}')
    for key, label in (('loss3d', '3D (L1, m)'), ('loss2d', '2D (L1 / crop side)'),
                       ('loss_abs', 'absolute (L1, m) x 0.1')):
        values = np.array([r.get(key, np.nan) for r in rows], float)
        if key == 'loss_abs':
            values *= 0.1
        valid = ~np.isnan(values)
        if valid.sum() > args.window:
            axis.plot(running_mean(steps[valid], args.window),
                      running_mean(values[valid], args.window), label=label)
    axis.set_xlabel(f'step ({args.batch_size} crops each)')
    axis.set_ylabel(f'training loss, running mean over {args.window} steps')
    axis.set_title(args.title or str(args.run))
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=90)
    for key in ('loss3d', 'loss2d', 'loss_abs'):
        values = [r[key] for r in rows[-args.window:] if key in r]
        if values:
            print(f'{key}: mean of the last {len(values)} steps {np.mean(values):.4f}')


if __name__ == '__main__':
    main()
