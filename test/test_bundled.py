"""The bundled default model and detector: size, and accuracy on held-out synthetic people."""
import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
from metrabs_ros.bundled import (DEFAULT_DETECTOR, DEFAULT_MODEL, SAMPLE_SEQUENCE,  # noqa: E402
                                 model_and_detector)
from metrabs_ros.camera import Camera  # noqa: E402
from metrabs_ros.data.generator import TEST_CLIPS, SyntheticGenerator  # noqa: E402
from metrabs_ros.detection import load_detector  # noqa: E402
from metrabs_ros.estimator import PoseEstimator  # noqa: E402
from metrabs_ros.model import Metrabs  # noqa: E402
from metrabs_ros.train.evaluate import (MeanPoseBaseline, detector_report,  # noqa: E402
                                        evaluate, poses_in_box_order)
from metrabs_ros.weights import load_model  # noqa: E402

# Bounds measured on these samples (README, "Bundled default model"), with margin.
MPJPE_BOUND_MM = 220.0  # measured 200.2 (mean pose of these people 334.2, untrained 482.5)
PA_MPJPE_BOUND_MM = 160.0  # measured 148.5 (mean pose 219.2, untrained 393.3)
ABS_MPJPE_BOUND_MM = 600.0  # measured 537.2 (mean pose 1567.8, untrained 5245.8)
AP50_BOUND = 0.70  # measured 0.797
FALSE_POSITIVES_BOUND = 0.4  # per image at score 0.3; measured 0.17


@pytest.fixture(scope='module')
def samples():
    """Held-out samples as the test set stores them: ground truth in the camera frame, so the
    camera has no extrinsics (with them the estimator would answer in the world frame)."""
    generator = SyntheticGenerator(TEST_CLIPS, seed=2024)  # not the README test set's seed
    result = [generator.sample(i) for i in range(30)]
    generator.close()
    return [dataclasses.replace(s, camera=Camera(K=s.camera.K, image_size=s.camera.image_size,
                                                 distortion_coeffs=s.camera.distortion_coeffs))
            for s in result]


def test_bundle_fits_in_25_mb_and_is_the_default():
    size = sum(f.stat().st_size for d in (DEFAULT_MODEL, DEFAULT_DETECTOR) for f in d.iterdir())
    assert size <= 25e6
    assert model_and_detector('', '') == (DEFAULT_MODEL, DEFAULT_DETECTOR)
    assert model_and_detector('/my/model', '') == (DEFAULT_MODEL.__class__('/my/model'), None)
    assert (SAMPLE_SEQUENCE / 'index.json').is_file()


def test_bundled_model_beats_the_mean_pose_and_an_untrained_model(samples):
    model = load_model(DEFAULT_MODEL)
    torch.manual_seed(0)
    untrained = Metrabs(model.config)
    names = model.output_skeletons.skeletons[model.output_skeletons.default].joint_names
    summaries = {}
    for name, candidate in (('bundled', model), ('untrained', untrained)):
        estimator = PoseEstimator(candidate, device='cpu')

        def estimate(sample):
            result = estimator.estimate_poses(sample.image, sample.boxes, sample.camera,
                                              num_aug=1)
            return poses_in_box_order(result.boxes, result.poses3d, sample.boxes)
        summaries[name] = evaluate(estimate, samples, names).summary()['all']
    # the constant baseline: the mean pose of these very people (a constant fitted to them)
    mean_pose = MeanPoseBaseline.from_poses(np.concatenate([s.joints3d for s in samples]),
                                            'the test people')
    summaries['mean pose'] = evaluate(mean_pose.estimate, samples, names).summary()['all']
    bundled, untrained, constant = (summaries[k] for k in ('bundled', 'untrained', 'mean pose'))
    assert bundled['people'] >= 40 and bundled['skipped'] <= 2
    assert bundled['mpjpe_mm'] < MPJPE_BOUND_MM
    assert bundled['pa_mpjpe_mm'] < PA_MPJPE_BOUND_MM
    assert bundled['abs_mpjpe_mm'] < ABS_MPJPE_BOUND_MM
    assert bundled['pa_mpjpe_mm'] < 0.9 * constant['pa_mpjpe_mm']
    assert bundled['abs_mpjpe_mm'] < constant['abs_mpjpe_mm']
    assert bundled['mpjpe_mm'] < 0.75 * untrained['mpjpe_mm']
    assert bundled['abs_mpjpe_mm'] < 0.3 * untrained['abs_mpjpe_mm']


def test_bundled_detector_finds_the_held_out_people(samples):
    detector = load_detector(DEFAULT_DETECTOR)
    report = detector_report(lambda image: detector(image, threshold=0.05), samples, 0.3)
    assert report['ap50'] > AP50_BOUND
    assert report['false_positives_per_image'] < FALSE_POSITIVES_BOUND
    found = detector(samples[0].image)
    assert found.shape[1] == 5 and np.all(found[:, 4] >= 0.3)


def test_default_suppression_keeps_the_sample_sequences_people():
    """The node's path with the bundle's own plausibility settings (ModelConfig rules and
    box_coverage) and default suppression keeps at least 95 % of the true people."""
    from metrabs_ros.data.dataset import load_sample
    from metrabs_ros.train.metrics import box_iou
    estimator = PoseEstimator(load_model(DEFAULT_MODEL), load_detector(DEFAULT_DETECTOR),
                              device='cpu')
    kept = total = 0
    for index in range(json.loads((SAMPLE_SEQUENCE / 'index.json').read_text())['count']):
        sample = load_sample(SAMPLE_SEQUENCE, index)
        result = estimator.detect_poses(sample.image, sample.camera, num_aug=1)
        total += len(sample.boxes)
        if len(result.boxes):
            kept += int((box_iou(sample.boxes, result.boxes[:, :4]).max(axis=1) >= 0.5).sum())
    assert total >= 20 and kept >= 0.95 * total


def test_command_line_uses_the_bundled_model_and_detector(tmp_path):
    from metrabs_ros.cli import main
    image = SAMPLE_SEQUENCE / '000005.jpg'
    assert main([str(image), '--output', str(tmp_path), '--num-aug', '1', '--device', 'cpu',
                 '--no-overlay', '--keep-implausible']) == 0
    frames = json.loads((tmp_path / 'poses.json').read_text())['frames']
    assert len(frames) == 1 and len(frames[0]['ids']) >= 1
