import numpy as np
import pytest
import torch

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
from metrabs_ros.data.generator import TRAIN_CLIPS, GeneratorConfig, SyntheticGenerator  # noqa: E402
from metrabs_ros.skeletons import get_skeleton  # noqa: E402
from metrabs_ros.train.examples import Batch, training_crops  # noqa: E402
from metrabs_ros.train.trainer import TrainConfig, Trainer  # noqa: E402

SKELETON = get_skeleton('humanoid_15')


@pytest.fixture(scope='module')
def batch():
    generator = SyntheticGenerator(TRAIN_CLIPS, seed=11, config=GeneratorConfig(people=(1, 2)))
    rng = np.random.default_rng(0)
    parts = [training_crops(generator.sample(i), 64, SKELETON.mirror, rng) for i in range(8)]
    generator.close()
    return Batch(*(np.concatenate([getattr(p, f) for p in parts])
                   for f in ('crops', 'intrinsics', 'targets3d', 'targets2d')))


def test_training_crops_targets_are_consistent(batch):
    assert batch.crops.shape[1:] == (3, 64, 64) and batch.crops.dtype == np.float32
    assert 0 <= batch.crops.min() and batch.crops.max() <= 1
    projected = batch.targets3d[..., :2] / batch.targets3d[..., 2:]
    projected = np.einsum('nij,nkj->nki', batch.intrinsics[:, :2, :2], projected) + \
        batch.intrinsics[:, None, :2, 2]
    np.testing.assert_allclose(projected, batch.targets2d, atol=1e-3)
    # The person fills the crop: most joints project inside it.
    inside = ((batch.targets2d >= 0) & (batch.targets2d < 64)).all(-1)
    assert inside.mean() > 0.7


def test_steps_on_a_fixed_batch_decrease_the_loss(batch, tmp_path):
    trainer = Trainer(TrainConfig(str(tmp_path / 'run'), crop_side=64, warmup_steps=1,
                                  steps=1000, absolute_loss_start=0, weak_perspective_until=0,
                                  device='cpu', learning_rate=1e-3))
    first = trainer.train_step(batch)
    for _ in range(20):
        last = trainer.train_step(batch)
    assert set(first) == {'loss3d', 'loss2d', 'loss_abs', 'total'}
    assert last['total'] < 0.8 * first['total']
    assert last['loss3d'] < 0.6 * first['loss3d']


