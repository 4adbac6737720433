"""Multi-person absolute 3D pose estimation on full images (the official detect_poses API).

image -> person boxes -> perspective crops x test-time augmentations -> batched crop model ->
un-augment -> camera (or world) frame -> average, per-joint uncertainty -> suppression.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from metrabs_ros.bundled import DomainNote
from metrabs_ros.camera import DEFAULT_FOV_DEGREES, Camera
from metrabs_ros.crops import (Augmentations, CropGeometry, crop_geometry, decode_gamma,
                               encode_gamma, image_pyramid, pyramid_levels, sampling_map,
                               uncrop_poses, undistortable_boxes, warp_cv2, warp_torch)
from metrabs_ros.detection import DEFAULT_THRESHOLD, PersonDetector
from metrabs_ros.model.metrabs import Metrabs
from metrabs_ros.skeletons import Skeleton, mirror_permutation
from metrabs_ros.stage_timer import StageTimer
from metrabs_ros.suppression import joint_spread, plausible_pose_indices

MAX_IMAGE_PIXELS = 100_000_000
CROP_BACKENDS = ('auto', 'cv2', 'torch')
log = logging.getLogger('metrabs_ros')


@dataclass(frozen=True)
class PoseResult:
    """Poses of P people. With average_aug=False, poses3d/poses2d have an extra A axis after P.

    boxes: (P, 5) x, y, w, h, score (pixels); poses3d: (P, J, 3) metres, camera optical frame
    (world frame when the camera has extrinsics); poses2d: (P, J, 2) distorted image pixels;
    uncertainty: (P, J) metres, spread of each joint across the augmentations.
    """

    boxes: np.ndarray
    poses3d: np.ndarray
    poses2d: np.ndarray
    uncertainty: np.ndarray
    skeleton: Skeleton
    frame: str

    def __len__(self) -> int:
        return len(self.boxes)


class PoseEstimator:
    """Runs a Metrabs crop model (and optionally a person detector) on whole images.

    crop_backend: 'cv2' (cv2.remap on the CPU; grid_sample's float32 bilinear weights for a model
    with the 'official' crop geometry), 'torch' (batched grid_sample on the model's device) or
    'auto' (cv2 on CPU, torch on GPU). half_precision: fp16 autocast (default: on GPU).
    """

    def __init__(self, model: Metrabs, detector: PersonDetector | None = None,
                 device: str | torch.device = 'auto', half_precision: bool | None = None,
                 crop_backend: str = 'auto'):
        if crop_backend not in CROP_BACKENDS:
            raise ValueError(f'crop_backend must be one of {CROP_BACKENDS}, got {crop_backend!r}')
        self.device = resolve_device(device)
        self.use_cv2 = crop_backend == 'cv2' or (crop_backend == 'auto' and self.device.type == 'cpu')
        self.model = model.to(self.device).eval()
        self.detector = detector.to(self.device) if detector is not None else None
        self.half_precision = self.device.type == 'cuda' if half_precision is None else half_precision
        self.raw_mirror = mirror_permutation(model.config.joint_names)
        self.timer = StageTimer(self.device)  # enable for per-stage timings (benchmarks)
        self.domain_note = DomainNote(model.config.training_domain)

    def detect_poses(self, image: np.ndarray, camera: Camera | None = None, *,
                     detector_threshold: float = DEFAULT_THRESHOLD,
                     detector_nms_iou_threshold: float = 0.7,
                     max_detections: int = -1, detector_flip_aug: bool = False,
                     suppress_implausible_poses: bool = True, **options) -> PoseResult:
        """Detect people in an RGB uint8 (H, W, 3) image and estimate their poses.

        options: see estimate_poses (default_fov_degrees, intrinsic_matrix, distortion_coeffs,
        extrinsic_matrix, world_up_vector, internal_batch_size, antialias_factor, num_aug,
        average_aug, skeleton, gamma_correct).
        """
        if self.detector is None:
            raise ValueError('this PoseEstimator has no detector; use estimate_poses with boxes')
        image = check_image(image)
        with self.timer('detector'):
            boxes = self.detector(image, detector_threshold, detector_nms_iou_threshold,
                                  max_detections, detector_flip_aug)
        return self._estimate(image, boxes, camera, suppress=suppress_implausible_poses, **options)

    def estimate_poses(self, image: np.ndarray, boxes: np.ndarray, camera: Camera | None = None,
                       **options) -> PoseResult:
        """Estimate poses for given person boxes (B, 4) x, y, w, h or (B, 5) with scores.

        camera: a Camera; or build one from intrinsic_matrix, distortion_coeffs,
        extrinsic_matrix, world_up_vector; without intrinsics a default_fov_degrees camera.
        internal_batch_size: crops per model call, as whole boxes with all their augmentations
        (at least one box; as the official code); antialias_factor: render crops that many
        times larger and average down; num_aug: test-time augmentations per person;
        average_aug: average them (else return all); skeleton: output joint set;
        gamma_correct: resample in linear light. A box where the lens distortion cannot be
        inverted is skipped with a warning; the result lists the boxes that were kept.
        """
        image = check_image(image)
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
            raise ValueError(f'boxes must have shape (B, 4) or (B, 5), got {boxes.shape}')
        if boxes.shape[1] == 4:
            boxes = np.concatenate([boxes, np.ones((len(boxes), 1))], axis=1)
        return self._estimate(image, boxes, camera, suppress=False, **options)

    def _estimate(self, image: np.ndarray, boxes: np.ndarray, camera: Camera | None, *,
                  suppress: bool, default_fov_degrees: float = DEFAULT_FOV_DEGREES,
                  intrinsic_matrix=None, distortion_coeffs=None, extrinsic_matrix=None,
                  world_up_vector=None, internal_batch_size: int = 64, antialias_factor: int = 1,
                  num_aug: int = 5, average_aug: bool = True, skeleton: str | None = None,
                  gamma_correct: bool = True) -> PoseResult:
        self.domain_note.check(image)
        camera = resolve_camera(image, camera, default_fov_degrees, intrinsic_matrix,
                                distortion_coeffs, extrinsic_matrix, world_up_vector)
        outputs = self.model.output_skeletons
        skeleton_name = skeleton or outputs.default
        out_skeleton = outputs.skeletons.get(skeleton_name)
        if out_skeleton is None:
            raise ValueError(f'unknown skeleton {skeleton_name!r}; this model has {outputs.names}')
        if internal_batch_size < 1 or antialias_factor < 1:
            raise ValueError('internal_batch_size and antialias_factor must be at least 1')
        augmentations = Augmentations.official(  # the official geometry uses its float32 values
            num_aug, float32=self.model.config.crop_geometry == 'official')
        frame = 'camera' if np.allclose(camera.extrinsic, np.eye(4)) else 'world'
        usable = undistortable_boxes(camera, boxes[:, :4])
        if not usable.all():
            log.warning('skipping %d of %d person boxes: they lie where the lens distortion cannot '
                        'be inverted', np.count_nonzero(~usable), len(boxes))
            boxes = boxes[usable]
        if len(boxes) == 0:
            return _empty_result(out_skeleton, frame, num_aug, average_aug)

        with self.timer('cropping'):
            geometry = crop_geometry(camera, boxes[:, :4], self.model.config.crop_side,
                                     augmentations, mode=self.model.config.crop_geometry)
        poses_crop = self._predict_crops(image, camera, geometry, internal_batch_size,
                                         antialias_factor, gamma_correct)
        with self.timer('post-processing'):
            return self._finish(poses_crop, geometry, boxes, camera, skeleton_name, out_skeleton,
                                num_aug, average_aug, suppress, frame)

    def _finish(self, poses_crop, geometry, boxes, camera, skeleton_name, out_skeleton, num_aug,
                average_aug, suppress, frame) -> PoseResult:
        """Crop-camera poses -> averaged, suppressed, projected camera/world poses."""
        outputs = self.model.output_skeletons
        n_box, n_joints = len(boxes), out_skeleton.n_joints
        poses_raw = uncrop_poses(poses_crop, geometry, self.raw_mirror)
        poses_cam = outputs.select(torch.from_numpy(poses_raw), skeleton_name).numpy()
        poses_aug = poses_cam.reshape(num_aug, n_box, n_joints, 3).transpose(1, 0, 2, 3)
        poses_mean = poses_aug.mean(axis=1)
        uncertainty = joint_spread(poses_aug)
        poses2d_aug = camera.project(poses_aug)
        poses2d = poses2d_aug.mean(axis=1)  # as official: the mean of the projections

        keep = np.arange(n_box)
        if suppress:
            keep = plausible_pose_indices(
                poses_mean, poses_aug, poses2d, boxes, out_skeleton,
                rules=self.model.config.implausible_pose_rules,
                coverage=self.model.config.box_coverage)
        poses3d = poses_mean if average_aug else poses_aug
        poses2d = poses2d if average_aug else poses2d_aug
        if frame == 'world':
            poses3d = camera.camera_to_world(poses3d)
        return PoseResult(boxes[keep], poses3d[keep], poses2d[keep], uncertainty[keep],
                          out_skeleton, frame)

    def _predict_crops(self, image: np.ndarray, camera: Camera, geometry: CropGeometry,
                       batch_size: int, antialias: int, gamma_correct: bool) -> np.ndarray:
        """(N, J_raw, 3) float64 crop-camera poses for all crops.

        Each model call takes whole boxes, all their augmentations together (as the official
        code, which matters for the batch-normalized reference-point solve).
        """
        encoding = 2.2 if gamma_correct else 1.0
        with self.timer('cropping'):
            levels = pyramid_levels(geometry, antialias)
            source = decode_gamma(image, encoding)
            if not self.use_cv2:
                source = torch.from_numpy(source).to(self.device).permute(2, 0, 1)[None]
            pyramid = image_pyramid(source, int(levels.max()) + 1)
        n_box = int(geometry.box_index.max()) + 1
        boxes_per_call = max(1, batch_size // (len(geometry) // n_box))
        results = np.zeros((len(geometry), self.model.config.n_joints, 3))
        for first_box in range(0, n_box, boxes_per_call):
            with self.timer('cropping'):
                index = np.flatnonzero((geometry.box_index >= first_box) &
                                       (geometry.box_index < first_box + boxes_per_call))
                part = geometry.subset(index)
                maps = sampling_map(camera, part, antialias, device=self.device, levels=levels[index])
                if self.use_cv2:
                    crops = torch.from_numpy(warp_cv2(pyramid, maps, antialias, levels[index],
                                                      exact_weights=geometry.mode == 'official'))
                    crops = crops.permute(0, 3, 1, 2).to(self.device)
                else:
                    crops = warp_torch(pyramid, maps, antialias=antialias, levels=levels[index])
                crops = encode_gamma(crops, part.gammas, encoding)
                K = torch.as_tensor(part.K, dtype=torch.float32, device=self.device)
            with self.timer('model'), torch.inference_mode(), torch.autocast(
                    self.device.type, dtype=torch.float16, enabled=self.half_precision):
                results[index] = self.model(crops, K).poses3d_m.double().cpu().numpy()
        return results


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available, else cpu; otherwise torch.device(device)."""
    if str(device) == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device cuda requested but no CUDA GPU is available')
    return device


def resolve_camera(image: np.ndarray, camera: Camera | None, default_fov_degrees: float,
                   intrinsic_matrix=None, distortion_coeffs=None, extrinsic_matrix=None,
                   world_up_vector=None) -> Camera:
    """The given Camera, or one built from the official-style arguments."""
    if camera is not None:
        return camera
    height, width = image.shape[:2]
    extras = {k: v for k, v in dict(distortion_coeffs=distortion_coeffs,
                                    extrinsic=extrinsic_matrix, world_up=world_up_vector).items()
              if v is not None}
    if intrinsic_matrix is None:
        return Camera.from_fov(default_fov_degrees, (width, height), **extras)
    return Camera(K=intrinsic_matrix, image_size=(width, height), **extras)


def check_image(image) -> np.ndarray:
    """Return image if it is an RGB uint8 (H, W, 3) array with pixels, else raise ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be a numpy array (H, W, 3) uint8, got {type(image).__name__}')
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ValueError(f'image must be RGB (H, W, 3); got grayscale of shape {image.shape}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must have shape (H, W, 3), got {image.shape}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8, got {image.dtype}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'image is empty: shape {image.shape}')
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f'image of {image.shape[1]}x{image.shape[0]} exceeds '
                         f'{MAX_IMAGE_PIXELS} pixels')
    return image


def _empty_result(skeleton: Skeleton, frame: str, num_aug: int, average_aug: bool) -> PoseResult:
    aug = () if average_aug else (num_aug,)
    n = skeleton.n_joints
    return PoseResult(np.zeros((0, 5)), np.zeros((0, *aug, n, 3)), np.zeros((0, *aug, n, 2)),
                      np.zeros((0, n)), skeleton, frame)
