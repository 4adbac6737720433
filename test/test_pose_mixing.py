import dataclasses

import numpy as np
import pytest

from metrabs_ros.data.pose_mixing import LIMB_COLUMNS, mixed_frame

pytest.importorskip('pybullet', reason='pybullet not installed: pip install .[data]')
from metrabs_ros.data.generator import TRAIN_CLIPS, GeneratorConfig, SyntheticGenerator  # noqa: E402,E501
from metrabs_ros.data.humanoid import CLIP_WIDTH, load_clip  # noqa: E402
from metrabs_ros.skeletons import get_skeleton  # noqa: E402

SMALL = GeneratorConfig(image_size=(320, 240), min_visible_pixels=40)


def test_limb_groups_cover_every_joint_column_once():
    columns = sorted(c for s in LIMB_COLUMNS.values() for c in range(s.start, s.stop))
    assert columns == list(range(8, CLIP_WIDTH))


def test_mixed_frames_keep_the_root_and_splice_whole_limb_groups_from_clip_frames():
    clips = [load_clip(c) for c in TRAIN_CLIPS]
    rows = np.concatenate(clips)
    base = clips[0][5]
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(mixed_frame(base, clips, rng, replace_probability=0), base)
    new_poses = 0
    for _ in range(20):
        frame = mixed_frame(base, clips, rng, replace_probability=1)
        np.testing.assert_array_equal(frame[:8], base[:8])
        for columns in LIMB_COLUMNS.values():  # each group is some clip frame's group
            assert (rows[:, columns] == frame[columns]).all(axis=1).any()
        new_poses += not (rows[:, 8:] == frame[8:]).all(axis=1).any()
    assert new_poses >= 15  # mostly combinations no clip frame has


def test_mixed_poses_keep_the_skeletons_proportions():
    edges = get_skeleton('humanoid_15').edges

    def bone_proportions(config):
        generator = SyntheticGenerator(TRAIN_CLIPS, seed=4, config=config)
        try:
            joints = np.concatenate([generator.sample(i).joints3d for i in range(4)])
        finally:
            generator.close()
        bones = np.linalg.norm(joints[:, edges[:, 0]] - joints[:, edges[:, 1]], axis=-1)
        return joints, bones / bones.sum(axis=1, keepdims=True)

    plain_joints, plain = bone_proportions(SMALL)
    mixed_joints, mixed = bone_proportions(
        dataclasses.replace(SMALL, pose_mixing_probability=1.0))
    assert len(mixed) and not np.allclose(mixed_joints[0], plain_joints[0])
    np.testing.assert_allclose(mixed, plain[:1].repeat(len(mixed), 0), atol=1e-4)
