import numpy as np
import pytest

from oracle import human_pose
from metrabs_ros.skeletons import SKELETONS, get_skeleton
from metrabs_ros.suppression import (box_coverage, consistent_augmentations, consistent_with_boxes,
                                     plausible_bone_lengths, plausible_pose_indices, pose_nms,
                                     pose_similarity, typical_bone_lengths)

SMPL = get_skeleton('smpl_24')


@pytest.mark.parametrize('name', sorted(SKELETONS))
def test_every_registered_bone_has_a_typical_length(name):
    lengths = typical_bone_lengths(get_skeleton(name))
    assert np.all(np.isfinite(lengths)) and np.all((lengths > 0.02) & (lengths < 0.6))


def test_bone_length_rule():
    adult = human_pose(SMPL)
    child = (adult - adult.mean(0)) * 0.6 + adult.mean(0)
    stretched = adult.copy()
    stretched[SMPL.index('lwri')] += [1.5, 0, 0]  # a 1.7 m forearm
    collapsed = np.repeat(adult.mean(0, keepdims=True), 24, axis=0)  # zero-length 0.4 m legs
    tiny_bone = adult.copy()
    tiny_bone[SMPL.index('ltoe')] = tiny_bone[SMPL.index('lank')]  # 0.14 m foot: < 0.3 m off
    assert list(plausible_bone_lengths(
        np.stack([adult, child, stretched, collapsed, tiny_bone]), SMPL)) == [
        True, True, False, False, True]


def test_augmentation_consistency_rule():
    adult = human_pose(SMPL)
    rng = np.random.default_rng(1)
    agreeing = adult + rng.normal(0, 0.02, (5, 24, 3))
    scattered = adult + rng.normal(0, 0.8, (5, 24, 3))
    # Scale differences alone are aligned away.
    scaled = np.stack([adult * s for s in (0.9, 1.0, 1.1, 1.05, 0.95)])
    assert list(consistent_augmentations(np.stack([agreeing, scattered, scaled]))) == [
        True, False, True]


def test_box_consistency_rule():
    pose2d = np.array([[100.0, 100.0], [200.0, 400.0], [150.0, 250.0]])
    boxes = np.array([
        [95, 95, 110, 310, 1.0],      # fits the pose
        [0, 0, 1000, 1000, 1.0],      # pose covers a small part of the box
        [120, 300, 200, 300, 1.0],    # overlaps only a corner of the pose
        [150, 150, 60, 200, 1.0],     # box inside the pose's extent (pose truncated by the box)
    ])
    result = consistent_with_boxes(np.repeat(pose2d[None], 4, 0), boxes)
    assert list(result) == [True, False, False, True]


def test_box_consistency_threshold_is_the_covered_fraction():
    pose2d = np.array([[[0.0, 0.0], [100.0, 40.0]]])  # covers 0.4 of the box below
    box = np.array([[0, 0, 100, 100, 1.0]])
    np.testing.assert_allclose(box_coverage(pose2d, box), [0.4])
    assert not consistent_with_boxes(pose2d, box)[0]
    assert consistent_with_boxes(pose2d, box, coverage=0.3)[0]


def test_pose_similarity_and_nms():
    a = human_pose(SMPL, centre=(0, 0, 4))
    near_duplicate = a + np.random.default_rng(2).normal(0, 0.01, a.shape)
    other = human_pose(SMPL, centre=(1.5, 0, 4), seed=3)
    poses = np.stack([a, near_duplicate, other])
    similarity = pose_similarity(poses)
    np.testing.assert_allclose(np.diag(similarity), 1.0)
    assert similarity[0, 1] > 0.4 and similarity[0, 2] < 0.4
    np.testing.assert_allclose(similarity, similarity.T)
    # The higher-scoring duplicate survives, the other person too.
    assert list(pose_nms(poses, np.array([0.5, 0.9, 0.7]))) == [1, 2]
    assert list(pose_nms(poses[:0], np.zeros(0))) == []


def test_without_the_rules_only_duplicates_are_removed():
    a = human_pose(SMPL, centre=(0, 0, 4))
    stretched = human_pose(SMPL, centre=(1.5, 0, 4), seed=3)
    stretched[SMPL.index('lwri')] += [1.5, 0, 0]
    duplicate = a + 0.01
    poses = np.stack([a, stretched, duplicate])
    poses_aug = np.repeat(poses[:, None], 3, axis=1)
    poses2d = poses[..., :2] / poses[..., 2:] * 500 + 300
    boxes = np.concatenate([poses2d.min(1), poses2d.max(1) - poses2d.min(1),
                            [[0.9], [0.8], [0.7]]], axis=1)
    assert list(plausible_pose_indices(poses, poses_aug, poses2d, boxes, SMPL)) == [0]
    assert list(plausible_pose_indices(poses, poses_aug, poses2d, boxes, SMPL, rules=False)) == [
        0, 1]
