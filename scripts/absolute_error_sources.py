"""Where a model's absolute pose error comes from, beside the floor no model can pass on a
metrabs-synth set.

One image fixes a person's pose only up to a scale about the camera centre: a person k times
taller and k times farther looks the same. The generator scales each body uniformly to a random
height (human_body.random_height), so the image does not tell the height, and hence the depth.
Columns (mm unless said), for the model and the constant mean pose, from ground-truth boxes:

- abs. MPJPE: the absolute error (as metrabs-eval).
- best scale: the same poses scaled about the camera centre by the factor that brings each
  closest to the truth (least squares): the error left once the depth (size) error is removed.
- root depth: mean |predicted - true| root depth; depth ratio: the geometric mean of predicted
  over true root depth and the spread (SD) of its logarithm.
- floor: the absolute error of the true poses scaled by c / h, for heights h drawn from the
  generator's distribution and the one constant c that minimises it: the score of a model that
  knows every pose exactly but not the person's height.

    python scripts/absolute_error_sources.py --model metrabs_ros/bundled/humanoid_model \
        --data data/test777 --baseline-from data/train_mean
"""
from __future__ import annotations

import argparse

import numpy as np

FLOOR_HEIGHT_DRAWS = 100_000


def best_scale_errors(poses: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, J) absolute joint errors (m) of (N, J, 3) camera-frame poses after each is scaled
    about the camera centre by the least-squares factor towards its true pose."""
    scale = (poses * truth).sum(axis=(1, 2)) / (poses ** 2).sum(axis=(1, 2))
    return np.linalg.norm(scale[:, None, None] * poses - truth, axis=-1)


def height_ambiguity_factor(rng: np.random.Generator | None = None) -> float:
    """min over c of the mean of |1 - c / h| over the generator's heights h: a pose's absolute
    error per metre of joint distance from the camera, when its height is unknown."""
    from metrabs_ros.data.human_body import random_height
    rng = rng or np.random.default_rng(0)
    heights = np.array([random_height(rng) for _ in range(FLOOR_HEIGHT_DRAWS)])
    constants = np.linspace(heights.min(), heights.max(), 501)
    return float(min(np.abs(1 - c / heights).mean() for c in constants))


def sources(poses: np.ndarray, truth: np.ndarray, factor: float) -> dict[str, float]:
    """The columns above for (N, J, 3) estimated and true camera-frame poses."""
    depth_ratio = np.log(poses[:, 0, 2] / truth[:, 0, 2])
    return dict(people=len(poses),
                abs_mpjpe_mm=1000 * np.linalg.norm(poses - truth, axis=-1).mean(),
                best_scale_mm=1000 * best_scale_errors(poses, truth).mean(),
                root_depth_mm=1000 * np.abs(poses[:, 0, 2] - truth[:, 0, 2]).mean(),
                depth_ratio=float(np.exp(depth_ratio.mean())),
                depth_ratio_log_sd=float(depth_ratio.std()),
                floor_mm=1000 * factor * np.linalg.norm(truth, axis=-1).mean())


def main(argv=None) -> int:
    from metrabs_ros.train.evaluate import add_evaluation_arguments, evaluate_model_and_mean_pose
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_evaluation_arguments(parser)
    args = parser.parse_args(argv)
    results = evaluate_model_and_mean_pose(args)
    factor = height_ambiguity_factor()
    print(f'height ambiguity: {100 * factor:.2f} % of each joint\'s distance from the camera\n')
    print('| estimate | subset | people | abs. MPJPE | best scale | root depth | depth ratio '
          '| log SD | floor |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, result in results.items():
        truncated = result.truncated.any(axis=1)
        for subset, mask in (('all', np.ones_like(truncated)), ('untruncated', ~truncated),
                             ('truncated', truncated)):
            if not mask.any():
                continue
            row = sources(result.poses[mask], result.true_poses[mask], factor)
            print(f'| {name} | {subset} | {row["people"]} | {row["abs_mpjpe_mm"]:.1f} | '
                  f'{row["best_scale_mm"]:.1f} | {row["root_depth_mm"]:.1f} | '
                  f'{row["depth_ratio"]:.3f} | {row["depth_ratio_log_sd"]:.3f} | '
                  f'{row["floor_mm"]:.1f} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
