"""Evaluation on a synthetic test set (metrabs-eval): metrics table (Markdown) and plots (PNG).

Each person is estimated from its ground-truth box, so the numbers measure the pose model.
Rows: all people, and the truncated subset (people with at least one joint outside the image);
for the model and for the mean-pose baseline (MeanPoseBaseline), against which every number is to
be read. Columns: MPJPE (root-aligned), absolute MPJPE, PA-MPJPE (Procrustes-aligned), PCK@150 mm
and AUC. Units: millimetres in the table, metres in the arrays.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from metrabs_ros.data.generator import Sample
from metrabs_ros.detection import DEFAULT_THRESHOLD
from metrabs_ros.train.metrics import (AUC_THRESHOLDS_M, PCK_THRESHOLD_M, average_precision,
                                       joint_errors, matched_detections, procrustes_errors)

if TYPE_CHECKING:
    from metrabs_ros.estimator import PoseEstimator


BASELINE_NAME = 'mean pose'


@dataclass(frozen=True)
class EvaluationResult:
    """Per person (N) and joint (J): relative, absolute and Procrustes-aligned errors (metres),
    truncation flags; skipped: people the estimator could not serve (not in the errors); clips,
    frames: each person's motion clip and frame (empty: unknown); poses, true_poses: (N, J, 3)
    estimated and true camera-frame poses (None: not kept)."""

    relative: np.ndarray
    absolute: np.ndarray
    procrustes: np.ndarray
    truncated: np.ndarray
    joint_names: tuple[str, ...]
    skipped: int = 0
    clips: tuple[str, ...] = ()
    frames: tuple[int, ...] = ()
    poses: np.ndarray | None = None
    true_poses: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> 'EvaluationResult':
        """The people where the (N,) boolean mask is True (skipped: 0)."""
        def pick(values):
            return None if values is None else np.asarray(values)[mask]
        return dataclasses.replace(
            self, relative=self.relative[mask], absolute=self.absolute[mask],
            procrustes=self.procrustes[mask], truncated=self.truncated[mask], skipped=0,
            clips=tuple(pick(self.clips).tolist()) if self.clips else (),
            frames=tuple(pick(self.frames).tolist()) if self.frames else (),
            poses=pick(self.poses), true_poses=pick(self.true_poses))

    def summary(self) -> dict[str, dict[str, float]]:
        """{'all': metrics, 'truncated': metrics}, and {'clip NAME': metrics} per motion clip
        where the people come from several; metrics in mm and % (NaN when empty)."""
        subsets = dict(all=np.ones(len(self.relative), bool),
                       truncated=self.truncated.any(axis=1))
        clips = np.asarray(self.clips)
        if len(set(self.clips)) > 1:
            subsets.update({f'clip {name}': clips == name for name in sorted(set(self.clips))})
        result = {name: _metrics(self.relative[mask], self.absolute[mask], self.procrustes[mask])
                  for name, mask in subsets.items()}
        result['all']['skipped'] = self.skipped
        return result


@dataclass(frozen=True)
class MeanPoseBaseline:
    """The same constant pose for everyone: the mean root-relative pose (camera frame) of a set of
    people. For absolute errors it is placed with its root on the viewing ray through the centre
    of each person's box, at the mean root depth of that set (knowing only where the box is)."""

    pose: np.ndarray  # (J, 3) root-relative, metres
    root_depth_m: float
    source: str  # what the mean was computed from

    @classmethod
    def from_poses(cls, poses: np.ndarray, source: str, root: int = 0) -> 'MeanPoseBaseline':
        """From (N, J, 3) camera-frame poses; `source` names where they come from."""
        if not len(poses):
            raise ValueError(f'no people in {source}')
        relative = poses - poses[:, root:root + 1]
        return cls(relative.mean(axis=0), float(poses[:, root, 2].mean()),
                   f'{source} ({len(poses)} people)')

    @classmethod
    def from_dataset(cls, directory: Path, count: int | None = None,
                     source: str | None = None) -> 'MeanPoseBaseline':
        """From the first `count` (default all) samples of a metrabs-synth dataset."""
        from metrabs_ros.data.dataset import dataset_size
        count = count or dataset_size(directory)
        poses = []
        for index in range(count):
            with np.load(directory / f'{index:06d}.npz') as data:
                poses.append(data['joints3d'])
        return cls.from_poses(np.concatenate(poses), source or str(directory))

    def estimate(self, sample: Sample) -> np.ndarray:
        """(P, J, 3) poses for the sample's boxes (estimate function for `evaluate`)."""
        centres = sample.boxes[:, :2] + sample.boxes[:, 2:] / 2
        rays = sample.camera.undistort_pixels(centres)
        pinhole = np.linalg.solve(sample.camera.K[:2, :2], (centres - sample.camera.K[:2, 2]).T).T
        rays = np.where(np.isfinite(rays), rays, pinhole)  # where distortion cannot be inverted
        roots = self.root_depth_m * np.concatenate([rays, np.ones((len(rays), 1))], axis=1)
        return roots[:, None] + self.pose


