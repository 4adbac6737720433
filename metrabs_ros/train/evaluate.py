"""Evaluation on a synthetic test set (metrabs-eval): metrics table (Markdown) and plots (PNG).

Each person is estimated from its ground-truth box, so the numbers measure the pose model.
Rows: all people, and the truncated subset (people with at least one joint outside the image).
Units: millimetres in the table, metres in the arrays.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from metrabs_ros.data.generator import Sample
from metrabs_ros.train.metrics import (AUC_THRESHOLDS_M, PCK_THRESHOLD_M, average_precision,
                                       joint_errors)


@dataclass(frozen=True)
class EvaluationResult:
    """Per person (N) and joint (J): relative and absolute errors (metres), truncation flags."""

    relative: np.ndarray
    absolute: np.ndarray
    truncated: np.ndarray
    joint_names: tuple[str, ...]

    def summary(self) -> dict[str, dict[str, float]]:
        """{'all': metrics, 'truncated': metrics}; metrics in mm and % (NaN when empty)."""
        subsets = dict(all=np.ones(len(self.relative), bool),
                       truncated=self.truncated.any(axis=1))
        return {name: _metrics(self.relative[mask], self.absolute[mask])
                for name, mask in subsets.items()}


def evaluate(estimate: Callable[[Sample], np.ndarray], samples: Iterable[Sample],
             joint_names, root: int = 0) -> EvaluationResult:
    """estimate(sample) -> (P, J, 3) camera-frame poses for the sample's people, in order."""
    relative, absolute, truncated = [], [], []
    for sample in samples:
        if not len(sample.joints3d):
            continue
        predicted = estimate(sample)
        relative.append(joint_errors(predicted, sample.joints3d, root))
        absolute.append(joint_errors(predicted, sample.joints3d, absolute=True))
        truncated.append(sample.truncated)
    if not relative:
        raise ValueError('no people to evaluate')
    return EvaluationResult(np.concatenate(relative), np.concatenate(absolute),
                            np.concatenate(truncated), tuple(joint_names))


def detector_average_precision(detect: Callable[[np.ndarray], np.ndarray],
                               samples: Iterable[Sample], iou_threshold: float = 0.5) -> float:
    """Box AP of detect(image) -> (D, 5) [x, y, w, h, score] against the samples' boxes."""
    detections, truths = [], []
    for sample in samples:
        detections.append(detect(sample.image))
        truths.append(sample.boxes)
    return average_precision(detections, truths, iou_threshold)


def _metrics(relative: np.ndarray, absolute: np.ndarray) -> dict[str, float]:
    if not len(relative):
        return dict(people=0, mpjpe_mm=np.nan, abs_mpjpe_mm=np.nan, pck150=np.nan, auc=np.nan)
    return dict(people=len(relative), mpjpe_mm=1000 * relative.mean(),
                abs_mpjpe_mm=1000 * absolute.mean(),
                pck150=100 * (relative <= PCK_THRESHOLD_M).mean(),
                auc=100 * np.mean([(relative <= t).mean() for t in AUC_THRESHOLDS_M]))


def markdown_table(summary: dict[str, dict[str, float]], name: str = 'model') -> str:
    lines = ['| model | subset | people | MPJPE (mm) | abs. MPJPE (mm) | PCK@150 (%) | AUC (%) |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for subset, m in summary.items():
        lines.append(f'| {name} | {subset} | {m["people"]} | {m["mpjpe_mm"]:.1f} | '
                     f'{m["abs_mpjpe_mm"]:.1f} | {m["pck150"]:.1f} | {m["auc"]:.1f} |')
    return '\n'.join(lines) + '\n'


def write_report(result: EvaluationResult, out_dir: str | Path, name: str = 'model') -> Path:
    """table.md, summary.json and plots (per-joint error, PCK curve, error vs truncation)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    (out / 'table.md').write_text(markdown_table(summary, name))
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].bar(result.joint_names, 1000 * result.relative.mean(axis=0))
    axes[0].set_ylabel('MPJPE (mm)')
    axes[0].tick_params(axis='x', rotation=90)
    axes[0].set_title('error per joint')
    curve = [(result.relative <= t).mean() * 100 for t in AUC_THRESHOLDS_M]
    axes[1].plot(1000 * AUC_THRESHOLDS_M, curve)
    axes[1].set_xlabel('threshold (mm)')
    axes[1].set_ylabel('PCK (%)')
    axes[1].set_title('PCK curve')
    fraction = result.truncated.mean(axis=1)
    axes[2].scatter(fraction, 1000 * result.relative.mean(axis=1), s=8)
    axes[2].set_xlabel('fraction of joints outside the image')
    axes[2].set_ylabel('MPJPE (mm)')
    axes[2].set_title('error vs truncation')
    figure.tight_layout()
    figure.savefig(out / 'plots.png', dpi=100)
    plt.close(figure)
    return out


def main(argv=None) -> int:
    from metrabs_ros.data.dataset import load_sample
    from metrabs_ros.estimator import PoseEstimator
    from metrabs_ros.weights import load_model
    parser = argparse.ArgumentParser(prog='metrabs-eval', description=__doc__)
    parser.add_argument('--model', type=Path, required=True)
    parser.add_argument('--data', type=Path, required=True, help='dataset from metrabs-synth')
    parser.add_argument('--out', type=Path, default=Path('eval'))
    parser.add_argument('--num-aug', type=int, default=1)
    parser.add_argument('--max-samples', type=int, default=None)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--detector', type=Path, default=None,
                        help='also report this detector\'s box AP@0.5 (threshold 0.05)')
    args = parser.parse_args(argv)
    model = load_model(args.model)
    estimator = PoseEstimator(model, device=args.device)
    count = json.loads((args.data / 'index.json').read_text())['count']
    count = min(count, args.max_samples or count)
    skeleton = model.output_skeletons.skeletons[model.output_skeletons.default]

    def estimate(sample: Sample) -> np.ndarray:
        return estimator.estimate_poses(sample.image, sample.boxes, sample.camera,
                                        num_aug=args.num_aug).poses3d

    result = evaluate(estimate, (load_sample(args.data, i) for i in range(count)),
                      skeleton.joint_names)
    write_report(result, args.out, args.model.name)
    print((args.out / 'table.md').read_text())
    if args.detector is not None:
        from metrabs_ros.detection import load_detector
        detector = load_detector(args.detector)
        ap = detector_average_precision(lambda image: detector(image, threshold=0.05),
                                        (load_sample(args.data, i) for i in range(count)))
        (args.out / 'detector.json').write_text(json.dumps(
            dict(detector=str(args.detector), ap50=ap, images=count), indent=2))
        print(f'detector {args.detector}: box AP@0.5 = {100 * ap:.1f} % on {count} images')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
