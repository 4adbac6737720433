"""The bundled model says once that it knows only synthetic humanoids, unless it is shown its own
sample frames."""
import logging

import cv2
import numpy as np

from metrabs_ros.bundled import DEFAULT_MODEL, SAMPLE_SEQUENCE, DomainNote, is_sample_frame
from metrabs_ros.estimator import PoseEstimator
from metrabs_ros.weights import load_model


def sample_frame(index: int) -> np.ndarray:
    bgr = cv2.imread(str(SAMPLE_SEQUENCE / f'{index:06d}.jpg'), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_sample_frames_are_recognized_and_a_changed_pixel_is_not():
    frame = sample_frame(3)
    assert is_sample_frame(frame)
    frame[10, 10] ^= 1
    assert not is_sample_frame(frame)


def test_bundled_model_warns_once_on_other_images_only(caplog):
    model = load_model(DEFAULT_MODEL)
    assert model.config.training_domain
    estimator = PoseEstimator(model, device='cpu')
    box = np.array([[200.0, 100.0, 120.0, 300.0]])
    with caplog.at_level(logging.WARNING, logger='metrabs_ros'):
        estimator.estimate_poses(sample_frame(0), box, num_aug=1)
        assert not caplog.records
        photo = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        estimator.estimate_poses(photo, box, num_aug=1)
        estimator.estimate_poses(photo, box, num_aug=1)
    notes = [r for r in caplog.records if 'knows only' in r.getMessage()]
    assert len(notes) == 1
    assert 'metrabs-fetch' in notes[0].getMessage()


def test_general_models_never_warn():
    note = DomainNote('')
    assert note.done
    note.check(np.zeros((4, 4, 3), np.uint8))
