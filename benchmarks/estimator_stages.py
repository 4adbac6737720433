"""Estimator cost per image, split by stage (detector, cropping, model, post-processing), for
scenes with 1, 3 and 10 people and num_aug 1 and 5, and the cost per person relative to one.

Scenes are rendered by the synthetic generator (needs the [data] extra: pybullet); the bundled
model and detector run on them, with the detector's boxes (its threshold lowered so that every
scene yields people).

    python benchmarks/estimator_stages.py [--model DIR] [--detector SPEC] [--device auto]
        [--people 1 3 10] [--num-aug 1 5] [--images 5]
"""
from __future__ import annotations

import argparse
import time


from _common import load_pose_model, machine, resolve

STAGES = ('detector', 'cropping', 'model', 'post-processing')


def scenes(n_people: int, count: int):
    from metrabs_ros.data.generator import TEST_CLIPS, GeneratorConfig, SyntheticGenerator
    config = GeneratorConfig(people=(n_people, n_people), camera_distance_m=(5.0, 8.0),
                             truncation_probability=0.0, occluder_probability=0.0,
                             min_visible_pixels=50)
    generator = SyntheticGenerator(TEST_CLIPS, seed=n_people, config=config)
    try:
        return [generator.sample(i) for i in range(count)]
    finally:
        generator.close()


def main(argv=None) -> None:
    from metrabs_ros.bundled import DEFAULT_DETECTOR
    from metrabs_ros.detection import load_detector
    from metrabs_ros.estimator import PoseEstimator
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default=None, help='model directory (default: bundled)')
    parser.add_argument('--detector', default=None, help='detector (default: bundled)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--people', type=int, nargs='+', default=[1, 3, 10])
    parser.add_argument('--num-aug', type=int, nargs='+', default=[1, 5])
    parser.add_argument('--images', type=int, default=5, help='images per scene size')
    args = parser.parse_args(argv)
    device = resolve(args.device)
    estimator = PoseEstimator(load_pose_model(args.model),
                              load_detector(args.detector or DEFAULT_DETECTOR), device=device)
    timer = estimator.timer
    print(f'machine: {machine()}')
    print(f'model {estimator.model.config.backbone} crop {estimator.model.config.crop_side}, '
          f'device {device}; ms per image (mean over {args.images} images)')
    print('| people in scene | people found | num_aug | detector | cropping | model | '
          'post-processing | total | per person | per person vs 1 person |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    per_person_one = {}
    for n_people in args.people:
        images = scenes(n_people, args.images)
        for num_aug in args.num_aug:
            estimator.detect_poses(images[0].image, images[0].camera, num_aug=num_aug)  # warm
            timer.reset()
            timer.enabled = True
            found, start = 0, time.perf_counter()
            for sample in images:
                result = estimator.detect_poses(sample.image, sample.camera, num_aug=num_aug,
                                                detector_threshold=0.1,
                                                suppress_implausible_poses=False)
                found += len(result)
            total = 1000 * (time.perf_counter() - start) / len(images)
            timer.enabled = False
            stages = [1000 * timer.seconds.get(s, 0.0) / len(images) for s in STAGES]
            people = found / len(images)
            per_person = total / max(people, 1e-9)
            per_person_one.setdefault(num_aug, per_person)
            print(f'| {n_people} | {people:.1f} | {num_aug} | ' +
                  ' | '.join(f'{v:.1f}' for v in stages) +
                  f' | {total:.1f} | {per_person:.1f} | '
                  f'{per_person / per_person_one[num_aug]:.2f} |')


if __name__ == '__main__':
    main()
