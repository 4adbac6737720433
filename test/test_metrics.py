import numpy as np
import pytest

from metrabs_ros.train.metrics import (absolute_mpjpe, auc, average_precision, box_iou,
                                       joint_errors, mpjpe, pa_mpjpe, pck, pck_curve,
                                       procrustes_align, procrustes_errors)

GT = np.array([[[0.0, 0, 3], [0.3, 0, 3], [0, 0.4, 3], [0, 0, 3.5]]])  # 1 pose, 4 joints


def test_translation_only_error_is_absolute_not_relative():
    shifted = GT + [0.1, 0.0, 0.2]
    assert mpjpe(shifted, GT) == pytest.approx(0.0)
    assert absolute_mpjpe(shifted, GT) == pytest.approx(np.hypot(0.1, 0.2))


def test_known_mpjpe_pck_and_auc():
    pred = GT.copy()
    pred[0, 1] += [0.03, 0.04, 0]   # 0.05 m error
    pred[0, 2] += [0, 0, 0.2]       # 0.20 m error
    # Root (joint 0) aligned: errors 0, 0.05, 0.2, 0.
    np.testing.assert_allclose(joint_errors(pred, GT)[0], [0, 0.05, 0.2, 0], atol=1e-12)
    assert mpjpe(pred, GT) == pytest.approx(0.0625)
    assert pck(pred, GT) == pytest.approx(0.75)
    assert pck(pred, GT, threshold_m=0.04) == pytest.approx(0.5)
    # AUC over 0..0.15 m in 31 steps: joints at 0 count always, the 0.05 m one from step 10 on.
    assert auc(pred, GT) == pytest.approx((2 * 31 + 21) / (4 * 31))
    curve = pck_curve(pred, GT)
    assert curve[0] == 0.5 and curve[-1] == 0.75 and np.all(np.diff(curve) >= 0)


def test_mean_alignment_and_shape_check():
    pred = GT * [1, 1, 1] + [0.5, 0.5, 0.5]
    assert mpjpe(pred, GT, root=None) == pytest.approx(0.0)
    with pytest.raises(ValueError, match='differs'):
        mpjpe(GT[:, :3], GT)


def test_procrustes_removes_rotation_translation_and_scale():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, 15, 3))
    angle = rng.uniform(-np.pi, np.pi, 4)
    c, s = np.cos(angle), np.sin(angle)
    rotations = np.zeros((4, 3, 3))
    rotations[:, 0, 0], rotations[:, 0, 2], rotations[:, 1, 1] = c, s, 1
    rotations[:, 2, 0], rotations[:, 2, 2] = -s, c
    pred = np.array([0.5, 1.7, 2.0, 3.0])[:, None, None] * gt @ rotations.transpose(0, 2, 1)
    pred = pred + rng.normal(size=(4, 1, 3))
    assert mpjpe(pred, gt) > 0.5
    assert pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-9)
    # No reflections: a mirrored pose stays wrong.
    assert pa_mpjpe(gt * [-1, 1, 1], gt) > 0.1


def test_procrustes_on_a_hand_computed_collapsed_pose():
    gt = np.array([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])
    # Arms twice too long, legs collapsed onto the centre: the best scale is 1/2 (sum of p.g over
    # sum of |p|^2 = 4 / 8), which puts the arms right and leaves the legs 1 m off.
    collapsed = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 0, 0], [0, 0, 0]]) + [5, 5, 5]
    np.testing.assert_allclose(procrustes_errors(collapsed, gt), [0, 0, 1, 1], atol=1e-12)
    assert pa_mpjpe(collapsed, gt) == pytest.approx(0.5)
    assert mpjpe(collapsed, gt, root=None) == pytest.approx(1.0)
    # A pose collapsed to one point is aligned to the truth's centre.
    np.testing.assert_allclose(procrustes_errors(np.zeros((4, 3)), gt), [1, 1, 1, 1])
    with pytest.raises(ValueError, match='differs'):
        procrustes_align(gt[:3], gt)


def test_box_average_precision_on_hand_made_detections():
    truth = [np.array([[0, 0, 10, 10], [20, 0, 10, 10]]), np.array([[0, 0, 10, 20]])]
    perfect = [np.array([[0, 0, 10, 10, 0.9], [20, 0, 10, 10, 0.8]]),
               np.array([[0, 0, 10, 20, 0.7]])]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    # One true box missed entirely: recall stops at 2/3 with precision 1.
    assert average_precision([perfect[0], np.zeros((0, 5))], truth) == pytest.approx(2 / 3)
    # A confident false positive (IoU 0.25 < 0.5) first, then the 3 hits:
    # precision 1/2, 2/3, 3/4 at recall 1/3, 2/3, 1 -> AP = (3/4) * 1 = 0.75 after interpolation.
    shifted = [np.concatenate([[[5, 5, 10, 10, 0.95]], perfect[0]]), perfect[1]]
    assert average_precision(shifted, truth) == pytest.approx(0.75)
    # A duplicate of a matched box counts as a false positive.
    duplicated = [np.concatenate([perfect[0], [[0, 0, 10, 10, 0.1]]]), perfect[1]]
    assert average_precision(duplicated, truth) == pytest.approx(1.0)
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]]), [[50 / 150]])
