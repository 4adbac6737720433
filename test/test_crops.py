import dataclasses

import numpy as np
import pytest
import torch

from oracle import example_pose
from metrabs_ros.camera import Camera
from metrabs_ros import distortion
from metrabs_ros.crops import (OFFICIAL_UNDISTORT_STEPS, Augmentations, _official_distort,
                               _official_undistort, crop_geometry, crop_to_image_pixels, image_pyramid,
                               pyramid_levels, sample_bilinear, sampling_map, to_level_pixels,
                               uncrop_poses, undistortable_boxes, warp_cv2, warp_torch)
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


def test_pyramid_level_rule():
    # Official: floor(-log2(scale * antialias)) clipped to [0, 2].
    _, boxes = scene(1)
    geometry = crop_geometry(CAMERA, boxes, 256)
    scales = np.array([2.0, 1.0, 0.51, 0.5, 0.49, 0.26, 0.25, 0.24, 0.01])
    many = dataclasses.replace(geometry.subset(np.zeros(len(scales), int)), scales=scales)
    np.testing.assert_array_equal(pyramid_levels(many), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(pyramid_levels(many, antialias=2), [0, 0, 0, 0, 0, 0, 1, 1, 2])
    np.testing.assert_allclose(geometry.scales, geometry.K[:, 0, 0] / CAMERA.K[0, 0])


def test_image_pyramid_averages_2x2_and_keeps_pixel_centres():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (9, 13, 3)).astype(np.float32)  # odd sides: last row/column dropped
    levels = image_pyramid(image, 3)
    assert [lv.shape for lv in levels] == [(9, 13, 3), (4, 6, 3), (2, 3, 3)]
    np.testing.assert_allclose(levels[1][1, 2], image[2:4, 4:6].mean((0, 1)), rtol=1e-6)
    torch_levels = image_pyramid(torch.from_numpy(image).permute(2, 0, 1)[None], 3)
    for ours, theirs in zip(levels, torch_levels):
        np.testing.assert_allclose(ours, theirs[0].permute(1, 2, 0).numpy(), rtol=1e-6)
    # Level-1 pixel 0 covers level-0 pixels 0 and 1: its centre is level-0 coordinate 0.5.
    assert to_level_pixels(np.float64(0.5), 1) == 0 and to_level_pixels(np.float64(1.5), 2) == 0


@pytest.mark.parametrize('antialias', [1, 2])
def test_large_boxes_sample_the_pyramid_and_do_not_alias(antialias):
    # One-pixel stripes seen through a crop that shrinks them 4x: the pyramid (level 2 at
    # antialias 1, level 1 at antialias 2) averages them to grey; plain sampling aliases.
    stripes = np.zeros((960, 1280, 3), np.float32)
    stripes[:, ::2] = 1
    geometry = crop_geometry(CAMERA, np.array([[200.0, 0, 1000, 960]]), 256)
    levels = pyramid_levels(geometry, antialias)
    assert levels.tolist() == [3 - antialias]
    maps = sampling_map(CAMERA, geometry, antialias, levels=levels)
    pyramid = image_pyramid(stripes, 3)
    crops = {'cv2': warp_cv2(pyramid, maps, antialias, levels)[0],
             'torch': warp_torch(image_pyramid(torch.from_numpy(stripes).permute(2, 0, 1)[None], 3),
                                 maps, antialias=antialias, levels=levels)[0].permute(1, 2, 0).numpy()}
    centre = slice(64, 192)
    for name, crop in crops.items():
        assert np.abs(crop[centre, centre] - 0.5).max() < 0.02, name
    aliased = warp_cv2(stripes, sampling_map(CAMERA, geometry, antialias), antialias)[0]
    assert np.abs(aliased[centre, centre] - 0.5).max() > 0.2
    np.testing.assert_allclose(crops['cv2'], crops['torch'], atol=2e-3)