def evaluate(estimate: Callable[[Sample], np.ndarray], samples: Iterable[Sample],
             joint_names, root: int = 0) -> EvaluationResult:
    """estimate(sample) -> (P, J, 3) camera-frame poses for the sample's people, in order; a
    person's pose is NaN where the estimator could not serve it (counted as skipped)."""
    relative, absolute, procrustes, truncated, clips, frames, skipped = [], [], [], [], [], [], 0
    poses, true_poses = [], []
    for sample in samples:
        if not len(sample.joints3d):
            continue
        predicted = np.asarray(estimate(sample))
        served = served_people(predicted)
        skipped += int((~served).sum())
        predicted, truth = predicted[served], sample.joints3d[served]
        relative.append(joint_errors(predicted, truth, root))
        absolute.append(joint_errors(predicted, truth, absolute=True))
        procrustes.append(procrustes_errors(predicted, truth))
        truncated.append(sample.truncated[served])
        clips += [str(clip) for clip, kept in zip(sample.clips, served) if kept]
        frames += [int(frame) for frame, kept in zip(sample.frames, served) if kept]
        poses.append(predicted)
        true_poses.append(truth)
    if not relative:
        raise ValueError('no people to evaluate')
    return EvaluationResult(np.concatenate(relative), np.concatenate(absolute),
                            np.concatenate(procrustes), np.concatenate(truncated),
                            tuple(joint_names), skipped, tuple(clips), tuple(frames),
                            np.concatenate(poses), np.concatenate(true_poses))


