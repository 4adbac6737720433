"""The element-wise mean of several checkpoints of one architecture (a weight average, "model
soup"): e.g. a model and its fine-tuned copy, which together can beat both (training doc,
sections 11 and 14). Floating-point tensors are averaged (batch-norm statistics included); the
others (step counters) are taken from the first model. Written as a float32 checkpoint.

    python scripts/average_weights.py runs/soup8/model metrabs_ros/bundled/humanoid_model \
        runs/pose8_tilt/model
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def average_weights(models: list[torch.nn.Module]) -> torch.nn.Module:
    """The first model, its floating-point weights replaced by the mean over all models (which
    must have the same state-dict keys and shapes)."""
    states = [model.state_dict() for model in models]
    first = states[0]
    for index, state in enumerate(states[1:], 1):
        mismatched = [key for key in first.keys() | state.keys()
                      if key not in first or key not in state or
                      first[key].shape != state[key].shape]
        if mismatched:
            raise ValueError(f'model {index} differs from model 0 in {len(mismatched)} tensors, '
                             f'e.g. {sorted(mismatched)[0]}: not the same architecture')
    mean = {key: torch.stack([state[key].float() for state in states]).mean(0).to(value.dtype)
            if value.is_floating_point() else value for key, value in first.items()}
    models[0].load_state_dict(mean)
    return models[0]


def main(argv=None) -> int:
    from metrabs_ros.weights import load_checkpoint, save_checkpoint
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out', type=Path, help='directory to write the averaged model to')
    parser.add_argument('models', type=Path, nargs='+', help='model directories (own format)')
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error('give at least two models to average')
    save_checkpoint(average_weights([load_checkpoint(path) for path in args.models]), args.out)
    print(f'{args.out}: the mean of {len(args.models)} models')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
