"""A short synthetic video with ground truth: held-out motions played in time, seen by one fixed
camera (the bundled demo sequence; metrabs-synth-sequence).

The directory uses the dataset format of `metrabs_ros.data.dataset` (one sample per frame, JPEG
images) and its index.json adds ``fps``. Frames are consecutive in time at `fps`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from metrabs_ros.data.dataset import FORMAT, save_sample
from metrabs_ros.data.backgrounds import random_background
from metrabs_ros.data.generator import TEST_CLIPS, GeneratorConfig, SyntheticGenerator
from metrabs_ros.data.human_body import random_height, random_style
from metrabs_ros.data.humanoid import load_clip


def write_sequence(directory: str | Path, n_frames: int = 20, fps: float = 10.0,
                   clips=TEST_CLIPS[:2], seed: int = 0) -> Path:
    """Render `n_frames` frames of one person per clip, standing side by side."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = GeneratorConfig(people=(len(clips), len(clips)), truncation_probability=0.0,
                             occluder_probability=0.0, distortion_k1=(-0.12, -0.05),
                             camera_distance_m=(3.0, 4.0))
    generator = SyntheticGenerator(clips, seed, config)
    humanoid = generator.humanoid
    rng = np.random.default_rng(seed)
    spacing = 1.4
    placements = [dict(x=(i - (len(clips) - 1) / 2) * spacing, z=rng.uniform(-0.3, 0.3),
                       yaw=rng.uniform(-np.pi, np.pi)) for i in range(len(clips))]
    for body in humanoid.bodies:
        generator.styles[body], generator.heights[body] = random_style(rng), random_height(rng)
    try:
        camera = light = background = None
        for index in range(n_frames):
            frames, roots = [], []
            for body, clip, place in zip(humanoid.bodies, clips, placements):
                rows = load_clip(clip)
                frame_index = int(index / fps / rows[0, 0]) % len(rows)
                row = rows[frame_index]
                root = np.array([place['x'], row[2], place['z']])
                humanoid.set_pose(row, root, yaw=place['yaw'], body=body)
                frames.append(frame_index)
                roots.append(root)
            if camera is None:  # fixed for the whole sequence
                camera = generator._random_camera(rng, np.array(roots))
                light = rng.normal(size=3) + [0, 2, 0]
                background = random_background(rng, *config.image_size)
            sample = generator.render(camera, tuple(clips), tuple(frames), rng, light, background)
            save_sample(directory, index, sample, image_suffix='.jpg')
    finally:
        generator.close()
    (directory / 'index.json').write_text(json.dumps(dict(
        format=FORMAT, seed=seed, clips=list(clips), count=n_frames, fps=fps,
        generator=dataclasses.asdict(config)), indent=2))
    return directory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='metrabs-synth-sequence', description=__doc__)
    parser.add_argument('out', type=Path)
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--fps', type=float, default=10.0)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    write_sequence(args.out, args.frames, args.fps, seed=args.seed)
    print(f'metrabs-synth-sequence: {args.frames} frames -> {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
