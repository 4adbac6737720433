"""scripts/average_weights.py: the element-wise mean of checkpoints of one architecture."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.weights import load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'average_weights.py'
SKELETON = get_skeleton('humanoid_15')


def model(seed: int, backbone: str = 'resnet18') -> Metrabs:
    torch.manual_seed(seed)
    return Metrabs(ModelConfig(backbone=backbone, joint_names=list(SKELETON.joint_names),
                               joint_edges=SKELETON.edges.tolist(), skeleton='humanoid_15',
                               crop_side=64))


def test_the_mean_of_two_checkpoints_is_their_midpoint(tmp_path):
    a, b = model(0), model(1)
    with torch.no_grad():  # batch-norm statistics differ too
        next(m for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean += 1
    save_checkpoint(a, tmp_path / 'a')
    save_checkpoint(b, tmp_path / 'b')
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / 'mean'), str(tmp_path / 'a'),
                    str(tmp_path / 'b')], check=True, capture_output=True)
    mean = load_checkpoint(tmp_path / 'mean').state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    assert mean.keys() == sa.keys()
    differing = 0
    for key, value in mean.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (sa[key] + sb[key]) / 2)
            differing += not torch.equal(sa[key], sb[key])
        else:
            assert torch.equal(value, sa[key])
    assert differing > 10


def test_different_architectures_are_refused(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import average_weights
    with pytest.raises(ValueError, match='not the same architecture'):
        average_weights.average_weights([model(0), model(0, 'resnet50')])