def test_warps_with_mixed_pyramid_levels_agree():
    _, boxes = scene(2)
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 1, (960, 1280, 3)).astype(np.float32)
    geometry = crop_geometry(CAMERA, boxes, 256, Augmentations.official(3))
    levels = np.arange(len(geometry)) % 3
    maps = sampling_map(CAMERA, geometry, levels=levels)
    level0 = sampling_map(CAMERA, geometry)
    for level in (1, 2):  # each crop's map is in its level's pixels
        np.testing.assert_allclose(maps[levels == level], to_level_pixels(level0[levels == level], level),
                                   atol=1e-4)
    cpu = warp_cv2(image_pyramid(image, 3), maps, levels=levels)
    batched = warp_torch(image_pyramid(torch.from_numpy(image).permute(2, 0, 1)[None], 3), maps,
                         levels=levels).permute(0, 2, 3, 1).numpy()
    assert np.abs(cpu - batched).max() < 1e-2  # cv2.remap: interpolation weights in 1/32 steps
    single = warp_torch(image_pyramid(torch.from_numpy(image).permute(2, 0, 1)[None], 3), maps[1:2],
                        levels=levels[1:2]).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(single, batched[1:2])


def test_undistortable_boxes():
    camera = Camera(K=CAMERA.K, distortion_coeffs=[-0.25, 0, 0, 0, 0], image_size=(1280, 960))
    boxes = np.array([[500, 300, 200, 400], [1250, 380, 220, 420]])
    np.testing.assert_array_equal(undistortable_boxes(camera, boxes), [True, False])
    for mode in ('exact', 'official'):
        with pytest.raises(ValueError, match='distortion cannot be inverted'):
            crop_geometry(camera, boxes, 256, mode=mode)


def test_official_geometry_is_within_1e3_px_of_exact_for_ordinary_boxes():
    # The official float32 arithmetic and 5-step box-point undistortion move the sampling
    # positions by float32 rounding only (the random-weight official model magnifies that).
    _, boxes = scene(3)
    for camera in (CAMERA, Camera(K=CAMERA.K, world_up=CAMERA.world_up)):
        exact = crop_geometry(camera, boxes, 256, Augmentations.official(5))
        official = crop_geometry(camera, boxes, 256, Augmentations.official(5, float32=True),
                                 mode='official')
        assert official.mode == 'official' and official.subset(slice(2)).mode == 'official'
        for values in (official.R, official.K, official.scales):
            np.testing.assert_array_equal(values, values.astype(np.float32))
        np.testing.assert_allclose(official.R, exact.R, atol=1e-6)
        np.testing.assert_allclose(official.K, exact.K, rtol=1e-6)
        for antialias in (1, 2):
            levels = pyramid_levels(exact, antialias)
            np.testing.assert_array_equal(pyramid_levels(official, antialias), levels)
            difference = (sampling_map(camera, official, antialias, levels=levels) -
                          sampling_map(camera, exact, antialias, levels=levels)).abs().max()
            assert difference < 1e-3, (camera.has_distortion, antialias)
    with pytest.raises(ValueError, match='mode'):
        crop_geometry(CAMERA, boxes, 256, mode='float32')


def test_official_undistortion_is_5_fixed_point_steps():
    rng = np.random.default_rng(3)
    xy = rng.uniform(-0.4, 0.4, (200, 2))
    xy32 = torch.tensor(xy, dtype=torch.float32)
    # Zero distortion: both modes leave the points as they are.
    zero = torch.zeros(distortion.N_COEFFS)
    assert torch.equal(_official_undistort(xy32, zero), xy32)
    np.testing.assert_array_equal(distortion.undistort(xy, np.zeros(distortion.N_COEFFS)), xy)
    coeffs = torch.tensor(CAMERA.distortion_coeffs, dtype=torch.float32)
    distorted = distortion.distort(xy, CAMERA.distortion_coeffs)
    np.testing.assert_allclose(_official_distort(xy32, coeffs).double().numpy(), distorted, atol=1e-6)
    # Five steps on this strong lens (k1 = -0.28) leave ~1e-6 (~1e-3 px); they do not converge fully.
    undistorted = _official_undistort(torch.tensor(distorted, dtype=torch.float32), coeffs).double().numpy()
    assert OFFICIAL_UNDISTORT_STEPS == 5
    assert 1e-7 < np.abs(undistorted - xy).max() < 1e-5


