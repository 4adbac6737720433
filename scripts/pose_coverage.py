"""How well do the training poses cover the test clips' poses, with and without pose mixing?

For every frame of the test clips: the distance to its nearest training pose, as the mean
joint distance (mm) after centring both at the pelvis and turning the training pose about the
vertical axis to fit best (the generator draws every person's heading at random, and crops are
mirrored in training, so mirrored training poses count too). Rows: the training clips' frames
alone, and with mixed poses added (data.pose_mixing, as metrabs-render-crops --pose-mixing
renders them), and with those mixed poses' joints also jittered (--jitter degrees,
metrabs-render-crops --joint-jitter), or with those mixed poses turned as whole bodies about a
horizontal axis with probability --tilt (data.generator.body_tilt, metrabs-render-crops
--body-tilt). No rendering; about a minute on one core.

    python scripts/pose_coverage.py --mixed 6000 --jitter 20 --tilt 0.5
"""
from __future__ import annotations

import argparse

import numpy as np

from metrabs_ros.data.generator import TEST_CLIPS, TRAIN_CLIPS, body_tilt
from metrabs_ros.data.humanoid import Humanoid, load_clip
from metrabs_ros.data.pose_mixing import jittered_frame, mixed_frame
from metrabs_ros.skeletons import get_skeleton


def centred_poses(humanoid: Humanoid, frames, tilts=None) -> np.ndarray:
    """(N, 15, 3) joints of each clip row, world frame, pelvis at the origin, metres; tilts:
    per row None or a (3, 3) whole-body rotation (Humanoid.set_pose)."""
    poses = []
    for frame, tilt in zip(frames, tilts or [None] * len(frames)):
        humanoid.set_pose(frame, root_position=(0.0, 1.0, 0.0), tilt=tilt)
        joints = humanoid.joints_world()
        poses.append(joints - joints[0])
    return np.array(poses)


def nearest_distances(queries: np.ndarray, references: np.ndarray, chunk: int = 64
                      ) -> np.ndarray:
    """(Q,) smallest mean joint distance (m) from each query pose to a reference pose turned
    about the vertical (y) axis by the angle that fits best (closed form)."""
    best = []
    qx, qz = references[..., 0], references[..., 2]
    for start in range(0, len(queries), chunk):
        p = queries[start:start + chunk]
        px, pz = p[..., 0], p[..., 2]
        a = np.einsum('tj,nj->tn', px, qx) + np.einsum('tj,nj->tn', pz, qz)
        b = np.einsum('tj,nj->tn', px, qz) - np.einsum('tj,nj->tn', pz, qx)
        angle = np.arctan2(b, a)
        cos, sin = np.cos(angle)[..., None], np.sin(angle)[..., None]
        turned_x = cos * qx[None] + sin * qz[None]
        turned_z = -sin * qx[None] + cos * qz[None]
        distance = np.sqrt((turned_x - px[:, None]) ** 2 + (turned_z - pz[:, None]) ** 2 +
                           (references[None, ..., 1] - p[:, None, :, 1]) ** 2).mean(-1)
        best.append(distance.min(axis=1))
    return np.concatenate(best)


def mirrored(poses: np.ndarray) -> np.ndarray:
    flipped = poses[:, get_skeleton('humanoid_15').mirror].copy()
    flipped[..., 0] *= -1
    return flipped


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mixed', type=int, default=6000, help='mixed poses to draw')
    parser.add_argument('--jitter', type=float, default=0.0,
                        help='degrees: a third row with the mixed poses\' joints jittered')
    parser.add_argument('--tilt', type=float, default=0.0,
                        help='probability: a row with the mixed poses turned as whole bodies')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    humanoid = Humanoid()
    try:
        train_clips = [load_clip(c) for c in TRAIN_CLIPS]
        plain = centred_poses(humanoid, np.concatenate(train_clips))
        rng = np.random.default_rng(args.seed)
        bases = [train_clips[rng.integers(len(train_clips))] for _ in range(args.mixed)]
        mixed_frames = [mixed_frame(c[rng.integers(len(c))], train_clips, rng) for c in bases]
        mixed = centred_poses(humanoid, mixed_frames)
        jittered = centred_poses(humanoid, [jittered_frame(f, train_clips, rng, args.jitter)
                                            for f in mixed_frames]) if args.jitter else None
        tilted = centred_poses(humanoid, mixed_frames, [
            body_tilt(rng) if rng.random() < args.tilt else None for _ in mixed_frames]
        ) if args.tilt else None
        tests = {c: centred_poses(humanoid, load_clip(c)) for c in TEST_CLIPS}
    finally:
        humanoid.close()
    sets = {f'training clips ({len(plain)} frames)': plain,
            f'+ {len(mixed)} mixed poses': np.concatenate([plain, mixed])}
    if jittered is not None:
        sets[f'+ the same mixed poses jittered {args.jitter:g} degrees instead'] = \
            np.concatenate([plain, jittered])
    if tilted is not None:
        sets[f'+ the same mixed poses, {100 * args.tilt:g} % tilted, instead'] = \
            np.concatenate([plain, tilted])
    print('| training poses | test clip | frames | median nearest (mm) | within 100 mm (%) '
          '| within 150 mm (%) |')
    print('| --- | --- | ---: | ---: | ---: | ---: |')
    for name, poses in sets.items():
        references = np.concatenate([poses, mirrored(poses)])
        for clip, test in [*tests.items(), ('all', np.concatenate(list(tests.values())))]:
            d = nearest_distances(test, references) * 1000
            print(f'| {name} | {clip} | {len(test)} | {np.median(d):.0f} | '
                  f'{100 * (d <= 100).mean():.1f} | {100 * (d <= 150).mean():.1f} |')


if __name__ == '__main__':
    main()
