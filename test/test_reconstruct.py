import numpy as np
import pytest
import torch

from oracle import crop_intrinsics, example_pose, look_at_rotation, oracle_logits
from metrabs_ros.camera import Camera
from metrabs_ros.model.config import ModelConfig
from metrabs_ros.model.heads import decode_logits
from metrabs_ros.model.metrabs import is_within_fov
from metrabs_ros.model.reconstruct import reconstruct_absolute, reference_point
from metrabs_ros.skeletons import get_skeleton

SKELETON = get_skeleton('smpl_24')
CAMERA = Camera(K=[[1000, 0, 960], [0, 1010, 540], [0, 0, 1]],
                distortion_coeffs=[-0.3, 0.1, 0.001, -0.002, -0.02], image_size=(1920, 1080))


def config(**kwargs):
    return ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names, **kwargs)


def oracle_reconstruction(cfg, focal, centre=(0.3, 0.2, 4.0), seed=0):
    """Known pose -> ideal logits in a look-at crop -> decode -> reconstruct -> back to camera."""
    pose = example_pose(SKELETON.n_joints, centre, seed)
    R = look_at_rotation(pose.mean(0), up=CAMERA.up_in_camera)
    pose_crop = pose @ R.T
    K_crop = crop_intrinsics(focal, cfg.crop_side)
    pixels = pose_crop[:, :2] / pose_crop[:, 2:] * focal + cfg.crop_side / 2
    relative = pose_crop - pose_crop.mean(0) + cfg.box_size_m / 2  # any offset inside the box
    logits2d, logits3d = oracle_logits(torch.tensor(pixels)[None], torch.tensor(relative)[None], cfg)
    coords2d, coords3d = decode_logits(logits2d, logits3d, cfg)
    in_fov = is_within_fov(coords2d, cfg)
    estimate_crop = reconstruct_absolute(
        coords2d, coords3d, torch.tensor(K_crop)[None], in_fov,
        mix_3d_inside_fov=cfg.mix_3d_inside_fov, ridge_lambda=cfg.ridge_lambda)[0].numpy()
    return pose, estimate_crop @ R, int(in_fov.sum())


@pytest.mark.parametrize('crop_side', [256, 384])
@pytest.mark.parametrize('focal_factor, min_in, max_in', [
    (0.9, 24, 24),   # whole person in the crop
    (1.8, 10, 18),   # truncated: a third outside
    (3.0, 2, 9),     # heavily truncated
])
def test_oracle_round_trip_is_exact(crop_side, focal_factor, min_in, max_in):
    cfg = config(crop_side=crop_side)
    focal = focal_factor * crop_side * 4.0 / 2.0  # person ~1.7 m tall at ~4 m
    pose, estimate, n_in_fov = oracle_reconstruction(cfg, focal)
    assert min_in <= n_in_fov <= max_in
    error_mm = np.linalg.norm(estimate - pose, axis=-1) * 1000
    assert error_mm.max() < 1.0
    pixel_error = np.abs(CAMERA.project(estimate) - CAMERA.project(pose)).max()
    assert pixel_error < 0.1


def test_official_ridge_is_exact_to_a_millimetre_when_untruncated():
    cfg = config(ridge_lambda=1e-2)
    pose, estimate, n_in_fov = oracle_reconstruction(cfg, focal=0.9 * 256 * 2)
    assert n_in_fov == SKELETON.n_joints
    assert np.linalg.norm(estimate - pose, axis=-1).max() < 1e-3


def test_official_coordinate_flags_round_trip():
    # Untruncated: with centered_stride=False the FOV test admits a band near the crop border
    # that the 2D head cannot represent (as in the official code), so truncation is not exact.
    for flags in [dict(centered_stride=False, legacy_centered_stride_bug=True),
                  dict(centered_stride=False), dict(mix_3d_inside_fov=0.0)]:
        pose, estimate, _ = oracle_reconstruction(config(**flags), focal=0.9 * 256 * 2)
        assert np.linalg.norm(estimate - pose, axis=-1).max() < 1e-3, flags


def numpy_reference_point(normalized, rel, in_fov, ridge_lambda, s2=None, sb=None):
    """Stacked weighted ridge least squares with numpy.linalg.lstsq (one sample).

    s2, sb: RMS scales of the 2D and of the right-hand side (default: this sample's own).
    """
    u, v = normalized[:, 0], normalized[:, 1]
    b = np.concatenate([u * rel[:, 2] - rel[:, 0], v * rel[:, 2] - rel[:, 1]])
    A = np.zeros((2 * len(u), 3))
    A[:len(u), 0], A[len(u):, 1] = 1, 1
    A[:len(u), 2], A[len(u):, 2] = -u, -v
    s2 = np.sqrt(np.mean(normalized ** 2)) if s2 is None else s2
    sb = np.sqrt(np.mean(b ** 2)) if sb is None else sb
    A_n = A.copy()
    A_n[:, 2] /= s2
    w = np.tile(in_fov + 1e-4, 2)
    A_stack = np.concatenate([A_n * w[:, None], np.sqrt(ridge_lambda) * np.eye(3)])
    b_stack = np.concatenate([b / sb * w, np.zeros(3)])
    x = np.linalg.lstsq(A_stack, b_stack, rcond=None)[0]
    return x * np.array([sb, sb, sb / s2])


