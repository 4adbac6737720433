"""Measure a centre-point detector at several input sides on a validation set, to choose the
side the bundle runs it at (scripts/bundle_defaults.py --detector-input-side). The network is
fully convolutional: a larger side shows small people larger, at more cost and, past a point,
more false positives. Choose on a validation set (e.g. `metrabs-synth DIR --split train`), not
on the test set you report.

    python scripts/choose_detector_input_side.py DETECTOR_DIR DATA_DIR [--sides 320 384 416 ...]
"""
import argparse
import dataclasses
import time

from metrabs_ros.centre_detector import CentreNetDetector, load_centre_net
from metrabs_ros.data.dataset import dataset_size, load_sample
from metrabs_ros.detection import DEFAULT_THRESHOLD
from metrabs_ros.train.evaluate import detector_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('detector')
    parser.add_argument('data')
    parser.add_argument('--sides', type=int, nargs='+', default=[320, 384, 416, 448, 480, 512])
    parser.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument('--max-samples', type=int, default=0)
    args = parser.parse_args()
    count = dataset_size(args.data)
    count = min(count, args.max_samples) if args.max_samples else count
    samples = [load_sample(args.data, i) for i in range(count)]
    print(f'{count} images, {sum(len(s.boxes) for s in samples)} people; '
          f'recall and false positives at score >= {args.threshold}')
    print('| input side | AP@0.5 (%) | recall (%) | false positives per image | ms per image |')
    print('| ---: | ---: | ---: | ---: | ---: |')
    for side in args.sides:
        network = load_centre_net(args.detector)
        network.config = dataclasses.replace(network.config, input_side=side)
        detector = CentreNetDetector(network)
        report = detector_report(lambda image: detector(image, threshold=0.05), samples,
                                 args.threshold)
        start = time.perf_counter()
        for sample in samples[:20]:
            detector(sample.image, threshold=args.threshold)
        milliseconds = (time.perf_counter() - start) / min(20, count) * 1000
        print(f"| {side} | {report['ap50'] * 100:.1f} | {report['recall'] * 100:.1f} | "
              f"{report['false_positives_per_image']:.3f} | {milliseconds:.1f} |")


if __name__ == '__main__':
    main()
