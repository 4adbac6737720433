"""Fresh geometric augmentation of cached crops on the device (crop_warp)."""
import math

import numpy as np
import torch

from metrabs_ros.data.generator import GeneratorConfig
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.train.crop_cache import render_chunks
from metrabs_ros.train.crop_warp import (ReaugmentationRanges, random_camera_changes, reaugment,
                                         rotation_z)
from metrabs_ros.train.examples import Batch
from metrabs_ros.train.trainer import Trainer, TrainConfig

SIDE = 64
MIRROR = torch.as_tensor(get_skeleton('humanoid_15').mirror)
RIGHT_HIP, LEFT_HIP = 3, 9


def blob_batch(n: int, seed: int) -> Batch:
    """Crops showing the right hip as a red blob and the left hip as a green one, with their
    camera (f = 80 px, principal point at the centre) and 15 joints about 3 m away."""
    rng = np.random.default_rng(seed)
    intrinsics = np.array([[80.0, 0, SIDE / 2], [0, 80.0, SIDE / 2], [0, 0, 1]], np.float32)
    targets3d = rng.uniform([-0.6, -0.6, 2.8], [0.6, 0.6, 3.2], (n, 15, 3)).astype(np.float32)
    projected = targets3d @ intrinsics.T
    targets2d = projected[..., :2] / projected[..., 2:]
    y, x = np.mgrid[:SIDE, :SIDE]
    crops = np.zeros((n, 3, SIDE, SIDE), np.float32)
    for i in range(n):
        for channel, joint in ((0, RIGHT_HIP), (1, LEFT_HIP)):
            u, v = targets2d[i, joint]
            crops[i, channel] = np.exp(-((x - u) ** 2 + (y - v) ** 2) / (2 * 1.5 ** 2))
    return Batch(*(torch.from_numpy(a) for a in (
        crops, np.repeat(intrinsics[None], n, 0), targets3d, targets2d)))


def blob_centre(channel: torch.Tensor) -> np.ndarray:
    weights = channel.clamp(min=0.05) - 0.05
    y, x = torch.meshgrid(torch.arange(SIDE).float(), torch.arange(SIDE).float(),
                          indexing='ij')
    return np.array([(weights * x).sum() / weights.sum(), (weights * y).sum() / weights.sum()])


def test_identity_change_leaves_crops_and_targets_alone():
    batch = blob_batch(3, seed=0)
    same = reaugment(batch, torch.eye(3).repeat(3, 1, 1), torch.ones(3), MIRROR)
    torch.testing.assert_close(same.crops, batch.crops, atol=1e-5, rtol=0)
    torch.testing.assert_close(same.targets3d, batch.targets3d)
    torch.testing.assert_close(same.targets2d, batch.targets2d, atol=1e-4, rtol=0)


def test_new_targets_lie_on_the_moved_pixels_with_mirrored_labels():
    batch = blob_batch(16, seed=1)
    generator = torch.Generator().manual_seed(0)
    ranges = ReaugmentationRanges(roll_degrees=30, scale=(0.8, 1.3), shift=0.08)
    changes, factors = random_camera_changes(16, batch.intrinsics[:, 0, 0], SIDE, ranges,
                                             generator)
    mirrored = torch.linalg.det(changes) < 0
    assert 0 < mirrored.sum() < 16
    new = reaugment(batch, changes, factors, MIRROR)
    for i in range(16):
        # the red blob (old right hip) is the new left hip where the camera was mirrored
        red_label = LEFT_HIP if mirrored[i] else RIGHT_HIP
        green_label = RIGHT_HIP if mirrored[i] else LEFT_HIP
        for channel, label in ((0, red_label), (1, green_label)):
            target = new.targets2d[i, label].numpy()
            if (target < 4).any() or (target > SIDE - 5).any():
                continue  # blob cut by the crop border: its centre is biased
            np.testing.assert_allclose(blob_centre(new.crops[i, channel]), target, atol=0.3)


def test_camera_changes_are_rigid_and_keep_people_in_front():
    batch = blob_batch(8, seed=2)
    changes, factors = random_camera_changes(8, batch.intrinsics[:, 0, 0], SIDE,
                                             ReaugmentationRanges(), torch.Generator())
    torch.testing.assert_close(torch.linalg.det(changes).abs(), torch.ones(8))
    new = reaugment(batch, changes, factors, MIRROR)
    assert (new.targets3d[..., 2] > 0).all()
    bones = torch.linalg.norm(batch.targets3d[:, 0] - batch.targets3d[:, 1], dim=-1)
    new_bones = torch.linalg.norm(new.targets3d[:, 0] - new.targets3d[:, 1], dim=-1)
    torch.testing.assert_close(new_bones, bones)  # pelvis and thorax are their own mirrors
    torch.testing.assert_close(new.intrinsics[:, 0, 0], 80 * factors)
    projected = new.targets3d @ new.intrinsics.transpose(1, 2)
    torch.testing.assert_close(new.targets2d, projected[..., :2] / projected[..., 2:])


def test_roll_turns_the_image_about_its_centre():
    batch = blob_batch(1, seed=3)
    new = reaugment(batch, rotation_z(torch.tensor([math.pi / 2])), torch.ones(1), MIRROR)
    u, v = (batch.targets2d[0, RIGHT_HIP] - SIDE / 2).tolist()
    np.testing.assert_allclose(new.targets2d[0, RIGHT_HIP].numpy() - SIDE / 2, [-v, u],
                               atol=1e-3)


def test_trainer_trains_with_reaugmentation(tmp_path):
    cache = tmp_path / 'cache'
    render_chunks(cache, 64, n_chunks=1, samples_per_chunk=2,
                  config=GeneratorConfig(image_size=(320, 240), min_visible_pixels=40), seed=5)
    config = TrainConfig(str(tmp_path / 'run'), crop_side=64, batch_size=4, steps=2,
                         device='cpu', data_dir=str(cache), crops_on_device=True,
                         reaugment_on_device=True, precision='fp32')
    trainer = Trainer(config)
    batch = next(trainer.batches())
    assert batch.crops.shape == (4, 3, 64, 64) and torch.isfinite(batch.targets2d).all()
    trainer.run()
    assert trainer.step_count == 2
