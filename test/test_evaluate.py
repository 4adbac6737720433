import json

import numpy as np
import pytest

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
import torch  # noqa: E402

from metrabs_ros.data.dataset import write_dataset  # noqa: E402
from metrabs_ros.data.generator import TEST_CLIPS, GeneratorConfig, SyntheticGenerator  # noqa: E402
from metrabs_ros.model import Metrabs, ModelConfig  # noqa: E402
from metrabs_ros.skeletons import get_skeleton  # noqa: E402
from metrabs_ros.train.evaluate import (detector_average_precision, evaluate, main,  # noqa: E402
                                        write_report)
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
    out = write_report(perfect, tmp_path / 'report', 'oracle')
    assert '| oracle | all |' in (out / 'table.md').read_text()
    assert (out / 'plots.png').stat().st_size > 10_000


def test_cli_on_a_written_test_set(tmp_path, capsys):
    write_dataset(tmp_path / 'test', 2, TEST_CLIPS, seed=6, config=SMALL)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='humanoid_15', crop_side=64)
    save_checkpoint(Metrabs(cfg), tmp_path / 'untrained')
    assert main(['--model', str(tmp_path / 'untrained'), '--data', str(tmp_path / 'test'),
                 '--out', str(tmp_path / 'eval'), '--device', 'cpu']) == 0
    summary = json.loads((tmp_path / 'eval' / 'summary.json').read_text())
    assert summary['all']['people'] >= 2 and np.isfinite(summary['all']['mpjpe_mm'])
    assert '| untrained | all |' in capsys.readouterr().out


def test_detector_average_precision_of_ground_truth_and_shifted_boxes(samples):
    by_image = {id(s.image): s for s in samples}

    def exact(image):
        boxes = by_image[id(image)].boxes
        return np.concatenate([boxes, np.ones((len(boxes), 1))], axis=1)

    def shifted(image):  # every box moved by its own width: IoU 0
        found = exact(image)
        found[:, 0] += found[:, 2]
        return found

    assert detector_average_precision(exact, samples) == pytest.approx(1.0)
    assert detector_average_precision(shifted, samples) == pytest.approx(0.0)


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
