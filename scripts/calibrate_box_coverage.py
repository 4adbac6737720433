"""Calibrate the box-consistency rule (ModelConfig.box_coverage) for a joint set on ground truth.

The rule drops a pose whose 2D bounding box covers no more than a fraction of its detection
box. For each true person of a metrabs-synth dataset that the detector finds (IoU >= 0.5), this
measures the fraction that the person's exact 2D joints cover of the detector's box, and prints
its quantiles, how many exact poses the official 0.5 would drop, and the threshold that keeps
all but `--quantile` of them (rounded down to 0.05), the value to bundle with a model of this
joint set and detector.

    python scripts/calibrate_box_coverage.py data/train_mean --detector bundled
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from metrabs_ros.bundled import DEFAULT_DETECTOR
from metrabs_ros.data.dataset import load_sample
from metrabs_ros.detection import DEFAULT_THRESHOLD, load_detector
from metrabs_ros.suppression import BOX_COVERAGE, box_coverage
from metrabs_ros.train.metrics import box_iou


def true_pose_coverages(data: Path, detector, max_samples: int, threshold: float) -> np.ndarray:
    """Coverage of the matched detector box by each found person's true 2D pose."""
    coverages = []
    n_samples = len(list(data.glob('*.npz')))
    for index in range(min(n_samples, max_samples)):
        sample = load_sample(data, index)
        found = np.asarray(detector(sample.image, threshold=threshold)).reshape(-1, 5)
        if not len(found) or not len(sample.boxes):
            continue
        iou = box_iou(sample.boxes, found[:, :4])
        best = iou.argmax(axis=1)
        matched = iou[np.arange(len(best)), best] >= 0.5
        coverages.append(box_coverage(sample.joints2d[matched], found[best[matched]]))
    return np.concatenate(coverages) if coverages else np.zeros(0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('data', type=Path, help='metrabs-synth dataset (training split)')
    parser.add_argument('--detector', default='bundled')
    parser.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD,
                        help='detector score threshold')
    parser.add_argument('--quantile', type=float, default=0.02,
                        help='fraction of exact poses the rule may drop')
    parser.add_argument('--max-samples', type=int, default=300)
    args = parser.parse_args(argv)
    detector = load_detector(DEFAULT_DETECTOR if args.detector == 'bundled' else args.detector)
    coverage = true_pose_coverages(args.data, detector, args.max_samples, args.threshold)
    if not len(coverage):
        raise SystemExit('no true person was found by the detector')
    quantiles = np.quantile(coverage, [0.01, 0.02, 0.05, 0.1, 0.5])
    print(f'{len(coverage)} people found; coverage quantiles 1/2/5/10/50 %: '
          f'{" ".join(f"{q:.3f}" for q in quantiles)}')
    print(f'the official {BOX_COVERAGE} drops {100 * (coverage <= BOX_COVERAGE).mean():.1f} % '
          'of exact poses')
    value = math.floor(np.quantile(coverage, args.quantile) * 20) / 20
    print(f'box_coverage {value:.2f} drops {100 * (coverage <= value).mean():.1f} %')


if __name__ == '__main__':
    main()
