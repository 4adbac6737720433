import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
import torch  # noqa: E402

from metrabs_ros.data.dataset import write_dataset  # noqa: E402
from metrabs_ros.data.generator import (TEST_CLIPS, TRAIN_CLIPS, GeneratorConfig,  # noqa: E402
                                        SyntheticGenerator)
from metrabs_ros.model import Metrabs, ModelConfig  # noqa: E402
from metrabs_ros.skeletons import get_skeleton  # noqa: E402
from metrabs_ros.train.evaluate import (MeanPoseBaseline, detector_report,  # noqa: E402
                                        evaluate, main, write_report)
from metrabs_ros.weights import save_checkpoint  # noqa: E402

SKELETON = get_skeleton('humanoid_15')
SMALL = GeneratorConfig(image_size=(320, 240), min_visible_pixels=40)


@pytest.fixture(scope='module')
def samples():
    generator = SyntheticGenerator(TEST_CLIPS, seed=4, config=SMALL)
    result = [generator.sample(i) for i in range(5)]
    generator.close()
    return result


def test_perfect_and_known_errors(samples, tmp_path):
    perfect = evaluate(lambda s: s.joints3d, samples, SKELETON.joint_names)
    summary = perfect.summary()['all']
    assert summary['mpjpe_mm'] == 0 and summary['abs_mpjpe_mm'] == 0
    assert summary['pa_mpjpe_mm'] == pytest.approx(0, abs=1e-6)
    assert summary['pck150'] == 100 and summary['auc'] == 100
    # Every pose shifted by 10 cm and one joint moved 20 cm: relative errors 20 cm on that joint.
    def estimate(sample):
        poses = sample.joints3d + [0.1, 0, 0]
        poses[:, 5] += [0, 0.2, 0]
        return poses
    shifted = evaluate(estimate, samples, SKELETON.joint_names).summary()['all']
    assert shifted['mpjpe_mm'] == pytest.approx(200 / 15)
    assert shifted['pck150'] == pytest.approx(100 * 14 / 15)
    assert shifted['abs_mpjpe_mm'] > 100
    # Procrustes alignment (least squares) spreads the one joint's error over all joints.
    assert 0 < shifted['pa_mpjpe_mm'] < 200
    # Scaled, rotated and moved poses: only the Procrustes-aligned error is zero.
    turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    similar = evaluate(lambda s: 1.3 * s.joints3d @ turn.T + [0.2, 0, 1], samples,
                       SKELETON.joint_names).summary()['all']
    assert similar['mpjpe_mm'] > 100 and similar['pa_mpjpe_mm'] == pytest.approx(0, abs=1e-6)
    # Per motion clip: a pose error on one clip's people shows in that clip's row alone.
    clips = sorted({c for s in samples for c in s.clips})
    assert len(clips) > 1
    def wrong_on_first_clip(sample):
        return sample.joints3d + 0.1 * np.array([c == clips[0] for c in sample.clips],
                                                float)[:, None, None] * (np.arange(15) == 3)[:, None]
    per_clip = evaluate(wrong_on_first_clip, samples, SKELETON.joint_names).summary()
    assert per_clip[f'clip {clips[0]}']['mpjpe_mm'] == pytest.approx(100 / 15 * np.sqrt(3))
    assert all(per_clip[f'clip {c}']['mpjpe_mm'] == 0 for c in clips[1:])
    assert sum(per_clip[f'clip {c}']['people'] for c in clips) == per_clip['all']['people']
    # The result keeps each person's clip, frame and poses, in step when a subset is taken.
    result = evaluate(wrong_on_first_clip, samples, SKELETON.joint_names)
    first = result.subset(np.array(result.clips) == clips[0])
    assert first.summary()['all'] == pytest.approx(dict(per_clip[f'clip {clips[0]}'], skipped=0))
    assert set(first.clips) == {clips[0]} and len(first.frames) == len(first.poses)
    np.testing.assert_allclose(
        np.linalg.norm(first.poses - first.true_poses, axis=-1), first.relative, atol=1e-12)
    assert result.frames == tuple(f for s in samples for f in s.frames)
    out = write_report(perfect, tmp_path / 'report', 'oracle')
    assert '| oracle | all |' in (out / 'table.md').read_text()
    assert 'baseline' not in json.loads((out / 'summary.json').read_text())
    assert (out / 'plots.png').stat().st_size > 10_000


