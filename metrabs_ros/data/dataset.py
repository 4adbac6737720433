"""Writing and reading synthetic datasets on disk.

Layout of a dataset directory: ``index.json`` (format, seed, clips, generator config, count) and
per sample ``NNNNNN.png`` (RGB image; ``.jpg`` for sequences) + ``NNNNNN.npz`` with K (3, 3),
distortion (12,), joints3d (P, 15, 3) metres in the camera optical frame, joints2d (P, 15, 2)
distorted pixels, boxes (P, 4) x, y, w, h pixels, truncated (P, 15) bool, clips (P,) str,
frames (P,) int.
Re-running the writing command with the same arguments reproduces the files exactly.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np

from metrabs_ros.camera import Camera
from metrabs_ros.data.generator import (TEST_CLIPS, TRAIN_CLIPS, GeneratorConfig, Sample,
                                        SyntheticGenerator)

FORMAT = 'metrabs_ros.synthetic/1'


def write_dataset(directory: str | Path, count: int, clips, seed: int,
                  config: GeneratorConfig | None = None, progress: bool = False) -> Path:
    """Render `count` samples of `clips` into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = SyntheticGenerator(clips, seed, config)
    indices = range(count)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc=directory.name, unit='sample')
    try:
        for index in indices:
            save_sample(directory, index, generator.sample(index))
    finally:
        generator.close()
    (directory / 'index.json').write_text(json.dumps(dict(
        format=FORMAT, seed=seed, clips=list(clips), count=count,
        generator=dataclasses.asdict(generator.config)), indent=2))
    return directory


def save_sample(directory: Path, index: int, sample: Sample, image_suffix: str = '.png') -> None:
    """Write sample `index`: image (PNG, or JPEG quality 90 with '.jpg') and npz."""
    stem = directory / f'{index:06d}'
    cv2.imwrite(str(stem.with_suffix(image_suffix)), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 90] if image_suffix == '.jpg' else [])
    np.savez_compressed(
        stem.with_suffix('.npz'), K=sample.camera.K, distortion=sample.camera.distortion_coeffs,
        joints3d=sample.joints3d, joints2d=sample.joints2d, boxes=sample.boxes,
        truncated=sample.truncated, clips=np.array(sample.clips, dtype=str),
        frames=np.array(sample.frames, dtype=np.int64))


def dataset_size(directory: str | Path) -> int:
    """How many samples a metrabs-synth dataset holds (its index.json)."""
    return json.loads((Path(directory) / 'index.json').read_text())['count']


def load_sample(directory: str | Path, index: int) -> Sample:
    """Read sample `index` back (camera without extrinsics: ground truth is camera-frame)."""
    stem = Path(directory) / f'{index:06d}'
    image_path = stem.with_suffix('.png')
    if not image_path.exists() and stem.with_suffix('.jpg').exists():
        image_path = stem.with_suffix('.jpg')
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f'missing or unreadable image {image_path}')
    with np.load(stem.with_suffix('.npz'), allow_pickle=False) as data:
        camera = Camera(K=data['K'], distortion_coeffs=data['distortion'],
                        image_size=(bgr.shape[1], bgr.shape[0]))
        return Sample(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), camera, data['joints3d'],
                      data['joints2d'], data['boxes'], data['truncated'],
                      tuple(data['clips'].tolist()), tuple(data['frames'].tolist()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='metrabs-synth', description='Render a synthetic dataset with exact ground truth.')
    parser.add_argument('out', type=Path)
    parser.add_argument('--split', choices=('train', 'test'), default='test',
                        help='motion clips: train or held-out test clips')
    parser.add_argument('--count', type=int, default=500)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    clips = TEST_CLIPS if args.split == 'test' else TRAIN_CLIPS
    write_dataset(args.out, args.count, clips, args.seed, progress=True)
    print(f'metrabs-synth: {args.count} {args.split} samples -> {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
