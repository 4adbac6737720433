"""The resumable training loop shared by metrabs-train and metrabs-train-detector.

A trainer provides: config.steps, config.checkpoint_every, out_dir, step_count, batches(),
train_step(batch) -> {name: float} with a 'total' entry, and save(). The loop appends every
step's losses to out_dir/train_log.jsonl, shows tqdm progress, checkpoints every
checkpoint_every steps and on SIGTERM or Ctrl-C, so a CPU run can resume across sessions.
"""
from __future__ import annotations

import json
import math
import signal


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))


def run_training(trainer, name: str) -> None:
    """Train until trainer.config.steps; on SIGTERM or Ctrl-C save a checkpoint and stop."""
    from tqdm import tqdm
    config = trainer.config
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with open(trainer.out_dir / 'train_log.jsonl', 'a', buffering=1) as log, tqdm(
                total=config.steps, initial=trainer.step_count, unit='step') as bar:
            if trainer.step_count < config.steps:
                for batch in trainer.batches():
                    losses = trainer.train_step(batch)
                    log.write(json.dumps(dict(step=trainer.step_count, **losses)) + '\n')
                    bar.update(1)
                    bar.set_postfix(loss=f'{losses["total"]:.4f}')
                    if trainer.step_count % config.checkpoint_every == 0:
                        trainer.save()
                    if trainer.step_count >= config.steps:
                        break
    except KeyboardInterrupt:
        print(f'{name}: interrupted at step {trainer.step_count}; checkpoint saved')
    finally:
        signal.signal(signal.SIGTERM, previous)
        trainer.save()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def single_thread_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: one torch thread per rendering worker."""
    import torch
    torch.set_num_threads(1)


def config_from_command_line(config_class, prog: str, description: str, argv=None):
    """A frozen dataclass config from --field-name options (out_dir positional)."""
    import argparse
    import dataclasses
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('out_dir')
    for field in dataclasses.fields(config_class):
        if field.name != 'out_dir':
            parser.add_argument('--' + field.name.replace('_', '-'), type=type(field.default),
                                default=field.default)
    return config_class(**vars(parser.parse_args(argv)))
