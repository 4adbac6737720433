import numpy as np
import pytest

from oracle import human_pose
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.tracking import PoseTracker

SMPL = get_skeleton('smpl_24')


def walkers(t):
    """Two people walking towards each other along x, 1.2 m apart in depth, at 1 m/s."""
    a = human_pose(SMPL, centre=(-1.0 + t, 0, 4.0), seed=0)
    b = human_pose(SMPL, centre=(1.0 - t, 0, 5.2), seed=1)
    return np.stack([a, b])


def test_ids_follow_people_through_reordering():
    tracker = PoseTracker(max_distance_m=0.5, max_age_s=1.0)
    rng = np.random.default_rng(0)
    first_ids = None
    for frame in range(30):
        t = frame / 15.0
        poses = walkers(t)
        order = rng.permutation(2)
        ids, out = tracker.update(poses[order], t)
        np.testing.assert_array_equal(out, poses[order])  # no smoothing by default
        by_person = dict(zip(order, ids))
        if first_ids is None:
            first_ids = by_person
        assert by_person == first_ids
    assert tracker.next_id == 2


def test_track_survives_short_gaps_and_ends_after_max_age():
    tracker = PoseTracker(max_age_s=0.5)
    pose = human_pose(SMPL)[None]
    ids0, _ = tracker.update(pose, 0.0)
    tracker.update(pose[:0], 0.2)
    ids1, _ = tracker.update(pose, 0.4)
    assert ids1[0] == ids0[0]
    tracker.update(pose[:0], 0.6)
    ids2, _ = tracker.update(pose, 1.2)
    assert ids2[0] != ids0[0]


def test_jump_beyond_max_distance_starts_new_track():
    tracker = PoseTracker(max_distance_m=0.5)
    ids0, _ = tracker.update(human_pose(SMPL, centre=(0, 0, 4))[None], 0.0)
    ids1, _ = tracker.update(human_pose(SMPL, centre=(2, 0, 4))[None], 0.1)
    assert ids0[0] != ids1[0]


@pytest.mark.parametrize('mode', ['ema', 'one_euro'])
def test_smoothing_reduces_jitter(mode):
    tracker = PoseTracker(smoothing=mode, ema_alpha=0.3, one_euro_min_cutoff=0.5)
    truth = human_pose(SMPL)
    rng = np.random.default_rng(2)
    raw_errors, smooth_errors = [], []
    for frame in range(60):
        noisy = truth + rng.normal(0, 0.02, truth.shape)
        _, out = tracker.update(noisy[None], frame / 30)
        if frame >= 20:
            raw_errors.append(np.abs(noisy - truth).mean())
            smooth_errors.append(np.abs(out[0] - truth).mean())
    assert np.mean(smooth_errors) < 0.7 * np.mean(raw_errors)


def test_bad_input_raises():
    tracker = PoseTracker()
    with pytest.raises(ValueError, match='shape'):
        tracker.update(np.zeros((2, 3)), 0.0)
    tracker.update(np.zeros((1, 24, 3)), 1.0)
    with pytest.raises(ValueError, match='backwards'):
        tracker.update(np.zeros((1, 24, 3)), 0.5)
    with pytest.raises(ValueError, match='smoothing'):
        PoseTracker(smoothing='kalman')