def test_checkpoint_round_trip_resumes_step_and_weights(batch, tmp_path):
    config = TrainConfig(str(tmp_path / 'run'), crop_side=64, steps=100, device='cpu')
    trainer = Trainer(config)
    for _ in range(3):
        trainer.train_step(batch)
    trainer.save()
    resumed = Trainer(config)
    assert resumed.step_count == 3
    for a, b in zip(trainer.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert resumed.scheduler.last_epoch == trainer.scheduler.last_epoch
    expected = trainer.train_step(batch)
    assert resumed.train_step(batch)['total'] == pytest.approx(expected['total'], rel=1e-4)


def test_sigterm_saves_a_resumable_checkpoint(tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time
    run = tmp_path / 'run'
    process = subprocess.Popen(
        [sys.executable, '-m', 'metrabs_ros.train.trainer', str(run), '--crop-side', '64',
         '--batch-size', '2', '--device', 'cpu', '--checkpoint-every', '100000'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = run / 'train_log.jsonl'
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output[-2000:]
    steps = [json.loads(line)['step'] for line in log.read_text().splitlines()]
    assert len(steps) >= 2
    assert Trainer(TrainConfig(str(run), crop_side=64, device='cpu')).step_count == steps[-1]


def test_people_whose_box_cannot_be_undistorted_are_left_out(batch):
    from metrabs_ros.camera import Camera
    from metrabs_ros.data.generator import Sample
    camera = Camera(K=[[250, 0, 320], [0, 250, 240], [0, 0, 1]],
                    distortion_coeffs=[-0.45, 0.05, 0, 0, 0], image_size=(640, 480))
    joints = np.tile(np.array([[0.0, 0.0, 3.0]]), (2, 15, 1)) + np.linspace(0, 0.5, 15)[:, None]
    sample = Sample(np.zeros((480, 640, 3), np.uint8), camera, joints, np.zeros((2, 15, 2)),
                    np.array([[0.0, 0, 60, 60], [300, 200, 50, 50]]), np.zeros((2, 15), bool),
                    ('walk', 'walk'), (0, 0))
    crops = training_crops(sample, 64, SKELETON.mirror, np.random.default_rng(0), augment=False)
    assert crops.crops.shape == (1, 3, 64, 64) and crops.targets3d.shape == (1, 15, 3)


def test_the_25d_baseline_trains_and_round_trips(batch, tmp_path):
    from metrabs_ros.train.baseline_25d import Heatmap25D, back_project, load_25d
    config = TrainConfig(str(tmp_path / 'run'), crop_side=64, warmup_steps=1, steps=100,
                         device='cpu', learning_rate=1e-3, model_kind='2.5d')
    trainer = Trainer(config)
    assert isinstance(trainer.model, Heatmap25D)
    first = trainer.train_step(batch)
    for _ in range(15):
        last = trainer.train_step(batch)
    assert set(first) == {'loss_depth', 'loss2d', 'total'}
    assert last['total'] < 0.8 * first['total']
    trainer.save()
    resumed = Trainer(config)
    assert resumed.step_count == 16 and isinstance(resumed.model, Heatmap25D)
    for a, b in zip(trainer.model.state_dict().values(), load_25d(tmp_path / 'run' / 'model')
                    .state_dict().values()):
        torch.testing.assert_close(a, b)
    # Back-projecting the true pixels and root-relative depths with the true root depth gives
    # back the true 3D pose.
    depth = batch.targets3d[..., 2] - batch.targets3d[:, :1, 2]
    restored = back_project(batch.targets2d, depth, batch.targets3d[:, 0, 2], batch.intrinsics)
    np.testing.assert_allclose(restored, batch.targets3d, atol=1e-4)


def test_a_non_finite_loss_skips_the_update(batch, tmp_path):
    trainer = Trainer(TrainConfig(str(tmp_path / 'run'), crop_side=64, steps=100, device='cpu'))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    poisoned = Batch(batch.crops, batch.intrinsics, batch.targets3d * np.nan, batch.targets2d)
    losses = trainer.train_step(poisoned)
    assert np.isnan(losses['total']) and trainer.skipped_steps == 1 and trainer.step_count == 1
    for a, b in zip(before, trainer.model.parameters()):
        assert torch.equal(a, b.detach())
    assert np.isfinite(trainer.train_step(batch)['total'])


def test_absolute_loss_is_ramped_in():
    from metrabs_ros.train.losses import absolute_loss_weight
    weights = [absolute_loss_weight(step, start=10, ramp_steps=4) for step in range(8, 16)]
    assert weights == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert absolute_loss_weight(10, start=10, ramp_steps=0) == 1.0


def test_bfloat16_backbone_stays_close_to_float32(batch, tmp_path):
    trainer = Trainer(TrainConfig(str(tmp_path / 'run'), crop_side=64, device='cpu',
                                  precision='fp32'))
    model = trainer.model.eval()
    crops, intrinsics = torch.from_numpy(batch.crops), torch.from_numpy(batch.intrinsics)
    with torch.no_grad():
        reference = model(crops, intrinsics)
        model.backbone_autocast = torch.bfloat16
        fast = model(crops, intrinsics)
    assert fast.coords2d_px.dtype == torch.float32
    assert (fast.coords2d_px - reference.coords2d_px).abs().max() < 1.0  # crop pixels
    assert (fast.coords3d_rel_m - reference.coords3d_rel_m).abs().max() < 0.02  # metres
    with pytest.raises(ValueError, match='precision'):
        Trainer(TrainConfig(str(tmp_path / 'other'), crop_side=64, device='cpu',
                            precision='half'))
