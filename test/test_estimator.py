import dataclasses
import logging

import numpy as np
import pytest
import torch

from oracle import OracleCropModel, example_pose, human_pose
from metrabs_ros.camera import Camera
from metrabs_ros.detection import PersonDetector
from metrabs_ros.estimator import PoseEstimator
from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.skeletons import get_skeleton

SKELETON = get_skeleton('smpl_24')
CAMERA = Camera(K=[[800, 0, 650], [0, 805, 470], [0, 0, 1]],
                distortion_coeffs=[-0.28, 0.09, 0.0012, -0.0008, -0.015], image_size=(1280, 960))
CENTRES = [(-0.9, 0.2, 4.0), (0.8, 0.1, 5.0), (0.1, 0.3, 3.0)]
IMAGE = np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8)


def people(camera=CAMERA, n=3):
    poses = np.stack([human_pose(SKELETON, centre=c, seed=i) for i, c in enumerate(CENTRES[:n])])
    boxes = []
    for pose in poses:
        px = camera.project(pose)
        lo, hi = px.min(0), px.max(0)
        boxes.append([*lo, *(hi - lo), 0.9])
    return poses, np.array(boxes)


@pytest.mark.parametrize('num_aug', [1, 5])
def test_oracle_model_gives_ground_truth_absolute_poses(num_aug):
    poses, boxes = people()
    model = OracleCropModel(CAMERA, boxes, poses, num_aug, SKELETON)
    result = PoseEstimator(model, device='cpu').estimate_poses(
        IMAGE, boxes[:, :4], CAMERA, num_aug=num_aug)
    assert len(result) == 3 and result.frame == 'camera'
    assert np.linalg.norm(result.poses3d - poses, axis=-1).max() < 1e-3
    assert np.abs(result.poses2d - CAMERA.project(poses)).max() < 1e-2
    np.testing.assert_allclose(result.uncertainty, 0, atol=1e-6)
    np.testing.assert_allclose(result.boxes[:, 4], 1.0)
    assert model.crop_shapes == {(3, 256, 256)}


def test_batch_size_does_not_change_results():
    # Each model call takes whole boxes with all 5 augmentations (at least one box), as the
    # official code does: its batch-normalized reference-point solve depends on the batch.
    poses, boxes = people()
    outputs = []
    for batch, expected_calls in ((1, [5, 5, 5]), (12, [10, 5]), (64, [15])):
        model = OracleCropModel(CAMERA, boxes, poses, 5, SKELETON)
        result = PoseEstimator(model, device='cpu').estimate_poses(
            IMAGE, boxes, CAMERA, num_aug=5, internal_batch_size=batch)
        assert model.batch_sizes == expected_calls
        outputs.append(result)
    np.testing.assert_array_equal(outputs[0].poses3d, outputs[1].poses3d)
    np.testing.assert_array_equal(outputs[0].uncertainty, outputs[1].uncertainty)


def test_real_model_batch_size_and_all_augmentations():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='smpl_24', crop_side=128)
    estimator = PoseEstimator(Metrabs(cfg), device='cpu')
    _, boxes = people()
    one = estimator.estimate_poses(IMAGE, boxes, CAMERA, num_aug=3, internal_batch_size=1)
    many = estimator.estimate_poses(IMAGE, boxes, CAMERA, num_aug=3, internal_batch_size=64)
    np.testing.assert_allclose(one.poses3d, many.poses3d, atol=1e-4)
    every = estimator.estimate_poses(IMAGE, boxes, CAMERA, num_aug=3, average_aug=False)
    assert every.poses3d.shape == (3, 3, 24, 3) and every.poses2d.shape == (3, 3, 24, 2)
    np.testing.assert_allclose(every.poses3d.mean(1), many.poses3d, atol=1e-4)
    assert np.all(every.poses3d.std(1).sum(-1) > 0)  # augmentations really differ
    # As the official code: the 2D pose is the mean of each augmentation's projection (not the
    # projection of the mean 3D pose, which differs under distortion and depth spread).
    np.testing.assert_allclose(every.poses2d.mean(1), many.poses2d, atol=1e-3)
    assert np.abs(CAMERA.project(many.poses3d) - many.poses2d).max() > 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU; none on this machine')