@pytest.mark.parametrize('normalization', ['per_crop', 'batch'])
@pytest.mark.parametrize('ridge_lambda', [0.0, 1e-6, 1e-2, 1.0])
def test_least_squares_matches_numpy_reference(ridge_lambda, normalization):
    rng = np.random.default_rng(3)
    normalized = rng.uniform(-0.4, 0.4, (4, 17, 2))
    rel = rng.uniform(0, 2, (4, 17, 3))
    in_fov = rng.random((4, 17)) > 0.3
    ours = reference_point(torch.tensor(normalized), torch.tensor(rel), torch.tensor(in_fov),
                           ridge_lambda=ridge_lambda, normalization=normalization).numpy()
    scales = {}
    if normalization == 'batch':  # one RMS over all samples (official ptu3d.py)
        rhs = normalized * rel[..., 2:] - rel[..., :2]
        scales = {'s2': np.sqrt(np.mean(normalized ** 2)), 'sb': np.sqrt(np.mean(rhs ** 2))}
    for i in range(4):
        expected = numpy_reference_point(normalized[i], rel[i], in_fov[i].astype(float), ridge_lambda,
                                         **scales)
        np.testing.assert_allclose(ours[i], expected, rtol=1e-9, atol=1e-12)


def batch_of_crops(seed=4, n=5):
    rng = np.random.default_rng(seed)
    coords2d = torch.tensor(rng.uniform(20, 230, (n, 24, 2)))
    rel = torch.tensor(rng.uniform(0, 2, (n, 24, 3)))
    K = torch.tensor(crop_intrinsics(500, 256))[None].repeat(n, 1, 1)
    in_fov = torch.tensor(rng.random((n, 24)) > 0.2)
    return coords2d, rel, K, in_fov


def test_per_crop_result_does_not_depend_on_batch_companions():
    coords2d, rel, K, in_fov = batch_of_crops()
    together = reconstruct_absolute(coords2d, rel, K, in_fov, normalization='per_crop')
    alone = reconstruct_absolute(coords2d[2:3], rel[2:3], K[2:3], in_fov[2:3],
                                 normalization='per_crop')
    torch.testing.assert_close(together[2:3], alone)


def test_batch_normalization_couples_the_crops_of_a_call():
    # The official solve: the ridge acts on unknowns scaled by the batch RMS, so a crop's result
    # depends on its companions; alone, it equals the per-crop solve.
    coords2d, rel, K, in_fov = batch_of_crops()
    rel[0] *= 3  # a companion of a different scale

    def solve(sl: slice, how: str) -> torch.Tensor:
        return reconstruct_absolute(coords2d[sl], rel[sl], K[sl], in_fov[sl], ridge_lambda=1e-2,
                                    normalization=how)

    together = solve(slice(None), 'batch')
    torch.testing.assert_close(solve(slice(2, 3), 'batch'), solve(slice(2, 3), 'per_crop'))
    assert (together[2] - solve(slice(2, 3), 'batch')[0]).abs().max() > 1e-6
    with pytest.raises(ValueError, match='normalization'):
        solve(slice(None), 'per_batch')


@pytest.mark.parametrize('normalization', ['per_crop', 'batch'])
def test_gradients_flow_gradcheck(normalization):
    rng = np.random.default_rng(5)
    coords2d = torch.tensor(rng.uniform(40, 200, (2, 6, 2)), requires_grad=True)
    rel = torch.tensor(rng.uniform(0, 2, (2, 6, 3)), requires_grad=True)
    K = torch.tensor(crop_intrinsics(400, 256))[None].repeat(2, 1, 1)
    in_fov = torch.tensor([[True] * 5 + [False], [True] * 6])
    for weak in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b: reconstruct_absolute(a, b, K, in_fov, weak_perspective=weak,
                                              ridge_lambda=1e-2, normalization=normalization),
            (coords2d, rel))


def test_weak_perspective_recovers_distant_fronto_parallel_pose():
    pose = example_pose(24, centre=(0.0, 0.0, 30.0))
    pose[:, 2] = 30.0  # flat: weak perspective is exact up to the mean depth
    focal = 5000.0
    K = torch.tensor(crop_intrinsics(focal, 256))[None]
    pixels = torch.tensor(pose[:, :2] / pose[:, 2:] * focal + 128)[None]
    rel = torch.tensor(pose - pose.mean(0) + 1.0)[None]
    in_fov = torch.ones(1, 24, dtype=torch.bool)
    estimate = reconstruct_absolute(pixels, rel, K, in_fov, weak_perspective=True)[0].numpy()
    assert np.linalg.norm(estimate - pose, axis=-1).max() < 1e-6


def test_low_precision_inputs_give_float32_results():
    rng = np.random.default_rng(6)
    coords2d = torch.tensor(rng.uniform(40, 200, (3, 24, 2)), dtype=torch.float32)
    rel = torch.tensor(rng.uniform(0, 2, (3, 24, 3)), dtype=torch.float32)
    K = torch.tensor(crop_intrinsics(400, 256), dtype=torch.float32)[None].repeat(3, 1, 1)
    in_fov = torch.ones(3, 24, dtype=torch.bool)
    reference = reconstruct_absolute(coords2d, rel, K, in_fov)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        result = reconstruct_absolute(coords2d.bfloat16(), rel.bfloat16(), K, in_fov)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, reference, atol=0.05, rtol=0.02)


@pytest.mark.parametrize('weak_perspective', [False, True])
@pytest.mark.parametrize('n_in_view', [0, 1, 2])
def test_gradients_stay_finite_with_almost_no_joint_in_view(weak_perspective, n_in_view):
    torch.manual_seed(0)
    coords2d = (torch.rand(2, 6, 2) * 100).requires_grad_()
    coords3d = torch.randn(2, 6, 3, requires_grad=True)
    K = torch.tensor([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]).expand(2, 3, 3)
    in_fov = torch.zeros(2, 6, dtype=torch.bool)
    in_fov[:, :n_in_view] = True
    poses = reconstruct_absolute(coords2d, coords3d, K, in_fov, weak_perspective=weak_perspective)
    poses.abs().sum().backward()
    assert torch.isfinite(coords2d.grad).all() and torch.isfinite(coords3d.grad).all()
