"""Diagnosis of a pose model on metrabs-synth datasets (docs/diagnosis_bundled_model.md):
metrabs-eval's metrics for the model and the mean-pose baseline, plus how spread out the
predicted skeletons are (median shoulder width, ankle distance and RMS joint distance from the
pose's centre, predicted vs true), from ground-truth boxes, num_aug 1.

Usage: python scripts/diagnose_bundled.py --model DIR --baseline-from TRAIN_SET DATA [DATA ...]
(e.g. a held-out test set and a set of the training clips, to compare the two errors).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from metrabs_ros.estimator import PoseEstimator
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.train.evaluate import MeanPoseBaseline, evaluate_dataset
from metrabs_ros.weights import load_model


def spread_mm(poses: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Medians over people (mm) of the shoulder width, the ankle distance and the RMS distance
    of the joints from the pose's mean."""
    def distance(a: str, b: str) -> np.ndarray:
        return np.linalg.norm(poses[:, names.index(a)] - poses[:, names.index(b)], axis=-1)

    centred = poses - poses.mean(axis=1, keepdims=True)
    return dict(shoulder_width=1000 * np.median(distance('rsho', 'lsho')),
                ankle_distance=1000 * np.median(distance('rank', 'lank')),
                rms_from_centre=1000 * np.median(np.sqrt((centred ** 2).sum(-1).mean(-1))))


def diagnose(model_dir: Path, data: Path, baseline: MeanPoseBaseline) -> dict:
    names = get_skeleton('humanoid_15').joint_names
    model, mean_pose = evaluate_dataset(PoseEstimator(load_model(model_dir), device='cpu'),
                                        data, baseline)
    return dict(
        data=str(data), baseline_source=baseline.source,
        metrics=dict(model=model.summary(), mean_pose=mean_pose.summary()),
        spread_mm=dict(model=spread_mm(model.poses, names),
                       mean_pose=spread_mm(mean_pose.poses, names),
                       truth=spread_mm(model.true_poses, names)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('data', type=Path, nargs='+')
    parser.add_argument('--model', type=Path, required=True)
    parser.add_argument('--baseline-from', type=Path, required=True)
    parser.add_argument('--out', type=Path, default=None, help='write the results as JSON')
    args = parser.parse_args()
    torch.set_num_threads(1)
    baseline = MeanPoseBaseline.from_dataset(args.baseline_from)
    results = [diagnose(args.model, data, baseline) for data in args.data]
    for result in results:
        print(f'\n{result["data"]} (mean pose from {result["baseline_source"]})')
        print('| | subset | people | MPJPE | abs. MPJPE | PA-MPJPE | PCK@150 |')
        for name, rows in result['metrics'].items():
            for subset, m in rows.items():
                print(f'| {name} | {subset} | {m["people"]} | {m["mpjpe_mm"]:.1f} | '
                      f'{m["abs_mpjpe_mm"]:.1f} | {m["pa_mpjpe_mm"]:.1f} | {m["pck150"]:.1f} |')
        print('| median (mm) | shoulder width | ankle distance | RMS from centre |')
        for name, s in result['spread_mm'].items():
            print(f'| {name} | {s["shoulder_width"]:.0f} | {s["ankle_distance"]:.0f} | '
                  f'{s["rms_from_centre"]:.0f} |')
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()
