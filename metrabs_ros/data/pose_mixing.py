"""Pose mixing: training poses spliced together from the limbs of different motion-clip frames.

The training clips hold about 1,200 distinct poses; a pose model trained on them alone learns
those poses rather than how bodies move. Giving each limb group (torso with neck, each arm,
each leg) the joint angles of a random frame of a random clip makes new, mostly plausible
combinations (e.g. a punch on a crawl), while the root orientation and height stay those of
the base frame. Joint jitter goes further: every joint turned by a random small angle, so that
no rendered pose is exactly one the clips hold.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metrabs_ros.data.humanoid import CLIP_JOINTS, quat_multiply

# Columns of a clip row (see humanoid.CLIP_JOINTS): 0 duration, 1:4 root position, 4:8 root
# quaternion, then the joint angles of each limb group.
LIMB_COLUMNS = {
    'torso': slice(8, 16),       # chest, neck
    'right_leg': slice(16, 25),  # hip, knee, ankle
    'right_arm': slice(25, 30),  # shoulder, elbow
    'left_leg': slice(30, 39),
    'left_arm': slice(39, 44),
}


def mixed_frame(base: np.ndarray, clips: Sequence[np.ndarray], rng: np.random.Generator,
                replace_probability: float = 0.7) -> np.ndarray:
    """A copy of clip row `base` in which each limb group, with `replace_probability`, takes
    the angles of a random frame of a random clip among `clips` ((F, 44) arrays)."""
    frame = np.array(base, dtype=np.float64)
    for columns in LIMB_COLUMNS.values():
        if rng.random() >= replace_probability:
            continue
        clip = clips[rng.integers(len(clips))]
        frame[columns] = clip[rng.integers(len(clip)), columns]
    return frame


def jittered_frame(frame: np.ndarray, clips: Sequence[np.ndarray], rng: np.random.Generator,
                   max_degrees: float) -> np.ndarray:
    """A copy of clip row `frame` with every joint turned a little: each ball joint by an angle
    uniform in [0, max_degrees] about a random axis (after its own rotation), each hinge (knee,
    elbow) by up to +-max_degrees, kept within the range that hinge spans in `clips` ((F, 44)
    arrays). The root stays as it is."""
    frame = np.array(frame, dtype=np.float64)
    limit = np.deg2rad(max_degrees)
    column = 8
    for _, kind in CLIP_JOINTS:
        if kind == 'sphere':
            axis = rng.normal(size=3)
            half = rng.uniform(0, limit) / 2
            turn = np.append(np.sin(half) * axis / np.linalg.norm(axis), np.cos(half))  # x, y, z, w
            w, x, y, z = frame[column:column + 4]
            x, y, z, w = quat_multiply(np.array([x, y, z, w]), turn)
            frame[column:column + 4] = w, x, y, z  # the clips store (w, x, y, z)
            column += 4
        else:
            low = min(clip[:, column].min() for clip in clips)
            high = max(clip[:, column].max() for clip in clips)
            frame[column] = np.clip(frame[column] + rng.uniform(-limit, limit), low, high)
            column += 1
    return frame

