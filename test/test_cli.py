import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from metrabs_ros.cli import main
from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.weights import save_checkpoint

SKELETON = get_skeleton('h36m_17')
BOXES = [[40.0, 30.0, 60.0, 150.0, 0.9], [180.0, 40.0, 50.0, 130.0, 0.8]]


class FixedBoxes(torch.nn.Module):
    def __init__(self, boxes_xywh):
        super().__init__()
        b = torch.tensor(boxes_xywh, dtype=torch.float32)
        self.register_buffer('boxes', torch.cat([b[:, :2], b[:, :2] + b[:, 2:4], b[:, 4:]], 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.boxes


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='h36m_17', crop_side=128)
    save_checkpoint(Metrabs(cfg), root / 'model')
    torch.jit.script(FixedBoxes(BOXES)).save(str(root / 'detector.ts'))
    rng = np.random.default_rng(0)
    (root / 'images').mkdir()
    frames = [rng.integers(0, 255, (200, 280, 3), dtype=np.uint8) for _ in range(3)]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(root / 'images' / f'frame{i}.png'), frame)
    writer = cv2.VideoWriter(str(root / 'clip.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (280, 200))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return root


def test_folder_with_detector_writes_json_and_overlays(assets, tmp_path):
    code = main([str(assets / 'images'), '--model', str(assets / 'model'), '--detector',
                 str(assets / 'detector.ts'), '--num-aug', '2', '--output', str(tmp_path),
                 '--device', 'cpu', '--keep-implausible'])  # a random model's poses are junk
    assert code == 0
    data = json.loads((tmp_path / 'poses.json').read_text())
    assert [f['frame'] for f in data['frames']] == ['frame0.png', 'frame1.png', 'frame2.png']
    frame = data['frames'][0]
    assert frame['skeleton'] == 'h36m_17' and frame['joint_names'] == list(SKELETON.joint_names)
    assert np.array(frame['poses3d_m']).shape == (2, 17, 3)
    assert np.array(frame['poses2d_px']).shape == (2, 17, 2)
    assert np.array(frame['uncertainty_m']).shape == (2, 17)
    np.testing.assert_allclose(np.array(frame['boxes_xywh_score']), BOXES, atol=0.01)
    assert data['frames'][2]['ids'] == data['frames'][0]['ids']  # same people, same ids
    overlay = cv2.imread(str(tmp_path / 'frame1_overlay.png'))
    assert overlay.shape == (200, 280, 3)


def test_video_with_given_boxes_and_intrinsics(assets, tmp_path):
    (tmp_path / 'boxes.json').write_text(json.dumps({'0': [b[:4] for b in BOXES], '2': []}))
    (tmp_path / 'camera.yaml').write_text(
        'camera_matrix: {rows: 3, cols: 3, data: [300, 0, 140, 0, 300, 100, 0, 0, 1]}\n'
        'distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0, 0, 0]}\n')
    out = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, '-m', 'metrabs_ros.cli', str(assets / 'clip.mp4'), '--model',
         str(assets / 'model'), '--boxes', str(tmp_path / 'boxes.json'), '--intrinsics',
         str(tmp_path / 'camera.yaml'), '--num-aug', '1', '--output', str(out), '--device', 'cpu'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    frames = json.loads((out / 'poses.json').read_text())['frames']
    assert [len(f['ids']) for f in frames] == [2, 0, 0]
    assert frames[1]['time_s'] == pytest.approx(0.1)
    capture = cv2.VideoCapture(str(out / 'overlay.mp4'))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


@pytest.mark.parametrize('extra, message', [
    (['--model', 'missing_model_dir', '--detector', 'x.ts'], 'model directory not found'),
    (['--detector', 'missing.ts'], 'missing detector file'),
    ([], 'give --detector or --boxes'),
])
def test_errors_are_reported_in_one_line(assets, capsys, extra, message):
    args = [str(assets / 'images'), '--model', str(assets / 'model')] + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1


def test_bad_input_path(assets, capsys):
    assert main([str(assets / 'nothing.xyz'), '--model', str(assets / 'model'),
                 '--boxes', 'b.json']) == 2
    assert 'input must be' in capsys.readouterr().err
