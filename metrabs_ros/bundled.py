"""The bundled defaults: a pose model and a person detector trained on synthetic humanoids, and a
short synthetic sample sequence for the demo.

They are trained on pybullet's DeepMimic humanoid only (see README, "Bundled default model"): they
will not work on real people. For real use load the official MeTRAbs weights
(`weights.load_model` reads the official release) with a real person detector.
"""
from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / 'bundled'
DEFAULT_MODEL = BUNDLED_DIR / 'humanoid_model'
DEFAULT_DETECTOR = BUNDLED_DIR / 'humanoid_detector'
SAMPLE_SEQUENCE = BUNDLED_DIR / 'sample_sequence'


def model_and_detector(model_path: str | Path | None, detector: str | Path | None):
    """(model path, detector spec or None) with the bundled defaults filled in: an empty model
    path means the bundled model, and then an empty detector means the bundled detector."""
    if not model_path:
        return DEFAULT_MODEL, detector or DEFAULT_DETECTOR
    return Path(model_path), detector or None
