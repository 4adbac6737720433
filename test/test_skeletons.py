import numpy as np
import pytest

from metrabs_ros.skeletons import SKELETONS, get_skeleton, mirror_permutation

REQUIRED = ('smpl_24', 'coco_19', 'h36m_17', 'smpl+head_30')


@pytest.mark.parametrize('name', REQUIRED)
def test_registered_with_consistent_data(name):
    skeleton = get_skeleton(name)
    assert skeleton.n_joints == int(name.rsplit('_', 1)[1])
    assert len(set(skeleton.joint_names)) == skeleton.n_joints
    assert skeleton.edges.shape[1] == 2
    assert skeleton.edges.min() >= 0 and skeleton.edges.max() < skeleton.n_joints
    # The bones connect every joint into one tree.
    assert len(skeleton.edges) == skeleton.n_joints - 1
    assert set(skeleton.edges.ravel()) == set(range(skeleton.n_joints))


@pytest.mark.parametrize('name', REQUIRED)
def test_mirror_is_involution_mapping_left_to_right(name):
    skeleton = get_skeleton(name)
    mirror = skeleton.mirror
    np.testing.assert_array_equal(mirror[mirror], np.arange(skeleton.n_joints))
    names = skeleton.joint_names
    n_swapped = 0
    for i, j in enumerate(mirror):
        if names[i].startswith('l') and i != j:
            assert names[j] == 'r' + names[i][1:]
            n_swapped += 1
        if i == j:
            assert 'r' + names[i][1:] not in names or not names[i].startswith('l')
    assert n_swapped >= 6


def test_mirror_edges_map_to_edges():
    skeleton = get_skeleton('smpl+head_30')
    edges = {tuple(sorted(e)) for e in skeleton.edges.tolist()}
    mirrored = {tuple(sorted(skeleton.mirror[e])) for e in skeleton.edges}
    assert edges == mirrored


def test_mirror_permutation_ignores_unpaired_names():
    np.testing.assert_array_equal(mirror_permutation(['lhip', 'root', 'rear']), [0, 1, 2])
    np.testing.assert_array_equal(mirror_permutation(['lwri', 'neck', 'rwri']), [2, 1, 0])


def test_unknown_skeleton_lists_known_ones():
    with pytest.raises(ValueError, match='smpl_24'):
        get_skeleton('nope_3')
    assert set(REQUIRED) <= set(SKELETONS)