def test_official_float32_augmentation_schedule():
    for num_aug in (1, 2, 3, 5, 8):
        exact, official = Augmentations.official(num_aug), Augmentations.official(num_aug, float32=True)
        for name in ('angles_rad', 'scales', 'gammas'):
            values = getattr(official, name)
            np.testing.assert_array_equal(values, values.astype(np.float32))
            np.testing.assert_allclose(values, getattr(exact, name), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(official.flips, exact.flips)


def test_exact_weight_sampler_matches_grid_sample():
    # cv2.remap (OpenCV 4) quantizes its bilinear weights to 1/32 px; the exact-weight sampler
    # computes them in float32 as grid_sample does, with zeros outside and for non-finite positions.
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 1, (37, 53, 3)).astype(np.float32)
    pixels = rng.uniform(-3, 56, (64, 64, 2)).astype(np.float32)
    pixels[0, :4] = [[np.nan, 3], [np.inf, 3], [-1e6, 5], [-0.25, 36.5]]
    grid = torch.from_numpy((pixels / np.array([52, 36], np.float32)) * 2 - 1)
    expected = torch.nn.functional.grid_sample(
        torch.from_numpy(image).permute(2, 0, 1)[None], torch.nan_to_num(grid, nan=-2, posinf=-2)[None],
        mode='bilinear', padding_mode='zeros', align_corners=True)[0].permute(1, 2, 0).numpy()
    ours = sample_bilinear(image, pixels)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    np.testing.assert_array_equal(ours[0, :3], 0)
    assert ours[0, 3].min() > 0  # a quarter pixel outside: still partly the edge pixels
    _, boxes = scene(2)
    image = rng.uniform(0, 1, (960, 1280, 3)).astype(np.float32)
    geometry = crop_geometry(CAMERA, boxes, 256, Augmentations.official(3, float32=True), mode='official')
    levels = np.arange(len(geometry)) % 3
    for antialias in (1, 2):
        maps = sampling_map(CAMERA, geometry, antialias, levels=levels)
        exact = warp_cv2(image_pyramid(image, 3), maps, antialias, levels, exact_weights=True)
        batched = warp_torch(image_pyramid(torch.from_numpy(image).permute(2, 0, 1)[None], 3), maps,
                             antialias=antialias, levels=levels).permute(0, 2, 3, 1).numpy()
        assert np.abs(exact - batched).max() < 1e-6


def test_rays_beyond_the_distortion_fold_are_not_sampled():
    """Barrel distortion r (1 - 0.3 r^2) folds back at r = 1.054: a ray beyond it would be
    distorted back into the image (ghost content in the crop); it maps far outside instead."""
    camera = Camera(K=[[300, 0, 320], [0, 300, 240], [0, 0, 1]],
                    distortion_coeffs=[-0.3, 0, 0, 0, 0], image_size=(640, 480))
    geometry = crop_geometry(camera, np.array([[340.0, 250.0, 60.0, 60.0]]), 64,
                             Augmentations(angles_rad=np.zeros(1), scales=np.full(1, 0.1),
                                           flips=np.zeros(1, bool), gammas=np.ones(1)))
    coords = torch.arange(64, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing='xy'), -1).reshape(1, -1, 2)
    pixels = crop_to_image_pixels(camera, geometry, grid)[0].numpy()
    rays = np.einsum('ji,jk,pk->pi', geometry.R[0], np.linalg.inv(geometry.K[0]),
                     np.concatenate([grid[0].numpy(), np.ones((64 * 64, 1))], 1))
    radius = np.linalg.norm(rays[:, :2] / rays[:, 2:], axis=1)
    radius[rays[:, 2] <= 0] = np.inf  # behind the camera: also far outside
    assert (radius > 1.06).any() and (radius < 1.05).any()
    assert (pixels[radius > 1.06] == -1e6).all()
    expected = camera.project(rays[radius < 1.05])
    np.testing.assert_allclose(pixels[radius < 1.05], expected, atol=1e-6)


def test_undistortion_gives_no_rays_beyond_the_fold():
    """Newton's method converges to unphysical roots beyond the fold radius for pixels near
    the corners of a strongly distorted camera; those pixels have no ray (NaN)."""
    camera = Camera(K=[[390.5, 0, 330.7], [0, 391.7, 222.6], [0, 0, 1]],
                    distortion_coeffs=[-0.2886, 0.01433, -1.812e-4, 2.827e-5, 0.0],
                    image_size=(640, 480))
    grid = np.stack(np.meshgrid(np.arange(0, 640, 2.0), np.arange(0, 480, 2.0)), -1)
    normalized = camera.undistort_pixels(grid)
    finite = np.isfinite(normalized).all(-1)
    assert 0.5 < finite.mean() < 0.95  # the corners have no ray
    radius = np.linalg.norm(normalized[finite], axis=-1)
    assert radius.max() < distortion.fold_radius(camera.distortion_coeffs)
    np.testing.assert_allclose(camera.project(np.concatenate(
        [normalized[finite], np.ones((finite.sum(), 1))], 1)), grid[finite], atol=1e-6)
