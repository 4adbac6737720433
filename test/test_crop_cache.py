import numpy as np
import pytest
import torch

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
from metrabs_ros.data.generator import GeneratorConfig  # noqa: E402
from metrabs_ros.train.crop_cache import (CachedBatches, chunk_dirs, load_chunk,  # noqa: E402
                                          render_chunks)
from metrabs_ros.train.trainer import TrainConfig, Trainer  # noqa: E402

SMALL = GeneratorConfig(image_size=(320, 240), min_visible_pixels=40)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    directory = tmp_path_factory.mktemp('cache')
    render_chunks(directory, 64, n_chunks=1, samples_per_chunk=3, config=SMALL)
    return directory


def test_chunks_hold_uint8_crops_with_consistent_targets(cache):
    chunk = load_chunk(chunk_dirs(cache)[0])
    n = len(chunk.crops)
    assert n >= 3 and chunk.crops.dtype == np.uint8 and chunk.crops.shape[1:] == (3, 64, 64)
    assert chunk.crops.max() > 100  # not an empty image
    projected = chunk.targets3d[..., :2] / chunk.targets3d[..., 2:]
    pixels = projected @ chunk.intrinsics[:, :2, :2].transpose(0, 2, 1) + \
        chunk.intrinsics[:, None, :2, 2]
    np.testing.assert_allclose(pixels, chunk.targets2d, atol=1e-3)


def test_rendering_resumes_after_the_last_complete_chunk(cache, tmp_path):
    first = load_chunk(chunk_dirs(cache)[0]).crops.copy()
    (cache / 'chunk_00001.tmp').mkdir()  # a chunk interrupted while being written
    render_chunks(cache, 64, n_chunks=2, samples_per_chunk=3, config=SMALL)
    chunks = chunk_dirs(cache)
    assert [c.name for c in chunks] == ['chunk_00000', 'chunk_00001']
    np.testing.assert_array_equal(load_chunk(chunks[0]).crops, first)  # not re-rendered
    with pytest.raises(ValueError, match='was written with'):
        render_chunks(cache, 96, n_chunks=3, samples_per_chunk=3, config=SMALL)


def test_cached_batches_sample_crops_with_their_targets(cache):
    crops = np.concatenate([load_chunk(p).targets3d for p in chunk_dirs(cache)])
    batches = iter(CachedBatches(cache, batch_size=5, seed=0))
    batch = next(batches)
    assert batch.crops.shape == (5, 3, 64, 64) and batch.crops.dtype == np.float32
    assert 0 <= batch.crops.min() and batch.crops.max() <= 1
    for target in batch.targets3d:  # every target is one of the cached people's
        assert np.abs(crops - target).max(axis=(1, 2)).min() == 0
    assert not np.array_equal(next(batches).targets3d, batch.targets3d)


def test_parallel_renderers_split_the_chunks_and_batches_draw_from_every_cache(cache, tmp_path):
    other = tmp_path / 'other'
    render_chunks(other, 64, n_chunks=3, samples_per_chunk=2, config=SMALL, seed=1,
                  worker=1, workers=2)
    assert [c.name for c in chunk_dirs(other)] == ['chunk_00001']
    render_chunks(other, 64, n_chunks=3, samples_per_chunk=2, config=SMALL, seed=1,
                  worker=0, workers=2)
    assert [c.name for c in chunk_dirs(other)] == ['chunk_00000', 'chunk_00001', 'chunk_00002']
    targets = {name: np.concatenate([load_chunk(p).targets3d for p in chunk_dirs(d)])
               for name, d in (('first', cache), ('other', other))}
    seen = set()
    for batch in zip(range(20), CachedBatches(f'{cache},{other}', batch_size=4, seed=0)):
        for target in batch[1].targets3d:
            seen |= {name for name, t in targets.items()
                     if np.abs(t - target).max(axis=(1, 2)).min() == 0}
    assert seen == {'first', 'other'}


def test_missing_cache_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='metrabs-render-crops'):
        next(iter(CachedBatches(tmp_path, batch_size=2, seed=0)))


def test_trainer_trains_from_the_cache_and_from_another_models_weights(cache, tmp_path):
    config = TrainConfig(str(tmp_path / 'a'), crop_side=64, batch_size=4, steps=2,
                         device='cpu', data_dir=str(cache), data_workers=0, precision='fp32')
    trainer = Trainer(config)
    trainer.run()
    assert trainer.step_count == 2
    started = Trainer(TrainConfig(str(tmp_path / 'b'), crop_side=64, device='cpu',
                                  init_from=str(tmp_path / 'a' / 'model')))
    for a, b in zip(trainer.model.state_dict().values(), started.model.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert started.step_count == 0
    from metrabs_ros.bundled import SYNTHETIC_DOMAIN
    assert trainer.model.config.training_domain == SYNTHETIC_DOMAIN  # the node's domain note
    bundled = Trainer(TrainConfig(str(tmp_path / 'd'), stride=16, device='cpu',
                                  init_from='bundled')).model.config
    assert (bundled.implausible_pose_rules, bundled.box_coverage) == (False, 0.3)  # bundle's
    with pytest.raises(ValueError, match='crop side 64, not 128'):
        Trainer(TrainConfig(str(tmp_path / 'c'), crop_side=128, device='cpu',
                            init_from=str(tmp_path / 'a' / 'model')))


def test_device_pool_draws_the_cached_crops_and_picks_up_new_chunks(cache, tmp_path):
    from metrabs_ros.train.crop_pool import DeviceCropPool
    growing = tmp_path / 'growing'
    render_chunks(growing, 64, n_chunks=1, samples_per_chunk=2, config=SMALL, seed=3)
    pool = DeviceCropPool(f'{cache},{growing}', batch_size=6, device='cpu', seed=0,
                          colour_jitter=0.0)
    chunks = [load_chunk(p) for d in (cache, growing) for p in chunk_dirs(d)]
    assert pool.refresh() == sum(len(c.crops) for c in chunks)
    batch = pool.sample()
    assert batch.crops.shape == (6, 3, 64, 64) and batch.crops.dtype == torch.float32
    cached = np.concatenate([c.crops for c in chunks]).astype(np.float32) / 255
    targets = np.concatenate([c.targets3d for c in chunks])
    for crop, target in zip(batch.crops.numpy(), batch.targets3d.numpy()):
        match = np.abs(cached - crop).max(axis=(1, 2, 3)).argmin()  # no jitter: exact crops
        np.testing.assert_allclose(cached[match], crop, atol=1e-6)
        np.testing.assert_array_equal(targets[match], target)  # with their own targets
    before = pool.size
    render_chunks(growing, 64, n_chunks=2, samples_per_chunk=2, config=SMALL, seed=3)
    assert pool.refresh() == before + len(load_chunk(chunk_dirs(growing)[1]).crops)
    with pytest.raises(FileNotFoundError, match='metrabs-render-crops'):
        DeviceCropPool(tmp_path / 'empty', batch_size=2, device='cpu', seed=0).refresh()


def test_trainer_trains_from_crops_held_on_the_device(cache, tmp_path):
    config = TrainConfig(str(tmp_path / 'a'), crop_side=64, batch_size=4, steps=2, device='cpu',
                         data_dir=str(cache), crops_on_device=True, precision='fp32')
    before = [p.detach().clone() for p in Trainer(config).model.parameters()]
    trainer = Trainer(config)
    trainer.run()
    assert trainer.step_count == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
