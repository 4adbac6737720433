"""Copy trained runs into the package as the bundled defaults (float16) and render the sample
sequence. Usage: python scripts/bundle_defaults.py POSE_RUN_DIR DETECTOR_RUN_DIR
[--box-coverage F] [--no-rules] [--detector-input-side N] (the out_dir of metrabs-train and of
metrabs-train-detector).
--box-coverage: the box-consistency threshold for this joint set (ModelConfig.box_coverage;
from scripts/calibrate_box_coverage.py). --no-rules marks the model as one the plausibility
rules do not fit (ModelConfig.implausible_pose_rules): check with metrabs-demo (default
suppression) whether they keep its people first. --detector-input-side: the side the bundled
detector resizes images to (CentreNetConfig.input_side; the network is fully convolutional, so
it may differ from the side it trained at: choose it on a validation set,
scripts/choose_detector_input_side.py)."""
import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from metrabs_ros.bundled import (DEFAULT_DETECTOR, DEFAULT_MODEL, SAMPLE_SEQUENCE,
                                 SYNTHETIC_DOMAIN)
from metrabs_ros.centre_detector import load_centre_net, save_centre_net
from metrabs_ros.data.sequence import write_sequence
from metrabs_ros.weights import load_checkpoint, save_checkpoint


def main(pose_run: Path, detector_run: Path, rules: bool = True,
         box_coverage: float = 0.5, detector_input_side: int = 0) -> None:
    model = load_checkpoint(pose_run / 'model')
    model.config = dataclasses.replace(model.config, implausible_pose_rules=rules,
                                       box_coverage=box_coverage,
                                       training_domain=SYNTHETIC_DOMAIN)
    for directory in (DEFAULT_MODEL, DEFAULT_DETECTOR, SAMPLE_SEQUENCE):
        shutil.rmtree(directory, ignore_errors=True)
    save_checkpoint(model, DEFAULT_MODEL, dtype=torch.float16)
    detector = load_centre_net(detector_run / 'detector')
    if detector_input_side:
        detector.config = dataclasses.replace(detector.config, input_side=detector_input_side)
    save_centre_net(detector, DEFAULT_DETECTOR, dtype=torch.float16)
    write_sequence(SAMPLE_SEQUENCE)
    for directory in (DEFAULT_MODEL, DEFAULT_DETECTOR, SAMPLE_SEQUENCE):
        size = sum(f.stat().st_size for f in directory.iterdir())
        print(f'{directory}: {size / 1e6:.2f} MB')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('pose_run', type=Path)
    parser.add_argument('detector_run', type=Path)
    parser.add_argument('--box-coverage', type=float, default=0.5)
    parser.add_argument('--no-rules', action='store_true')
    parser.add_argument('--detector-input-side', type=int, default=0,
                        help="0: the detector run's own")
    args = parser.parse_args()
    main(args.pose_run, args.detector_run, rules=not args.no_rules,
         box_coverage=args.box_coverage, detector_input_side=args.detector_input_side)