def test_mean_pose_baseline(samples, tmp_path):
    poses = np.concatenate([s.joints3d for s in samples])
    baseline = MeanPoseBaseline.from_poses(poses, 'these samples')
    np.testing.assert_allclose(baseline.pose, (poses - poses[:, :1]).mean(0))
    assert baseline.pose[0] == pytest.approx([0, 0, 0])
    assert baseline.root_depth_m == pytest.approx(poses[:, 0, 2].mean())
    assert baseline.source == f'these samples ({len(poses)} people)'
    # Everyone gets the same root-relative pose, its root on the ray through the box centre.
    estimated = baseline.estimate(samples[0])
    assert estimated.shape == samples[0].joints3d.shape
    np.testing.assert_allclose(estimated - estimated[:, :1], np.broadcast_to(
        baseline.pose, estimated.shape), atol=1e-12)
    np.testing.assert_allclose(estimated[:, 0, 2], baseline.root_depth_m)
    centres = samples[0].boxes[:, :2] + samples[0].boxes[:, 2:] / 2
    np.testing.assert_allclose(samples[0].camera.project(estimated[:, 0]), centres, atol=1e-3)
    result = evaluate(baseline.estimate, samples, SKELETON.joint_names)
    perfect = evaluate(lambda s: s.joints3d, samples, SKELETON.joint_names)
    out = write_report(perfect, tmp_path / 'report', 'oracle', (result, baseline))
    table = (out / 'table.md').read_text()
    assert '| oracle | all |' in table and '| mean pose | all |' in table
    assert '| mean pose | truncated |' in table and 'PA-MPJPE (mm)' in table
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['baseline']['source'] == baseline.source
    assert summary['baseline']['all']['mpjpe_mm'] == pytest.approx(
        result.summary()['all']['mpjpe_mm'])
    assert summary['baseline']['all']['mpjpe_mm'] > 100 and summary['all']['mpjpe_mm'] == 0


def give_first_person_an_uncroppable_box(directory: Path) -> None:
    """Sample 0's first person gets the whole image as box, and the camera a barrel distortion
    that cannot be inverted at the image corners (the distorted radius there lies beyond the
    model's largest): the crop code must refuse that box."""
    path = directory / '000000.npz'
    data = dict(np.load(path))
    K = data['K']
    corner = np.hypot(*(K[:2, 2] / np.diag(K)[:2]))  # normalized radius of the (0, 0) corner
    # r (1 + k1 r^2) peaks at 2 / (3 sqrt(-3 k1)); put that peak at 0.8 of the corner's radius
    k1 = -(2 / (3 * 0.8 * corner)) ** 2 / 3
    data['distortion'] = np.array([k1, 0, 0, 0, 0], float)
    data['boxes'][0] = [0, 0, 2 * K[0, 2], 2 * K[1, 2]]
    np.savez_compressed(path, **data)


def test_cli_on_a_written_test_set(tmp_path, capsys):
    write_dataset(tmp_path / 'test', 2, TEST_CLIPS, seed=6, config=SMALL)
    give_first_person_an_uncroppable_box(tmp_path / 'test')
    write_dataset(tmp_path / 'train', 2, TRAIN_CLIPS, seed=7, config=SMALL)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='humanoid_15', crop_side=64)
    save_checkpoint(Metrabs(cfg), tmp_path / 'untrained')
    common = ['--model', str(tmp_path / 'untrained'), '--data', str(tmp_path / 'test'),
              '--device', 'cpu']
    assert main(common + ['--out', str(tmp_path / 'eval'),
                          '--baseline-from', str(tmp_path / 'train')]) == 0
    summary = json.loads((tmp_path / 'eval' / 'summary.json').read_text())
    assert summary['all']['people'] >= 2 and np.isfinite(summary['all']['mpjpe_mm'])
    assert np.isfinite(summary['all']['pa_mpjpe_mm'])
    assert summary['baseline']['all']['people'] == summary['all']['people']
    # the person whose box corners lie where the lens distortion cannot be inverted cannot be
    # cropped: counted as skipped, and left out of both rows
    assert summary['all']['skipped'] == 1 and summary['all']['people'] == 2
    assert summary['baseline']['source'].startswith(str(tmp_path / 'train'))
    output = capsys.readouterr().out
    assert '| untrained | all |' in output and '| mean pose | all |' in output
    # Without a training set, the baseline is the mean of the evaluated people, and says so.
    assert main(common + ['--out', str(tmp_path / 'eval_oracle')]) == 0
    summary = json.loads((tmp_path / 'eval_oracle' / 'summary.json').read_text())
    assert summary['baseline']['source'].startswith('oracle: the evaluated people')


def test_detector_report_of_ground_truth_and_shifted_boxes(samples):
    by_image = {id(s.image): s for s in samples}

    def exact(image):
        boxes = by_image[id(image)].boxes
        return np.concatenate([boxes, np.ones((len(boxes), 1))], axis=1)

    def shifted(image):  # every box moved by its own width: IoU 0
        found = exact(image)
        found[:, 0] += found[:, 2]
        return found

    perfect = detector_report(exact, samples, threshold=0.3)
    assert perfect['ap50'] == pytest.approx(1.0) and perfect['recall'] == pytest.approx(1.0)
    assert perfect['false_positives_per_image'] == 0
    wrong = detector_report(shifted, samples, threshold=0.3)
    people = sum(len(s.boxes) for s in samples)
    assert wrong['ap50'] == pytest.approx(0.0) and wrong['recall'] == 0
    assert wrong['false_positives_per_image'] == pytest.approx(people / len(samples))
    assert wrong['people'] == people and wrong['images'] == len(samples)
    assert detector_report(shifted, samples, threshold=2.0)['false_positives_per_image'] == 0


