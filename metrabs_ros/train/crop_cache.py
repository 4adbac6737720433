"""A cache of pre-rendered, augmented training crops (metrabs-render-crops), so that rendering
does not bound training: a renderer process appends chunks while `metrabs-train --data-dir`
samples batches from every chunk written so far (re-listing them as training goes on).

Layout: DIR/chunk_00000/{crops,intrinsics,targets3d,targets2d}.npy, crops uint8 (N, 3, S, S)
RGB, the rest float32 as in `examples.Batch`; DIR/cache.json records the crop side and seed.
With --detector-images a chunk also holds every rendered image at the person detector's input
size, for `metrabs-train-detector --data-dir` (the same renders train both networks):
detector_images.npy uint8 (I, 3, H, W) (resized by area averaging, zero-padded as the
detector pads), detector_boxes.npy float32 (B, 4) x, y, w, h in those pixels, and
detector_box_image.npy int32 (B,): the image each box belongs to, detector_image_sizes.npy
int32 (I, 2): each image's width and height before the padding. Images without people are
kept: they teach the detector what is not a person.
A chunk directory appears atomically (written under a temporary name, then renamed), so a
reader never sees a partial chunk. Chunk k holds the crops of training samples k * samples
per chunk onwards, so a stopped renderer continues where it left off.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.train.examples import Batch, jitter_colour, training_crops

FIELDS = ('crops', 'intrinsics', 'targets3d', 'targets2d')
SAMPLES_PER_CHUNK = 256
SKELETON = 'humanoid_15'


def render_chunks(directory: str | Path, side: int, n_chunks: int, seed: int = 0,
                  samples_per_chunk: int = SAMPLES_PER_CHUNK, config=None,
                  worker: int = 0, workers: int = 1, detector_input_side: int = 0) -> None:
    """Render the missing chunks among the first n_chunks (so a stopped renderer resumes);
    config: the generator's GeneratorConfig (default: its defaults). With several renderer
    processes on one cache, process `worker` of `workers` renders the chunks k with
    k % workers == worker. detector_input_side > 0: also store every image at that detector
    input size (the module docstring)."""
    from metrabs_ros.data.generator import TRAIN_CLIPS, GeneratorConfig, SyntheticGenerator
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = config or GeneratorConfig()
    info = dict(crop_side=side, seed=seed, skeleton=SKELETON, samples_per_chunk=samples_per_chunk,
                pose_mixing=config.pose_mixing_probability)
    if config.joint_jitter_degrees:  # recorded where used: earlier caches stay resumable
        info['joint_jitter_degrees'] = config.joint_jitter_degrees
    if config.body_tilt_probability:
        info['body_tilt'] = config.body_tilt_probability
    if detector_input_side:
        info['detector_input_side'] = detector_input_side
    _check_or_write_info(directory, info)
    mirror = get_skeleton(SKELETON).mirror
    generator = SyntheticGenerator(TRAIN_CLIPS, seed=seed, config=config)
    done = {p.name for p in chunk_dirs(directory)}
    try:
        for k in range(worker, n_chunks, workers):
            if _chunk_name(k) in done:
                continue
            rng = np.random.default_rng([seed, k, 1])
            parts, detector_examples = [], []
            for index in range(k * samples_per_chunk, (k + 1) * samples_per_chunk):
                sample = generator.sample(index)
                if len(sample.boxes):
                    parts.append(training_crops(sample, side, mirror, rng))
                if detector_input_side:
                    detector_examples.append(detector_input(sample, detector_input_side))
            _write_chunk(directory, k, Batch(*(np.concatenate([getattr(p, f) for p in parts])
                                               for f in FIELDS)), detector_examples)
            print(f'metrabs-render-crops: chunk {k + 1}/{n_chunks}', flush=True)
    finally:
        generator.close()


def chunk_dirs(directory: Path) -> list[Path]:
    """The complete chunks, in order."""
    return sorted(p for p in Path(directory).glob('chunk_*') if p.is_dir() and
                  not p.name.endswith('.tmp'))


def cache_directories(directories) -> list[Path]:
    """The crop caches named by a path, a comma-separated list of paths or a sequence of them."""
    if isinstance(directories, (str, Path)):
        directories = str(directories).split(',')
    return [Path(d) for d in directories]


def no_chunks_error(directories: list[Path], render_options: str = '') -> FileNotFoundError:
    """The error for caches that hold no chunk yet (render_options: what to render them with)."""
    return FileNotFoundError(f'no crop chunks in {", ".join(map(str, directories))}; render '
                             f'them with metrabs-render-crops{render_options}')


def load_chunk(path: Path) -> Batch:
    """One chunk, memory-mapped (crops stay uint8)."""
    return Batch(*(np.load(path / f'{f}.npy', mmap_mode='r') for f in FIELDS))


class CachedBatches(torch.utils.data.IterableDataset):
    """Endless batches drawn uniformly from all cached crops of one or more caches
    (`directories`: a path, a comma-separated list of paths or a sequence of them), with fresh
    colour jitter; the chunk lists are refreshed every `refresh_every` batches (the caches may
    still be growing)."""

    def __init__(self, directories, batch_size: int, seed: int,
                 colour_jitter: float = 0.2, refresh_every: int = 200):
        self.directories = cache_directories(directories)
        self.batch_size, self.seed = batch_size, seed
        self.colour_jitter, self.refresh_every = colour_jitter, refresh_every

    def __iter__(self):
        rng = np.random.default_rng([self.seed, os.getpid()])
        loaded: set[Path] = set()
        chunks: list[Batch] = []
        batch_number = 0
        while True:
            if batch_number % self.refresh_every == 0:
                new = [p for d in self.directories for p in chunk_dirs(d) if p not in loaded]
                chunks += [load_chunk(p) for p in new]
                loaded.update(new)
                if not chunks:
                    raise no_chunks_error(self.directories)
                sizes = np.array([len(c.crops) for c in chunks])
            batch_number += 1
            which = rng.choice(len(chunks), self.batch_size, p=sizes / sizes.sum())
            picked = [(chunks[c], int(rng.integers(sizes[c]))) for c in which]
            crops = np.stack([jitter_colour(chunk.crops[i].astype(np.float32) / 255, rng,
                                            self.colour_jitter, channel_axis=0)
                              for chunk, i in picked])
            yield Batch(crops.astype(np.float32), *(
                np.stack([getattr(chunk, f)[i] for chunk, i in picked]) for f in FIELDS[1:]))


def _chunk_name(k: int) -> str:
    return f'chunk_{k:05d}'


def detector_input(sample, input_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sample's image at detector input size (uint8 (3, H, W), padded), its boxes there and
    the image's width and height before the padding."""
    from metrabs_ros.centre_detector import CentreNetConfig, input_scale
    from metrabs_ros.train.detector_trainer import detector_example
    config = CentreNetConfig(input_side=input_side)
    image, boxes = detector_example(sample.image, sample.boxes, config)
    height, width = sample.image.shape[:2]
    scale = input_scale(config, height, width)
    return (to_uint8(image), boxes.astype(np.float32),
            np.array([round(width * scale), round(height * scale)], np.int32))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float values in [0, 1] -> uint8, rounded."""
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def _write_chunk(directory: Path, k: int, batch: Batch,
                 detector_examples: list[tuple[np.ndarray, ...]] = ()) -> None:
    final = directory / _chunk_name(k)
    temporary = directory / f'{_chunk_name(k)}.tmp'
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    np.save(temporary / 'crops.npy', to_uint8(batch.crops))
    for f in FIELDS[1:]:
        np.save(temporary / f'{f}.npy', getattr(batch, f).astype(np.float32))
    if detector_examples:
        images, boxes, sizes = zip(*detector_examples)
        np.save(temporary / 'detector_images.npy', np.stack(images))
        np.save(temporary / 'detector_image_sizes.npy', np.stack(sizes))
        np.save(temporary / 'detector_boxes.npy', np.concatenate(boxes).reshape(-1, 4))
        np.save(temporary / 'detector_box_image.npy', np.repeat(
            np.arange(len(boxes), dtype=np.int32), [len(b) for b in boxes]))
    temporary.rename(final)


def _check_or_write_info(directory: Path, info: dict) -> None:
    path = directory / 'cache.json'
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != info:
            raise ValueError(f'{path} was written with {existing}, not {info}')
    else:
        path.write_text(json.dumps(info, indent=2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='metrabs-render-crops', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('directory', type=Path)
    parser.add_argument('--crop-side', type=int, default=128)
    parser.add_argument('--chunks', type=int, default=400)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--pose-mixing', type=float, default=0.0, metavar='P',
                        help='probability that a person gets limbs spliced from other clip '
                             'frames (data.pose_mixing)')
    parser.add_argument('--joint-jitter', type=float, default=0.0, metavar='DEGREES',
                        help='turn every joint of every person by up to this angle '
                             '(data.pose_mixing.jittered_frame)')
    parser.add_argument('--body-tilt', type=float, default=0.0, metavar='P',
                        help='probability that a person is turned as a whole about a horizontal '
                             'axis (lying, leaning, upside down) and rested on the ground '
                             '(data.generator.body_tilt)')
    parser.add_argument('--detector-images', type=int, default=0, metavar='INPUT_SIDE',
                        help='also store every image at this person-detector input size '
                             '(320 for the bundled detector), for metrabs-train-detector '
                             '--data-dir')
    parser.add_argument('--worker', type=int, default=0, help='this process: 0 .. workers-1')
    parser.add_argument('--workers', type=int, default=1,
                        help='renderer processes sharing the cache')
    args = parser.parse_args(argv)
    if not 0 <= args.worker < args.workers:
        parser.error('--worker must be in 0 .. --workers - 1')
    from metrabs_ros.data.generator import GeneratorConfig
    render_chunks(args.directory, args.crop_side, args.chunks, args.seed,
                  config=GeneratorConfig(pose_mixing_probability=args.pose_mixing,
                                         joint_jitter_degrees=args.joint_jitter,
                                         body_tilt_probability=args.body_tilt),
                  worker=args.worker, workers=args.workers,
                  detector_input_side=args.detector_images)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