@pytest.mark.parametrize('crop_backend', ['cv2', 'torch'])
def test_cuda_estimator_matches_cpu(crop_backend):
    """The whole estimator on the GPU (crops, fp16 model, skeleton selection, reconstruction)
    gives the CPU's poses."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names,
                      joint_edges=SKELETON.edges.tolist(), skeleton='smpl_24', crop_side=128)
    model = Metrabs(cfg)
    _, boxes = people()
    cpu = PoseEstimator(model, device='cpu').estimate_poses(IMAGE, boxes, CAMERA, num_aug=3)
    gpu = PoseEstimator(model, device='cuda', crop_backend=crop_backend).estimate_poses(
        IMAGE, boxes, CAMERA, num_aug=3)
    assert gpu.poses3d.shape == cpu.poses3d.shape == (3, 24, 3)
    assert np.median(np.linalg.norm(gpu.poses3d - cpu.poses3d, axis=-1)) < 0.05


@pytest.mark.parametrize('antialias', [1, 2])
def test_cv2_and_batched_torch_crop_paths_agree_end_to_end(antialias):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names, crop_side=128)
    model = Metrabs(cfg)
    _, boxes = people()
    results = [PoseEstimator(model, device='cpu', crop_backend=backend).estimate_poses(
        IMAGE, boxes, CAMERA, num_aug=3, antialias_factor=antialias) for backend in ('cv2', 'torch')]
    difference = np.abs(results[0].poses3d - results[1].poses3d).max()
    print(f'antialias {antialias}: max |cv2 - torch| pose difference {difference * 1000:.3f} mm')
    assert difference < 0.01


def test_official_crop_geometry_end_to_end():
    # Official releases (crop_geometry 'official'): float32 crop cameras within float32 rounding of
    # the exact ones, and the cv2 back-end samples as grid_sample does, so the back-ends agree to it.
    poses, boxes = people()
    oracle = OracleCropModel(CAMERA, boxes, poses, 5, SKELETON)
    oracle.config = dataclasses.replace(oracle.config, crop_geometry='official')
    result = PoseEstimator(oracle, device='cpu').estimate_poses(IMAGE, boxes[:, :4], CAMERA, num_aug=5)
    assert np.linalg.norm(result.poses3d - poses, axis=-1).max() < 1e-4
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', joint_names=SKELETON.joint_names, crop_side=128,
                      crop_geometry='official')
    model = Metrabs(cfg)
    for antialias in (1, 2):
        results = [PoseEstimator(model, device='cpu', crop_backend=backend).estimate_poses(
            IMAGE, boxes, CAMERA, num_aug=3, antialias_factor=antialias) for backend in ('cv2', 'torch')]
        difference = np.abs(results[0].poses3d - results[1].poses3d).max()
        print(f'antialias {antialias}: max |cv2 - torch| pose difference {difference * 1000:.5f} mm')
        assert difference < 1e-5


def test_world_frame_with_extrinsics():
    angle = np.deg2rad(20)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                         [0, np.sin(angle), np.cos(angle)]]
    extrinsic[:3, 3] = [0.2, 1.5, -0.3]
    camera = Camera(K=CAMERA.K, distortion_coeffs=CAMERA.distortion_coeffs, extrinsic=extrinsic,
                    world_up=(0, -1, 0))
    poses, boxes = people(camera)
    model = OracleCropModel(camera, boxes, poses, 5, SKELETON)
    result = PoseEstimator(model, device='cpu').estimate_poses(IMAGE, boxes, camera, num_aug=5)
    assert result.frame == 'world'
    assert np.abs(result.poses3d - camera.camera_to_world(poses)).max() < 1e-3


def test_official_style_camera_arguments():
    poses, boxes = people(n=1)
    model = OracleCropModel(CAMERA, boxes, poses, 1, SKELETON)
    result = PoseEstimator(model, device='cpu').estimate_poses(
        IMAGE, boxes, intrinsic_matrix=CAMERA.K, distortion_coeffs=CAMERA.distortion_coeffs[:5],
        num_aug=1)
    assert np.abs(result.poses3d - poses).max() < 1e-3


def test_box_where_the_distortion_cannot_be_inverted_is_skipped(caplog):
    camera = Camera(K=CAMERA.K, distortion_coeffs=[-0.25, 0, 0, 0, 0], image_size=(1280, 960))
    poses, boxes = people(camera)
    past_edge = np.array([1250, 380, 220, 420, 0.8])  # right midpoint where r(1 - r^2/4) > max
    all_boxes = np.insert(boxes, 1, past_edge, axis=0)
    # The oracle knows only the good boxes' crops: a crop of the skipped box would fail it.
    model = OracleCropModel(camera, boxes, poses, 5, SKELETON)
    xyxy = np.concatenate([all_boxes[:, :2], all_boxes[:, :2] + all_boxes[:, 2:4],
                           all_boxes[:, 4:]], 1)
    estimator = PoseEstimator(model, FixedDetector(xyxy), device='cpu')
    with caplog.at_level(logging.WARNING, logger='metrabs_ros'):
        results = [estimator.estimate_poses(IMAGE, all_boxes, camera, num_aug=5),
                   estimator.detect_poses(IMAGE, camera, num_aug=5, suppress_implausible_poses=False,
                                          detector_nms_iou_threshold=0.99)]
    for result in results:
        assert len(result) == 3 and result.poses3d.shape == (3, 24, 3)
        np.testing.assert_allclose(result.boxes, boxes, atol=1e-4)  # aligned with the poses
        assert np.linalg.norm(result.poses3d - poses, axis=-1).max() < 1e-3
    warnings = [r for r in caplog.records if r.name == 'metrabs_ros']
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert 'distortion' in warnings[0].getMessage()


class FixedDetector(PersonDetector):
    def __init__(self, boxes_xyxy_score):
        self.boxes = torch.as_tensor(boxes_xyxy_score, dtype=torch.float32)

    def _detect_xyxy(self, image):
        return self.boxes

    def to(self, device):
        return self


def test_detect_poses_suppresses_duplicates_and_junk():
    poses, boxes = people()
    # A duplicate detection of person 0, and a junk box whose "pose" is absurdly large.
    duplicate = boxes[0] + [6, -4, 4, 3, -0.3]
    junk_box = np.array([1000, 50, 150, 150, 0.8])
    junk_pose = example_pose(24, centre=(2.5, -1.5, 6.0), seed=9) * [8, 8, 1] + [0, 0, 0]
    all_boxes = np.concatenate([boxes, duplicate[None], junk_box[None]])
    all_poses = np.concatenate([poses, poses[:1], junk_pose[None]])
    model = OracleCropModel(CAMERA, all_boxes, all_poses, 5, SKELETON)
    xyxy = np.concatenate([all_boxes[:, :2], all_boxes[:, :2] + all_boxes[:, 2:4],
                           all_boxes[:, 4:]], 1)
    estimator = PoseEstimator(model, FixedDetector(xyxy), device='cpu')
    result = estimator.detect_poses(IMAGE, CAMERA, num_aug=5, detector_nms_iou_threshold=0.99)
    assert len(result) == 3
    np.testing.assert_allclose(np.sort(result.boxes[:, 4]), [0.9, 0.9, 0.9], atol=1e-6)
    kept = estimator.detect_poses(IMAGE, CAMERA, num_aug=5, detector_nms_iou_threshold=0.99,
                                  suppress_implausible_poses=False)
    assert len(kept) == 5


def test_no_detections_gives_empty_result():
    model = OracleCropModel(CAMERA, np.array([[600, 400, 50, 80, 1.0]]), np.ones((1, 24, 3)), 1,
                            SKELETON)
    estimator = PoseEstimator(model, FixedDetector(np.zeros((0, 5))), device='cpu')
    result = estimator.detect_poses(IMAGE, CAMERA)
    assert len(result) == 0 and result.poses3d.shape == (0, 24, 3)
    assert result.uncertainty.shape == (0, 24)


@pytest.mark.parametrize('image, message', [
    (np.zeros((0, 10, 3), np.uint8), 'empty'),
    (np.zeros((10, 10), np.uint8), 'grayscale'),
    (np.zeros((10, 10, 1), np.uint8), 'grayscale'),
    (np.zeros((10, 10, 3), np.float32), 'uint8'),
    (np.zeros((10, 10, 4), np.uint8), r'\(H, W, 3\)'),
    ([[1, 2, 3]], 'numpy'),
])
def test_bad_images_raise(image, message):
    poses, boxes = people(n=1)
    estimator = PoseEstimator(OracleCropModel(CAMERA, boxes, poses, 1, SKELETON), device='cpu')
    with pytest.raises(ValueError, match=message):
        estimator.estimate_poses(image, boxes)


@pytest.mark.parametrize('kwargs, message', [
    (dict(intrinsic_matrix=np.full((3, 3), np.nan)), 'non-finite'),
    (dict(skeleton='coco_19'), 'unknown skeleton'),
    (dict(num_aug=0), 'num_aug'),
    (dict(internal_batch_size=0), 'internal_batch_size'),
])
def test_bad_options_raise(kwargs, message):
    poses, boxes = people(n=1)
    estimator = PoseEstimator(OracleCropModel(CAMERA, boxes, poses, 1, SKELETON), device='cpu')
    with pytest.raises(ValueError, match=message):
        estimator.estimate_poses(IMAGE, boxes, **kwargs)


def test_bad_boxes_and_missing_detector_raise():
    poses, boxes = people(n=1)
    estimator = PoseEstimator(OracleCropModel(CAMERA, boxes, poses, 1, SKELETON), device='cpu')
    with pytest.raises(ValueError, match='boxes'):
        estimator.estimate_poses(IMAGE, np.zeros((2, 3)))
    with pytest.raises(ValueError, match='detector'):
        estimator.detect_poses(IMAGE)


def test_stage_timer_accounts_each_stage_only_when_enabled():
    from metrabs_ros.stage_timer import StageTimer
    timer = StageTimer('cpu')
    with timer('model'):
        pass
    assert dict(timer.seconds) == {}
    timer.enabled = True
    with timer('model'):
        sum(range(10000))
    with timer('model'):
        pass
    with timer('cropping'):
        pass
    assert set(timer.seconds) == {'model', 'cropping'} and timer.seconds['model'] > 0
    timer.reset()
    assert not timer.seconds
