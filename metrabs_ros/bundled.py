"""The bundled defaults: a pose model and a person detector trained on synthetic people, and a
short synthetic sample sequence for the demo.

They are trained on the generator's synthetic people only (ellipsoid bodies moved by pybullet's
DeepMimic motion clips; see README, "Bundled default model"): they are not made for real
people. For real use load the official MeTRAbs weights (`weights.load_model` reads the official
release) with a real person detector.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import numpy as np

BUNDLED_DIR = Path(__file__).resolve().parent / 'bundled'
DEFAULT_MODEL = BUNDLED_DIR / 'humanoid_model'
DEFAULT_DETECTOR = BUNDLED_DIR / 'humanoid_detector'
SAMPLE_SEQUENCE = BUNDLED_DIR / 'sample_sequence'


SYNTHETIC_DOMAIN = 'synthetic people (ellipsoid bodies on pybullet humanoid motions)'
OFFICIAL_RELEASE = 'metrabs_eff2l_384px_800k_28ds_pytorch'


def model_and_detector(model_path: str | Path | None, detector: str | Path | None):
    """(model path, detector spec or None) with the bundled defaults filled in: an empty model
    path means the bundled model, and then an empty detector means the bundled detector."""
    if not model_path:
        return DEFAULT_MODEL, detector or DEFAULT_DETECTOR
    return Path(model_path), detector or None


@functools.lru_cache(maxsize=1)
def sample_frame_digests() -> frozenset[bytes]:
    """Digests of the bundled sample frames as RGB uint8 arrays (as decoded by cv2)."""
    import cv2
    digests = set()
    for path in sorted(SAMPLE_SEQUENCE.glob('*.jpg')):
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        digests.add(_digest(rgb))
    return frozenset(digests)


def is_sample_frame(image: np.ndarray) -> bool:
    """True when `image` (RGB uint8) is one of the bundled sample sequence's frames."""
    return _digest(image) in sample_frame_digests()


def _digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest() + \
        bytes(str(image.shape), 'ascii')


class DomainNote:
    """Warns once when a model trained on a narrow domain (ModelConfig.training_domain) is run
    on images other than the bundled sample frames (checked until the first such image)."""

    def __init__(self, training_domain: str):
        self.training_domain = training_domain
        self.done = not training_domain

    def check(self, image: np.ndarray) -> None:
        if self.done or is_sample_frame(image):
            return
        self.done = True
        logging.getLogger('metrabs_ros').warning(
            'this model knows only %s (its training data); on other images, real people '
            'included, its poses are meaningless. For real use: metrabs-fetch %s '
            '--allow-download, then load that name (metrabs-pose --model, model_path:=) with a '
            'real person detector (README, "Official weights").', self.training_domain,
            OFFICIAL_RELEASE)
