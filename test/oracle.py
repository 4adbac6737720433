"""Test helpers: exact ("oracle") heatmap logits for known coordinates, and look-at crop cameras."""
from __future__ import annotations

import numpy as np
import torch

from metrabs_ros.model.config import ModelConfig
from metrabs_ros.model.heads import metric_to_heatmap, pixels_to_heatmap

LOG_FLOOR = 1e-30


def axis_log_weights(coords: torch.Tensor, n: int) -> torch.Tensor:
    """(..., ) unit coords -> (..., n) log weights whose soft-argmax mean is exactly the coord."""
    position = coords.clamp(0, 1) * (n - 1)
    lower = position.floor().clamp(max=n - 2)
    frac = position - lower
    weights = torch.zeros(coords.shape + (n,), dtype=torch.float64)
    weights.scatter_(-1, lower.long()[..., None], (1 - frac)[..., None])
    weights.scatter_add_(-1, lower.long()[..., None] + 1, frac[..., None])
    return (weights + LOG_FLOOR).log()


def oracle_logits(coords2d_px: torch.Tensor, coords3d_m: torch.Tensor, config: ModelConfig):
    """Logits (N, J, h, w) and (N, D, J, h, w) decoding to the given 2D pixels / 3D metres.

    2D coordinates outside the heatmap range are clamped (as a real 2D head must).
    """
    n_cells = config.crop_side // config.stride
    c2 = pixels_to_heatmap(coords2d_px.double(), config)
    c3 = metric_to_heatmap(coords3d_m.double(), config)
    if (c3 < 0).any() or (c3 > 1).any():
        raise ValueError('3D coordinates must lie inside the metric box')
    lx, ly = axis_log_weights(c2[..., 0], n_cells), axis_log_weights(c2[..., 1], n_cells)
    logits2d = ly[..., :, None] + lx[..., None, :]
    lx3, ly3 = axis_log_weights(c3[..., 0], n_cells), axis_log_weights(c3[..., 1], n_cells)
    lz3 = axis_log_weights(c3[..., 2], config.depth)
    logits3d = lz3[..., :, None, None] + ly3[..., None, :, None] + lx3[..., None, None, :]
    return logits2d, logits3d.movedim(-3, 1)  # (N, J, D, h, w) -> (N, D, J, h, w)


def look_at_rotation(target: np.ndarray, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """Rotation (3, 3) from a camera frame to a virtual camera whose z axis points at target."""
    z = target / np.linalg.norm(target)
    x = np.cross(z, np.asarray(up))  # y down, so x = z cross (-y)... points right
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def crop_intrinsics(focal: float, side: int) -> np.ndarray:
    return np.array([[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1.0]])


def example_pose(n_joints: int, centre=(0.3, 0.2, 4.0), seed: int = 0) -> np.ndarray:
    """A deterministic (J, 3) point set of human extent (about 1.7 m tall) around centre."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform([-0.4, -0.85, -0.3], [0.4, 0.85, 0.3], size=(n_joints, 3))
    return pose + np.asarray(centre)


class OracleCropModel(torch.nn.Module):
    """A stand-in crop model returning the exact pose in each crop's camera.

    It recomputes the crop cameras the estimator will use (same camera, boxes, augmentations)
    and recognizes each crop by its intrinsics; flipped crops get mirrored joint labels, as a
    real model seeing a mirror image would give. Records the batch sizes it was called with.
    """

    def __init__(self, camera, boxes, poses_cam, num_aug, skeleton, side=256):
        super().__init__()
        from metrabs_ros.crops import Augmentations, crop_geometry
        from metrabs_ros.model.output_skeletons import OutputSkeletons
        self.config = ModelConfig(backbone='resnet18', joint_names=skeleton.joint_names,
                                  crop_side=side)
        self.output_skeletons = OutputSkeletons.identity(skeleton)
        geometry = crop_geometry(camera, np.asarray(boxes)[:, :4], side,
                                 Augmentations.official(num_aug))
        in_crop = geometry.to_crop(np.asarray(poses_cam)[geometry.box_index])
        in_crop = np.where(geometry.flips[:, None, None], in_crop[:, skeleton.mirror], in_crop)
        self.table_K = geometry.K
        self.table_poses = in_crop
        self.batch_sizes = []
        self.crop_shapes = set()

    def forward(self, crops, intrinsics):
        from metrabs_ros.model.metrabs import CropOutput
        self.batch_sizes.append(len(crops))
        self.crop_shapes.add(tuple(crops.shape[1:]))
        K = intrinsics.double().cpu().numpy()
        match = np.abs(self.table_K[None] - K[:, None]).reshape(len(K), len(self.table_K), -1)
        index = match.max(-1).argmin(-1)
        assert np.all(match.max(-1)[np.arange(len(K)), index] < 1e-3), 'unknown crop camera'
        poses = torch.as_tensor(self.table_poses[index], dtype=torch.float32)
        n, j = poses.shape[:2]
        return CropOutput(poses, torch.zeros(n, j, 2), poses, torch.ones(n, j, dtype=torch.bool))


def human_pose(skeleton, centre=(0.0, 0.0, 4.0), seed: int = 0) -> np.ndarray:
    """(J, 3) a standing adult of `skeleton`, turned about the vertical, small noise, metres."""
    from metrabs_ros.suppression import CANONICAL_JOINTS_M
    rng = np.random.default_rng(seed)
    pose = np.array([CANONICAL_JOINTS_M[name] for name in skeleton.joint_names])
    pose = pose - pose.mean(0) + rng.normal(0, 0.02, pose.shape)
    yaw = rng.uniform(-np.pi, np.pi)
    rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    return pose @ rotation.T + np.asarray(centre)
