import numpy as np
import pytest

from metrabs_ros.train.metrics import (absolute_mpjpe, auc, joint_errors, mpjpe, pck,
                                       pck_curve)

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
