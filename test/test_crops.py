import numpy as np
import pytest
import torch

from oracle import example_pose
from metrabs_ros.camera import Camera
from metrabs_ros.crops import (Augmentations, crop_geometry, crop_to_image_pixels, sampling_map,
                               uncrop_poses, warp_cv2, warp_torch)
from metrabs_ros.skeletons import get_skeleton

SKELETON = get_skeleton('smpl_24')
CAMERA = Camera(K=[[800, 0, 650], [0, 805, 470], [0, 0, 1]],
                distortion_coeffs=[-0.28, 0.09, 0.0012, -0.0008, -0.015], image_size=(1280, 960),
                world_up=(0.05, -1, 0.1))


def box_around(points_px, margin=1.1):
    lo, hi = points_px.min(0), points_px.max(0)
    centre, size = (lo + hi) / 2, (hi - lo).max() * margin
    return np.array([centre[0] - size / 2, centre[1] - size / 2, size, size])


def scene(n_people=2):
    poses = np.stack([example_pose(24, centre=c, seed=i) for i, c in
                      enumerate([(-0.6, 0.3, 3.5), (0.9, 0.1, 5.0), (0.0, 0.2, 2.5)][:n_people])])
    boxes = np.stack([box_around(CAMERA.project(p)) for p in poses])
    return poses, boxes


def test_official_augmentation_schedule():
    aug = Augmentations.official(5)
    np.testing.assert_allclose(np.rad2deg(aug.angles_rad), [-25, -12.5, 0, 12.5, 25])
    np.testing.assert_allclose(aug.scales, [0.8, 0.9, 1.0, 1.05, 1.1])
    np.testing.assert_array_equal(aug.flips, [False, True, False, True, False])
    np.testing.assert_allclose(aug.gammas, [0.6, 0.7, 0.8, 0.9, 1.0])
    single = Augmentations.official(1)
    assert single.angles_rad[0] == 0 and single.scales[0] == 1 and not single.flips[0]
    matrices = aug.rotation_flip_matrices()
    np.testing.assert_allclose(np.linalg.det(matrices), np.where(aug.flips, -1, 1))
    with pytest.raises(ValueError, match='num_aug'):
        Augmentations.official(0)


@pytest.mark.parametrize('num_aug', [1, 5])
def test_3d_round_trip_through_crop_space_with_flips(num_aug):
    poses, boxes = scene()
    geometry = crop_geometry(CAMERA, boxes, 256, Augmentations.official(num_aug))
    assert len(geometry) == num_aug * len(boxes)
    truth = poses[geometry.box_index]
    in_crop = geometry.to_crop(truth)
    # What a perfect model predicts: the mirrored person's joints carry the swapped labels.
    predicted = np.where(geometry.flips[:, None, None], in_crop[:, SKELETON.mirror], in_crop)
    recovered = uncrop_poses(predicted, geometry, SKELETON.mirror)
    assert np.abs(recovered - truth).max() < 1e-4


@pytest.mark.parametrize('num_aug', [1, 5])
def test_2d_round_trip_crop_pixels_to_distorted_image_pixels(num_aug):
    poses, boxes = scene()
    geometry = crop_geometry(CAMERA, boxes, 256, Augmentations.official(num_aug))
    in_crop = geometry.to_crop(poses[geometry.box_index])
    crop_px = np.einsum('nij,npj->npi', geometry.K, in_crop / in_crop[..., 2:])[..., :2]
    image_px = crop_to_image_pixels(CAMERA, geometry, torch.from_numpy(crop_px)).numpy()
    expected = CAMERA.project(poses[geometry.box_index])
    assert np.abs(image_px - expected).max() < 1e-4


def test_box_centre_maps_to_crop_centre_and_box_fills_crop():
    _, boxes = scene(1)
    geometry = crop_geometry(CAMERA, boxes, 256)
    x, y, w, h = boxes[0]
    crop_points = torch.tensor([[[128.0, 128.0], [128.0, 0.0], [128.0, 256.0]]])
    image_points = crop_to_image_pixels(CAMERA, geometry, crop_points)[0].numpy()
    np.testing.assert_allclose(image_points[0], [x + w / 2, y + h / 2], atol=1e-6)
    # The crop spans the box vertically (up to lens distortion of the side midpoints).
    assert image_points[1, 1] == pytest.approx(y, abs=0.03 * h)
    assert image_points[2, 1] == pytest.approx(y + h, abs=0.03 * h)


def test_crop_camera_is_upright_with_respect_to_world_up():
    _, boxes = scene(3)
    geometry = crop_geometry(CAMERA, boxes, 256)
    up_in_crops = geometry.R @ CAMERA.up_in_camera
    np.testing.assert_allclose(up_in_crops[:, 0], 0, atol=1e-12)  # no sideways tilt
    assert np.all(up_in_crops[:, 1] < 0)  # up is image-up (y points down)


def blob_image(points_px, size=(1280, 960), sigma=3.0):
    xs, ys = np.meshgrid(np.arange(size[0]), np.arange(size[1]))
    image = np.zeros((size[1], size[0]), np.float32)
    for x, y in points_px:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(image[..., None], 3, axis=-1)


def centroid(channel, around, radius=12):
    ys, xs = np.mgrid[:channel.shape[0], :channel.shape[1]]
    mask = (np.abs(xs - around[0]) < radius) & (np.abs(ys - around[1]) < radius)
    weights = channel * mask
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


@pytest.mark.parametrize('antialias', [1, 2])
def test_warped_crop_shows_points_where_the_crop_camera_projects_them(antialias):
    poses, boxes = scene(1)
    point = poses[0, 5]
    image = blob_image([CAMERA.project(point)])
    geometry = crop_geometry(CAMERA, boxes, 256, Augmentations.official(3))
    crops = warp_cv2(image, sampling_map(CAMERA, geometry, antialias), antialias)
    in_crop = geometry.to_crop(np.repeat(point[None, None], len(geometry), 0))[:, 0]
    expected = np.einsum('nij,nj->ni', geometry.K, in_crop / in_crop[:, 2:])[:, :2]
    for crop, where in zip(crops, expected):
        assert np.linalg.norm(centroid(crop[..., 0], where) - where) < 0.3


def test_cpu_and_batched_torch_crops_agree():
    poses, boxes = scene(2)
    rng = np.random.default_rng(0)
    image = (blob_image([CAMERA.project(p) for p in poses[:, ::3].reshape(-1, 3)]) +
             rng.uniform(0, 0.2, (960, 1280, 3))).astype(np.float32)
    geometry = crop_geometry(CAMERA, boxes, 256, Augmentations.official(5))
    for antialias in (1, 2):
        maps = sampling_map(CAMERA, geometry, antialias)
        cpu = warp_cv2(image, maps, antialias)
        batched = warp_torch(torch.from_numpy(image).permute(2, 0, 1)[None], maps,
                             antialias=antialias).permute(0, 2, 3, 1).numpy()
        difference = np.abs(cpu - batched).max()
        print(f'antialias {antialias}: max |cv2 - grid_sample| = {difference:.2e}')
        assert cpu.shape == batched.shape == (10, 256, 256, 3)
        # cv2.remap quantizes its interpolation weights to 1/32; on this smooth image that stays
        # far below one grey level (1/255).
        assert difference < 1e-3


def test_boxes_are_validated():
    with pytest.raises(ValueError, match='positive'):
        crop_geometry(CAMERA, np.array([[0, 0, 0, 10.0]]), 256)
    with pytest.raises(ValueError, match='finite'):
        crop_geometry(CAMERA, np.array([[np.nan, 0, 10, 10.0]]), 256)