def test_crop_comparison_of_metro_and_25d_models(samples):
    from metrabs_ros.train.baseline_25d import Heatmap25D, compare_on_crops
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='humanoid_15', crop_side=64,
                      input_normalization='imagenet')
    result = compare_on_crops(dict(metro=Metrabs(cfg).eval(), baseline=Heatmap25D(cfg).eval()),
                              samples, SKELETON.mirror)
    people = sum(len(s.boxes) for s in samples)
    for row in result.values():
        assert row['crops'] == people
        assert 0 <= row['truncated_crops'] <= people
        assert row['mpjpe_mm'] > 0 and np.isfinite(row['mpjpe_mm'])
    assert result['metro']['mpjpe_mm'] != result['baseline']['mpjpe_mm']


@pytest.fixture(scope='module')
def script_inputs(tmp_path_factory):
    """A small test set, a training set for the mean pose and an untrained model, as the
    argument list of the scripts built on evaluate_model_and_mean_pose."""
    root = tmp_path_factory.mktemp('script_inputs')
    write_dataset(root / 'test', 3, TEST_CLIPS, seed=6, config=SMALL)
    write_dataset(root / 'train', 2, TRAIN_CLIPS, seed=7, config=SMALL)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='humanoid_15', crop_side=64)
    save_checkpoint(Metrabs(cfg), root / 'untrained')
    return root, ['--model', str(root / 'untrained'), '--data', str(root / 'test'),
                  '--baseline-from', str(root / 'train')]


def test_errors_by_torso_tilt_script(script_inputs, tmp_path, capsys):
    """scripts/error_by_tilt.py: clip rows' torso tilts (a walk is upright, a crawl lies), and
    on a written test set its groups split the evaluated people, for model and mean pose."""
    import sys
    sys.path.insert(0, str(Path(__file__).parents[1] / 'scripts'))
    import error_by_tilt
    from metrabs_ros.data.humanoid import Humanoid
    humanoid = Humanoid()
    assert error_by_tilt.torso_tilt_degrees(humanoid, 'walk', 0) < 30
    assert 60 <= error_by_tilt.torso_tilt_degrees(humanoid, 'crawl', 0) < 120
    root, arguments = script_inputs
    assert error_by_tilt.main(arguments) == 0
    rows = [line.split(' | ') for line in capsys.readouterr().out.splitlines()
            if line.startswith(('| model |', '| mean pose |')) and '| people |' not in line]
    for name in ('model', 'mean pose'):
        people = {row[1]: int(row[2]) for row in rows if row[0] == f'| {name}'}
        assert set(people) == {'all'} | {group for group, _, _ in error_by_tilt.TILT_GROUPS}
        assert people['all'] >= 3 and sum(people.values()) == 2 * people['all']
    tilted = tmp_path / 'tilted'
    write_dataset(tilted, 1, TEST_CLIPS, seed=6,
                  config=GeneratorConfig(image_size=(320, 240), body_tilt_probability=0.5))
    with pytest.raises(SystemExit):
        error_by_tilt.main(['--model', str(root / 'untrained'), '--data', str(tilted),
                            '--baseline-from', str(root / 'train')])


def test_absolute_error_sources_script(script_inputs, capsys):
    """scripts/absolute_error_sources.py: the best scale about the camera centre removes a pure
    depth (size) error; the height-ambiguity floor is a few per cent of the camera distance and
    the same for every estimate of the same people; both estimates get rows."""
    import sys
    sys.path.insert(0, str(Path(__file__).parents[1] / 'scripts'))
    import absolute_error_sources as sources
    truth = np.random.default_rng(1).normal([0, 0, 5], 0.5, (4, 15, 3))
    np.testing.assert_allclose(sources.best_scale_errors(1.1 * truth, truth), 0, atol=1e-12)
    moved = truth + [0.3, 0, 0]
    assert (sources.best_scale_errors(moved, truth).mean() <=
            np.linalg.norm(moved - truth, axis=-1).mean())
    factor = sources.height_ambiguity_factor()
    assert 0.01 < factor < 0.1
    row = sources.sources(1.1 * truth, truth, factor)
    assert row['depth_ratio'] == pytest.approx(1.1) and row['depth_ratio_log_sd'] < 1e-9
    assert row['best_scale_mm'] < 1e-6 < row['abs_mpjpe_mm']
    assert sources.main(script_inputs[1]) == 0
    rows = [line.split(' | ') for line in capsys.readouterr().out.splitlines()
            if line.startswith(('| model |', '| mean pose |'))]
    floors = {(row[0], row[1]): float(row[-1].rstrip(' |')) for row in rows}
    assert {name for name, _ in floors} == {'| model', '| mean pose'}
    for (name, subset), floor in floors.items():
        assert floor == floors[('| model', subset)] > 0
    for row in rows:
        assert float(row[4]) <= float(row[3])  # best scale <= absolute error
