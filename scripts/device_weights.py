"""Carry a trained model back from a leased GPU, whose calls return at most 8 files of at most
16 MiB each (64 MiB together): split its weights into balanced parts there, join them here.

    python scripts/device_weights.py split RUN_DIR OUT_DIR [--half]   # on the device
    python scripts/device_weights.py join OUT_DIR RUN_DIR              # here

`split` writes OUT_DIR/model_part*.safetensors (4 float32 parts, or 2 float16 parts with
--half: for two models in one call), config.json and train_log.jsonl; `join` rebuilds
RUN_DIR/model/{model.safetensors,config.json} and RUN_DIR/train_log.jsonl (float32).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PART_LIMIT_BYTES = 15 * 2 ** 20


def split(run: Path, out: Path, half: bool) -> None:
    tensors = load_file(run / 'model' / 'model.safetensors')
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(-(-total // PART_LIMIT_BYTES))]
    sizes = [0] * len(parts)
    for name, tensor in sorted(tensors.items(), key=lambda kv: -kv[1].numel()):
        smallest = sizes.index(min(sizes))
        parts[smallest][name] = tensor
        sizes[smallest] += tensor.numel() * tensor.element_size()
    out.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(parts):
        save_file(part, out / f'model_part{i + 1}.safetensors')
    shutil.copy(run / 'model' / 'config.json', out / 'config.json')
    shutil.copy(run / 'train_log.jsonl', out / 'train_log.jsonl')
    print(f'{run}: {len(parts)} parts of at most {max(sizes) / 2 ** 20:.1f} MiB')


def join(out: Path, run: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for part in sorted(out.glob('model_part*.safetensors')):
        tensors.update(load_file(part))
    if not tensors:
        raise SystemExit(f'no model_part*.safetensors in {out}')
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    (run / 'model').mkdir(parents=True, exist_ok=True)
    save_file(tensors, run / 'model' / 'model.safetensors')
    shutil.copy(out / 'config.json', run / 'model' / 'config.json')
    shutil.copy(out / 'train_log.jsonl', run / 'train_log.jsonl')
    print(f'{run}: {len(tensors)} tensors')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('action', choices=('split', 'join'))
    parser.add_argument('source', type=Path)
    parser.add_argument('destination', type=Path)
    parser.add_argument('--half', action='store_true', help='split: float16 parts')
    args = parser.parse_args()
    if args.action == 'split':
        split(args.source, args.destination, args.half)
    else:
        join(args.source, args.destination)


if __name__ == '__main__':
    main()
