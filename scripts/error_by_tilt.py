"""A model's pose errors by how far each person's torso leans from upright.

For a `metrabs-synth` test set (no pose mixing or body tilt, so every person's pose is its
clip row's): the torso tilt is the angle between the pelvis-to-neck direction of the clip row
and the world's up; people are grouped into upright (< 30 degrees), leaning (30-60), lying
(60-120) and upside down (>= 120). Each group gets the model's metrabs-eval metrics beside the
constant mean pose's (--baseline-from). Shows whether the error sits in the orientations the
training clips lack (the generator's body_tilt).

    python scripts/error_by_tilt.py --model metrabs_ros/bundled/humanoid_model \
        --data data/test777 --baseline-from data/train_mean
"""
from __future__ import annotations

import argparse
import json

import numpy as np

TILT_GROUPS = (('upright (< 30 deg)', 0, 30), ('leaning (30-60 deg)', 30, 60),
               ('lying (60-120 deg)', 60, 120), ('upside down (>= 120 deg)', 120, 181))
PELVIS, NECK = 0, 2  # humanoid_15
WORLD_UP = np.array([0.0, 1.0, 0.0])  # the clips' y-up world


def torso_tilt_degrees(humanoid, clip: str, frame: int) -> float:
    """The angle between a clip row's pelvis-to-neck direction and the world's up."""
    from metrabs_ros.data.humanoid import load_clip
    humanoid.set_pose(load_clip(clip)[frame])
    joints = humanoid.joints_world()
    torso = joints[NECK] - joints[PELVIS]
    return float(np.degrees(np.arccos(np.clip(torso @ WORLD_UP / np.linalg.norm(torso), -1, 1))))


def main(argv=None) -> int:
    from metrabs_ros.data.humanoid import Humanoid
    from metrabs_ros.train.evaluate import (add_evaluation_arguments,
                                            evaluate_model_and_mean_pose, markdown_table)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_evaluation_arguments(parser)
    args = parser.parse_args(argv)
    generator = json.loads((args.data / 'index.json').read_text())['generator']
    if generator.get('pose_mixing_probability') or generator.get('joint_jitter_degrees') or \
            generator.get('body_tilt_probability'):
        parser.error(f'{args.data}: its poses are not their clip rows (mixing, jitter or tilt)')
    results = evaluate_model_and_mean_pose(args)
    humanoid = Humanoid()
    people = results['model']
    tilts = np.array([torso_tilt_degrees(humanoid, clip, frame)
                      for clip, frame in zip(people.clips, people.frames)])
    rows = {name: {group: result.subset((tilts >= low) & (tilts < high)).summary()['all']
                   for group, low, high in (('all', 0, 181),) + TILT_GROUPS}
            for name, result in results.items()}
    print(markdown_table(rows))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
