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


def test_time_budget_decays_the_learning_rate_over_time_and_stops_the_run(batch, tmp_path):
    """--time-budget-s: the cosine decay follows the clock (1 at the start, 0.5 halfway, 0 at
    the end) and the loop stops once the budget is spent, saving a checkpoint."""
    import json
    config = TrainConfig(str(tmp_path / 'run'), crop_side=64, batch_size=2, warmup_steps=1,
                         steps=10**6, time_budget_s=100.0, device='cpu')
    trainer = Trainer(config)
    trainer.started -= 50.0  # halfway through the budget
    assert trainer._lr_factor(10) == pytest.approx(0.5, abs=0.01)
    trainer.started -= 60.0  # past the end
    assert trainer._lr_factor(10) == 0.0
    trainer.batches = lambda: iter([batch] * 1000)
    trainer.run()
    log = (tmp_path / 'run' / 'train_log.jsonl').read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])['step'] == 1  # stopped after one step
    assert (tmp_path / 'run' / 'model' / 'model.safetensors').exists()


def test_channels_last_training_matches_and_saves_a_loadable_checkpoint(batch, tmp_path):
    from metrabs_ros.weights import load_checkpoint
    losses = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(TrainConfig(str(tmp_path / f'run_{channels_last}'), crop_side=64,
                                      channels_last=channels_last, precision='fp32',
                                      device='cpu'))
        losses.append(trainer.train_step(batch)['total'])
        trainer.save()
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    model = load_checkpoint(tmp_path / 'run_True' / 'model')
    assert all(p.is_contiguous() for p in model.state_dict().values())


def test_boolean_options_parse_true_and_false_and_refuse_other_words(tmp_path, capsys):
    from metrabs_ros.train.loop import config_from_command_line
    parse = lambda *a: config_from_command_line(TrainConfig, 'metrabs-train', '',  # noqa: E731
                                                [str(tmp_path), *a])
    assert parse('--channels-last', 'true').channels_last is True
    assert parse('--channels-last', '0').channels_last is False
    assert parse().channels_last is False
    with pytest.raises(SystemExit):
        parse('--channels-last', 'maybe')
    assert '--channels-last' in capsys.readouterr().err


def test_colour_jitter_acts_on_the_channel_axis_of_either_layout():
    """Saturation mixes each pixel with its own grey: a (3, H, W) crop jittered with
    channel_axis=0 equals the (H, W, 3) crop jittered with the same draws."""
    from metrabs_ros.train.examples import jitter_colour
    crop = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32)
    hwc = jitter_colour(crop, np.random.default_rng(5), 0.3)
    chw = jitter_colour(crop.transpose(2, 0, 1), np.random.default_rng(5), 0.3, channel_axis=0)
    np.testing.assert_allclose(chw.transpose(1, 2, 0), hwc, atol=1e-6)
    grey = np.repeat(crop[..., :1], 3, axis=-1)  # grey pixels stay grey
    out = jitter_colour(grey.transpose(2, 0, 1), np.random.default_rng(5), 0.3, channel_axis=0)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)


def test_batch_colour_jitter_on_the_device_equals_the_per_crop_jitter():
    """crop_pool.jitter_colour_batch applies examples.jitter_colour's three factors per crop."""
    import torch

    from metrabs_ros.train.crop_pool import jitter_colour_batch
    from metrabs_ros.train.examples import jitter_colour
    crops = np.random.default_rng(2).random((4, 3, 8, 8)).astype(np.float32)
    factors = np.random.default_rng(3).uniform(0.7, 1.3, (4, 3)).astype(np.float32)

    class Draws:  # hands jitter_colour the chosen factors in its draw order
        def __init__(self, values):
            self.values = iter(values)

        def uniform(self, low, high):
            return next(self.values)

    expected = [jitter_colour(c, Draws(f), 0.3, channel_axis=0) for c, f in zip(crops, factors)]
    out = jitter_colour_batch(torch.from_numpy(crops), torch.from_numpy(factors))
    np.testing.assert_allclose(out.numpy(), np.stack(expected), atol=1e-6)
    assert not np.allclose(out.numpy(), crops, atol=1e-2)  # the factors did change the crops