def evaluate_dataset(estimator: 'PoseEstimator', data: str | Path, baseline: MeanPoseBaseline,
                     count: int | None = None,
                     num_aug: int = 1) -> tuple[EvaluationResult, EvaluationResult]:
    """A PoseEstimator's result on the first `count` (default all) samples of a metrabs-synth
    set, each person estimated from its ground-truth box, and the mean-pose baseline's result on
    the same people (those the estimator served)."""
    from metrabs_ros.data.dataset import dataset_size, load_sample
    count = min(dataset_size(data), count or dataset_size(data))
    model = estimator.model
    joint_names = model.output_skeletons.skeletons[model.output_skeletons.default].joint_names
    served = []  # per sample: which people the model served

    def estimate(sample: Sample) -> np.ndarray:
        result = estimator.estimate_poses(sample.image, sample.boxes, sample.camera,
                                          num_aug=num_aug)
        poses = poses_in_box_order(result.boxes, result.poses3d, sample.boxes)
        served.append(served_people(poses))
        return poses

    result = evaluate(estimate, (load_sample(data, i) for i in range(count)), joint_names)
    baseline_result = evaluate(on_served_people(served, baseline.estimate),
                               (load_sample(data, i) for i in range(count)), joint_names)
    return result, baseline_result


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of evaluate_model_and_mean_pose, for scripts that break its figures down:
    --model, --data, --baseline-from, --max-samples, --num-aug."""
    parser.add_argument('--model', type=Path, required=True)
    parser.add_argument('--data', type=Path, required=True, help='metrabs-synth test set')
    parser.add_argument('--baseline-from', type=Path, required=True, metavar='TRAIN_SET')
    parser.add_argument('--max-samples', type=int, default=None)
    parser.add_argument('--num-aug', type=int, default=1)


def evaluate_model_and_mean_pose(args: argparse.Namespace) -> dict[str, EvaluationResult]:
    """{'model': result, BASELINE_NAME: result} for add_evaluation_arguments' arguments: the
    model directory on CPU and the training set's mean pose, on the same people
    (evaluate_dataset)."""
    from metrabs_ros.estimator import PoseEstimator
    from metrabs_ros.weights import load_model
    results = evaluate_dataset(PoseEstimator(load_model(args.model), device='cpu'), args.data,
                               MeanPoseBaseline.from_dataset(args.baseline_from),
                               args.max_samples, args.num_aug)
    return dict(zip(('model', BASELINE_NAME), results))


def poses_in_box_order(result_boxes: np.ndarray, poses: np.ndarray,
                       boxes: np.ndarray) -> np.ndarray:
    """(B, J, 3) poses in the order of the given boxes (B, 4), NaN for the boxes the estimator
    skipped (result_boxes (P, 4+) are the boxes it kept, with their poses (P, J, 3))."""
    ordered = np.full((len(boxes),) + poses.shape[1:], np.nan)
    for box, pose in zip(result_boxes, poses):
        ordered[np.argmin(np.abs(np.asarray(boxes) - box[:4]).sum(axis=1))] = pose
    return ordered


def served_people(poses: np.ndarray) -> np.ndarray:
    """(P,) True for the people of (P, J, 3) poses that have a pose (not NaN)."""
    return ~np.isnan(poses).any(axis=(1, 2))


def on_served_people(served: Iterable[np.ndarray],
                     estimate: Callable[[Sample], np.ndarray]) -> Callable[[Sample], np.ndarray]:
    """`estimate` restricted, sample after sample, to the people another estimator served
    (served: its served_people masks in evaluation order); NaN for the others, so that a
    baseline is measured on the same people as the model."""
    masks = iter(served)

    def restricted(sample: Sample) -> np.ndarray:
        return np.where(next(masks)[:, None, None], estimate(sample), np.nan)
    return restricted


def detector_report(detect: Callable[[np.ndarray], np.ndarray], samples: Iterable[Sample],
                    threshold: float, iou_threshold: float = 0.5) -> dict[str, float]:
    """Box AP@iou_threshold of detect(image) -> (D, 5) [x, y, w, h, score] (run with a low
    score threshold) against the samples' boxes, and at the operating `threshold`: recall and
    false positives per image."""
    detections, truths = [], []
    for sample in samples:
        detections.append(detect(sample.image))
        truths.append(sample.boxes)
    scores, hits, n_true = matched_detections(detections, truths, iou_threshold)
    kept = scores >= threshold
    return dict(ap50=average_precision(detections, truths, iou_threshold),
                recall=float((hits & kept).sum() / n_true),
                false_positives_per_image=float((~hits & kept).sum() / len(truths)),
                threshold=threshold, images=len(truths), people=n_true)


def _metrics(relative: np.ndarray, absolute: np.ndarray,
             procrustes: np.ndarray) -> dict[str, float]:
    if not len(relative):
        return dict(people=0, mpjpe_mm=np.nan, abs_mpjpe_mm=np.nan, pa_mpjpe_mm=np.nan,
                    pck150=np.nan, auc=np.nan)
    return dict(people=len(relative), mpjpe_mm=1000 * relative.mean(),
                abs_mpjpe_mm=1000 * absolute.mean(), pa_mpjpe_mm=1000 * procrustes.mean(),
                pck150=100 * (relative <= PCK_THRESHOLD_M).mean(),
                auc=100 * np.mean([(relative <= t).mean() for t in AUC_THRESHOLDS_M]))


def markdown_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """One row per (name, subset) of {name: summary}."""
    header = ('| model | subset | people | MPJPE (mm) | abs. MPJPE (mm) | PA-MPJPE (mm) | PCK@150 (%) '
              '| AUC (%) |')
    lines = [header, '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, summary in rows.items():
        for subset, m in summary.items():
            lines.append(f'| {name} | {subset} | {m["people"]} | {m["mpjpe_mm"]:.1f} | '
                         f'{m["abs_mpjpe_mm"]:.1f} | {m["pa_mpjpe_mm"]:.1f} | {m["pck150"]:.1f} | '
                         f'{m["auc"]:.1f} |')
    return '\n'.join(lines) + '\n'


def write_report(result: EvaluationResult, out_dir: str | Path, name: str = 'model',
                 baseline: tuple[EvaluationResult, MeanPoseBaseline] | None = None) -> Path:
    """table.md, summary.json and plots (per-joint error, PCK curve, error vs truncation); with
    `baseline` (its result on the same people, and the baseline), its rows follow the model's
    and summary.json gets a 'baseline' entry {'source', 'all', 'truncated'}."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    rows = {name: summary}
    if baseline is not None:
        rows[BASELINE_NAME] = baseline[0].summary()
        summary = dict(summary, baseline=dict(source=baseline[1].source, **rows[BASELINE_NAME]))
    (out / 'table.md').write_text(markdown_table(rows))
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].bar(result.joint_names, 1000 * result.relative.mean(axis=0))
    axes[0].set_ylabel('MPJPE (mm)')
    axes[0].tick_params(axis='x', rotation=90)
    axes[0].set_title('error per joint')
    for label, errors in ((name, result.relative),) + (
            ((BASELINE_NAME, baseline[0].relative),) if baseline else ()):
        axes[1].plot(1000 * AUC_THRESHOLDS_M, [(errors <= t).mean() * 100 for t in AUC_THRESHOLDS_M],
                     label=label)
    axes[1].legend()
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
    from metrabs_ros.data.dataset import dataset_size, load_sample
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
                        help='also report this detector\'s box AP@0.5 (scores from 0.05), '
                             'and its recall and false positives per image at '
                             '--detector-threshold')
    parser.add_argument('--detector-threshold', type=float, default=DEFAULT_THRESHOLD,
                        help='operating score threshold (the node\'s detector_threshold default)')
    parser.add_argument('--baseline-from', type=Path, default=None, metavar='TRAIN_SET',
                        help='metrabs-synth training set (--split train) whose mean pose is the '
                             'mean-pose baseline; without it, the mean pose of the evaluated '
                             'people themselves (a constant fitted to the test set)')
    args = parser.parse_args(argv)
    estimator = PoseEstimator(load_model(args.model), device=args.device)
    count = min(dataset_size(args.data), args.max_samples or dataset_size(args.data))
    if args.baseline_from is None:
        baseline = MeanPoseBaseline.from_dataset(args.data, count,
                                                 f'oracle: the evaluated people of {args.data}')
    else:
        baseline = MeanPoseBaseline.from_dataset(args.baseline_from)
    result, baseline_result = evaluate_dataset(estimator, args.data, baseline, count,
                                               args.num_aug)
    write_report(result, args.out, args.model.name, (baseline_result, baseline))
    print((args.out / 'table.md').read_text())
    print(f'mean pose: {baseline.source}')
    if result.skipped:
        print(f'{result.skipped} people skipped: their boxes lie where the lens distortion '
              'cannot be inverted (both rows leave them out)')
    if args.detector is not None:
        from metrabs_ros.detection import load_detector
        detector = load_detector(args.detector)
        report = detector_report(lambda image: detector(image, threshold=0.05),
                                 (load_sample(args.data, i) for i in range(count)),
                                 args.detector_threshold)
        (args.out / 'detector.json').write_text(json.dumps(
            dict(detector=str(args.detector), **report), indent=2))
        print(f'detector {args.detector}: box AP@0.5 = {100 * report["ap50"]:.1f} % on {count} '
              f'images ({report["people"]} people); at score >= {args.detector_threshold}: '
              f'recall {100 * report["recall"]:.1f} %, '
              f'{report["false_positives_per_image"]:.2f} false positives per image')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
