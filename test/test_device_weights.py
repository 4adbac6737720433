"""scripts/device_weights.py: weights split into parts a device call can return, joined back."""
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.weights import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'device_weights.py'
PART_LIMIT = 16 * 2 ** 20


def run(*args):
    subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], check=True,
                   capture_output=True)


def test_split_parts_fit_the_limits_and_join_restores_the_weights(tmp_path):
    skeleton = get_skeleton('humanoid_15')
    model = Metrabs(ModelConfig(backbone='resnet18', joint_names=list(skeleton.joint_names),
                                joint_edges=skeleton.edges.tolist(), skeleton='humanoid_15'))
    save_checkpoint(model, tmp_path / 'run' / 'model')
    (tmp_path / 'run' / 'train_log.jsonl').write_text('{"step": 1}\n')
    original = load_file(tmp_path / 'run' / 'model' / 'model.safetensors')

    run('split', tmp_path / 'run', tmp_path / 'out')
    parts = sorted((tmp_path / 'out').glob('model_part*.safetensors'))
    assert len(parts) + 2 <= 8 and all(p.stat().st_size < PART_LIMIT for p in parts)
    run('join', tmp_path / 'out', tmp_path / 'back')
    joined = load_file(tmp_path / 'back' / 'model' / 'model.safetensors')
    assert joined.keys() == original.keys()
    assert all(torch.equal(joined[k], original[k]) for k in original)
    assert (tmp_path / 'back' / 'train_log.jsonl').read_text() == '{"step": 1}\n'

    run('split', tmp_path / 'run', tmp_path / 'half', '--half')
    halves = sorted((tmp_path / 'half').glob('model_part*.safetensors'))
    assert 2 * (len(halves) + 2) <= 8  # two models in one call
    run('join', tmp_path / 'half', tmp_path / 'back_half')
    joined = load_file(tmp_path / 'back_half' / 'model' / 'model.safetensors')
    name = next(k for k, v in original.items() if v.is_floating_point() and v.numel() > 1000)
    assert joined[name].dtype == torch.float32
    torch.testing.assert_close(joined[name], original[name], atol=1e-3, rtol=1e-3)
