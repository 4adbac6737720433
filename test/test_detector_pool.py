"""Detector images stored beside the pose crops, and batches drawn from them on the device."""
import numpy as np
import pytest
import torch

from metrabs_ros.centre_detector import CentreNetConfig
from metrabs_ros.data.generator import TRAIN_CLIPS, GeneratorConfig, SyntheticGenerator
from metrabs_ros.train.crop_cache import chunk_dirs, render_chunks, to_uint8
from metrabs_ros.train.detector_pool import DeviceImagePool
from metrabs_ros.train.detector_trainer import (DetectorTrainConfig, DetectorTrainer,
                                                detector_example)

SMALL = GeneratorConfig(image_size=(320, 240), min_visible_pixels=40)
SAMPLES = 4
INPUT_SIDE = 160  # half the image: boxes and images are scaled by 0.5


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    directory = tmp_path_factory.mktemp('cache')
    render_chunks(directory, 64, n_chunks=1, samples_per_chunk=SAMPLES, config=SMALL, seed=4,
                  detector_input_side=INPUT_SIDE)
    return directory


def test_every_rendered_image_is_stored_at_detector_input_size(cache):
    chunk = chunk_dirs(cache)[0]
    images = np.load(chunk / 'detector_images.npy')
    boxes = np.load(chunk / 'detector_boxes.npy')
    owners = np.load(chunk / 'detector_box_image.npy')
    sizes = np.load(chunk / 'detector_image_sizes.npy')
    assert images.dtype == np.uint8 and images.shape == (SAMPLES, 3, 128, 160)
    np.testing.assert_array_equal(sizes, [[160, 120]] * SAMPLES)
    generator = SyntheticGenerator(TRAIN_CLIPS, seed=4, config=SMALL)
    for index in range(SAMPLES):
        sample = generator.sample(index)
        expected, expected_boxes = detector_example(sample.image, sample.boxes,
                                                    CentreNetConfig(input_side=INPUT_SIDE))
        np.testing.assert_array_equal(images[index], to_uint8(expected))
        np.testing.assert_allclose(boxes[owners == index], sample.boxes * 0.5, rtol=1e-5)
    generator.close()


def drawn(cache, flip_probability, seed=0):
    pool = DeviceImagePool(cache, batch_size=6, device='cpu', seed=seed,
                           flip_probability=flip_probability, colour_jitter=False)
    pool.refresh()
    return pool, pool.sample()


def test_drawn_images_are_cached_images_with_their_boxes(cache):
    pool, batch = drawn(cache, flip_probability=0.0)
    cached = pool.storage['images'][:pool.storage.size].float() / 255
    for image, boxes in zip(batch.images, batch.boxes):
        match = int((cached - image).abs().flatten(1).max(1).values.argmin())
        torch.testing.assert_close(cached[match], image)
        np.testing.assert_array_equal(pool.boxes[match], boxes)


def test_mirrored_images_carry_mirrored_boxes_and_keep_their_padding(cache):
    pool, batch = drawn(cache, flip_probability=1.0)
    cached = pool.storage['images'][:pool.storage.size].float() / 255
    for image, boxes in zip(batch.images, batch.boxes):
        unmirrored = image.clone()
        unmirrored[..., :160] = image[..., :160].flip(-1)
        match = int((cached - unmirrored).abs().flatten(1).max(1).values.argmin())
        torch.testing.assert_close(cached[match], unmirrored)
        assert image[:, 120:].abs().max() == 0  # rows of padding
        for (x, y, w, h), (x0, y0, w0, h0) in zip(boxes, pool.boxes[match]):
            assert (y, w, h) == (y0, w0, h0) and x == pytest.approx(160 - x0 - w0)


def test_colour_jitter_stays_in_range_and_off_the_padding(cache):
    pool = DeviceImagePool(cache, batch_size=8, device='cpu', seed=1)
    pool.refresh()
    images = pool.sample().images
    assert images.min() >= 0 and images.max() <= 1
    assert images[:, :, 120:].abs().max() == 0
    assert images[:, :, :120].mean() > 0.05


def test_a_cache_without_detector_images_is_refused_clearly(tmp_path):
    render_chunks(tmp_path, 64, n_chunks=1, samples_per_chunk=1, config=SMALL)
    with pytest.raises(FileNotFoundError, match='--detector-images'):
        DeviceImagePool(tmp_path, batch_size=2, device='cpu', seed=0).refresh()


def test_detector_trains_from_the_cached_images(cache, tmp_path):
    config = DetectorTrainConfig(str(tmp_path / 'run'), batch_size=4, steps=2, device='cpu',
                                 data_dir=str(cache), input_side=INPUT_SIDE)
    trainer = DetectorTrainer(config)
    before = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.run()
    assert trainer.step_count == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters()))


def test_zoomed_images_carry_zoomed_clipped_boxes(tmp_path):
    """White people-boxes on black: after a random zoom and shift the white pixels fill the
    new boxes (within a pixel); boxes pushed out of the image are clipped or dropped."""
    chunk = tmp_path / 'chunk_00000'
    chunk.mkdir()
    images = np.zeros((3, 3, 128, 160), np.uint8)
    boxes = np.array([[10, 20, 30, 60], [100, 40, 50, 70], [2, 2, 20, 20],
                      [130, 90, 30, 30]], np.float32)
    owners = np.array([0, 1, 2, 2], np.int32)
    for (x, y, w, h), i in zip(boxes.astype(int), owners):
        images[i, :, y:y + h, x:x + w] = 255
    np.save(chunk / 'detector_images.npy', images)
    np.save(chunk / 'detector_boxes.npy', boxes)
    np.save(chunk / 'detector_box_image.npy', owners)
    np.save(chunk / 'detector_image_sizes.npy', np.array([[160, 120]] * 3, np.int32))
    pool = DeviceImagePool(tmp_path, batch_size=12, device='cpu', seed=3, colour_jitter=False,
                           zoom=(0.7, 1.4), shift=0.2)
    pool.refresh()
    batch = pool.sample()
    for image, image_boxes in zip(batch.images, batch.boxes):
        white = (image[0] > 0.5).numpy()
        drawn_boxes = np.zeros_like(white)
        for x, y, w, h in image_boxes:
            drawn_boxes[int(np.ceil(y)):int(y + h), int(np.ceil(x)):int(x + w)] = True
        core = drawn_boxes & ~np.pad(~drawn_boxes, 1)[2:, 1:-1]  # rows away from the edges
        assert white[core].all()
        assert (white & ~dilate(drawn_boxes)).sum() == 0
        assert (image[:, 120:].abs().max() == 0)


def dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out
