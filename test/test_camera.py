import numpy as np
import pytest
import torch

from metrabs_ros import distortion
from metrabs_ros.camera import Camera

K = [[900.0, 0.0, 640.0], [0.0, 910.0, 360.0], [0.0, 0.0, 1.0]]
DISTORTIONS = {
    'none': [],
    'plumb_bob': [-0.28, 0.09, 0.0012, -0.0008, -0.015],
    'rational_polynomial': [0.6, -0.2, 0.0009, 0.0011, 0.01, 0.95, -0.1, 0.03],
    'thin_prism': [-0.25, 0.07, 0.001, -0.0005, -0.01, 0.01, 0.0, 0.0, 0.002, -0.001, 0.0015, 0.0005],
}


def grid_pixels(width=1280, height=720, margin=40, n=15):
    xs, ys = np.meshgrid(np.linspace(margin, width - margin, n), np.linspace(margin, height - margin, n))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


@pytest.mark.parametrize('model', DISTORTIONS)
def test_project_unproject_round_trip(model):
    camera = Camera(K=K, distortion_coeffs=DISTORTIONS[model], image_size=(1280, 720))
    pixels = grid_pixels()
    rays = camera.unproject(pixels)
    assert np.all(np.isfinite(rays))
    np.testing.assert_allclose(np.linalg.norm(rays, axis=-1), 1.0, atol=1e-12)
    assert np.abs(camera.project(rays * 3.7) - pixels).max() < 1e-6

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-1.5, 1.5, (200, 2)), rng.uniform(2, 8, (200, 1))], 1)
    points = points[np.all(np.abs(points[:, :2] / points[:, 2:]) < 0.6, axis=1)]
    rays_back = camera.unproject(camera.project(points))
    true_rays = points / np.linalg.norm(points, axis=-1, keepdims=True)
    angle = np.arccos(np.clip(np.sum(rays_back * true_rays, -1), -1, 1))
    assert angle.max() < 1e-6


def test_distortion_moves_points_and_matches_opencv():
    cv2 = pytest.importorskip('cv2')
    camera = Camera(K=K, distortion_coeffs=DISTORTIONS['rational_polynomial'])
    points = np.array([[0.5, -0.3, 2.0], [-0.8, 0.4, 3.0], [0.1, 0.1, 1.0]])
    ours = camera.project(points)
    theirs, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), np.array(K),
                                  np.array(DISTORTIONS['rational_polynomial']))
    np.testing.assert_allclose(ours, theirs.reshape(-1, 2), atol=1e-6)
    assert np.abs(ours - Camera(K=K).project(points)).max() > 1.0


def test_distort_works_on_torch_tensors():
    coeffs = distortion.as_distortion_coeffs(DISTORTIONS['thin_prism'])
    xy = np.array([[0.2, -0.1], [0.4, 0.3]])
    expected = distortion.distort(xy, coeffs)
    got = distortion.distort(torch.tensor(xy), torch.tensor(coeffs))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_from_fov_uses_larger_side_and_centre():
    camera = Camera.from_fov(55, (640, 480))
    focal = 640 / (2 * np.tan(np.deg2rad(55) / 2))
    np.testing.assert_allclose(camera.K, [[focal, 0, 320], [0, focal, 240], [0, 0, 1]])
    # The ray through the right image edge is at half the field of view.
    ray = camera.unproject(np.array([640.0, 240.0]))
    assert np.rad2deg(np.arctan2(ray[0], ray[2])) == pytest.approx(27.5)


def test_extrinsics_round_trip_and_up_vector():
    angle = np.deg2rad(30)
    R = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = R, [0.1, -1.2, 0.5]
    camera = Camera(K=K, extrinsic=extrinsic, world_up=(0, 0, 2))
    points = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(camera.camera_to_world(camera.world_to_camera(points)), points)
    np.testing.assert_allclose(camera.up_in_camera, R @ [0, 0, 1])
    np.testing.assert_allclose(np.linalg.norm(camera.world_up), 1.0)


@pytest.mark.parametrize('bad_K, message', [
    ([[np.nan, 0, 1], [0, 1, 1], [0, 0, 1]], 'non-finite'),
    ([[np.inf, 0, 1], [0, 1, 1], [0, 0, 1]], 'non-finite'),
    ([[0, 0, 1], [0, 0, 1], [0, 0, 1]], 'focal'),
    ([[-5, 0, 1], [0, 5, 1], [0, 0, 1]], 'focal'),
    ([[5, 0, 1], [0, 5, 1], [0, 0, 2]], r'\[\[fx s cx\]'),
    ([[5, 0], [0, 5]], '3x3'),
])
def test_degenerate_intrinsics_raise(bad_K, message):
    with pytest.raises(ValueError, match=message):
        Camera(K=bad_K)


@pytest.mark.parametrize('kwargs, message', [
    (dict(distortion_coeffs=[0.1, 0.2, 0.3]), 'coefficients'),
    (dict(distortion_coeffs=[np.nan, 0, 0, 0, 0]), 'finite'),
    (dict(extrinsic=np.diag([1.0, 1.0, -1.0, 1.0])), 'rotation'),
    (dict(world_up=(0, 0, 0)), 'world_up'),
    (dict(image_size=(0, 480)), 'image_size'),
])
def test_bad_camera_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Camera(K=K, **kwargs)


def test_from_fov_rejects_bad_fov():
    with pytest.raises(ValueError, match='fov'):
        Camera.from_fov(180, (640, 480))


def test_camera_arrays_are_read_only():
    camera = Camera(K=K)
    with pytest.raises(ValueError):
        camera.K[0, 0] = 1.0
