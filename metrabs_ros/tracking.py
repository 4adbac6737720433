"""Stable person ids across frames, and optional temporal smoothing of joints.

Each frame, people are matched to existing tracks by optimal assignment
(scipy linear_sum_assignment) on the distance between root positions (metres); matches farther
than max_distance_m start new tracks. Tracks unseen for more than max_age_s seconds end.
Smoothing ('none' by default, 'ema' or 'one_euro') filters each track's joints over time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

SMOOTHING_MODES = ('none', 'ema', 'one_euro')


@dataclass
class OneEuroFilter:
    """One Euro filter (Casiez et al. 2012) on arrays; cutoffs in Hz, time in seconds."""

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0
    value: np.ndarray | None = None
    derivative: np.ndarray | None = None
    time_s: float | None = None

    def __call__(self, x: np.ndarray, time_s: float) -> np.ndarray:
        if self.value is None or time_s <= self.time_s:
            self.value, self.derivative, self.time_s = x.copy(), np.zeros_like(x), time_s
            return self.value
        dt = time_s - self.time_s
        derivative = (x - self.value) / dt
        self.derivative += _alpha(self.d_cutoff, dt) * (derivative - self.derivative)
        cutoff = self.min_cutoff + self.beta * np.abs(self.derivative)
        self.value = self.value + _alpha(cutoff, dt) * (x - self.value)
        self.time_s = time_s
        return self.value


def _alpha(cutoff, dt: float):
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class Track:
    id: int
    root_m: np.ndarray
    last_seen_s: float
    smoothed: np.ndarray
    filter: OneEuroFilter | None = field(default=None, repr=False)


class PoseTracker:
    """Assigns track ids to per-frame poses and optionally smooths them."""

    def __init__(self, max_distance_m: float = 0.5, max_age_s: float = 1.0,
                 root_joint: int | None = None, smoothing: str = 'none', ema_alpha: float = 0.5,
                 one_euro_min_cutoff: float = 1.0, one_euro_beta: float = 0.0):
        if smoothing not in SMOOTHING_MODES:
            raise ValueError(f'smoothing must be one of {SMOOTHING_MODES}, got {smoothing!r}')
        if max_distance_m <= 0 or max_age_s < 0 or not 0 < ema_alpha <= 1:
            raise ValueError('need max_distance_m > 0, max_age_s >= 0 and 0 < ema_alpha <= 1')
        self.max_distance_m, self.max_age_s = max_distance_m, max_age_s
        self.root_joint, self.smoothing, self.ema_alpha = root_joint, smoothing, ema_alpha
        self.one_euro = dict(min_cutoff=one_euro_min_cutoff, beta=one_euro_beta)
        self.tracks: list[Track] = []
        self.next_id = 0
        self.last_time_s: float | None = None

    def update(self, poses3d: np.ndarray, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(P, J, 3) metres at time_s seconds -> (ids (P,), poses (P, J, 3), smoothed if enabled)."""
        poses3d = np.asarray(poses3d, dtype=np.float64)
        if poses3d.ndim != 3 or poses3d.shape[-1] != 3:
            raise ValueError(f'poses3d must have shape (P, J, 3), got {poses3d.shape}')
        if self.last_time_s is not None and time_s < self.last_time_s:
            raise ValueError(f'time went backwards: {time_s} < {self.last_time_s}')
        self.last_time_s = time_s
        self.tracks = [t for t in self.tracks if time_s - t.last_seen_s <= self.max_age_s]
        roots = self._roots(poses3d)
        ids = np.full(len(poses3d), -1, dtype=np.int64)
        output = poses3d.copy()
        if self.tracks and len(poses3d):
            track_roots = np.stack([t.root_m for t in self.tracks])
            cost = np.linalg.norm(roots[:, None] - track_roots[None], axis=-1)
            for person, track_index in zip(*linear_sum_assignment(cost)):
                if cost[person, track_index] <= self.max_distance_m:
                    track = self.tracks[track_index]
                    ids[person] = track.id
                    output[person] = self._smooth(track, poses3d[person], time_s)
                    track.root_m, track.last_seen_s = roots[person], time_s
        for person in np.flatnonzero(ids < 0):
            track = Track(self.next_id, roots[person], time_s, poses3d[person].copy())
            if self.smoothing == 'one_euro':
                track.filter = OneEuroFilter(**self.one_euro)
                track.filter(poses3d[person], time_s)
            self.tracks.append(track)
            ids[person] = self.next_id
            self.next_id += 1
        return ids, output

    def _roots(self, poses3d: np.ndarray) -> np.ndarray:
        if self.root_joint is None:
            return poses3d.mean(axis=1)
        return poses3d[:, self.root_joint]

    def _smooth(self, track: Track, pose: np.ndarray, time_s: float) -> np.ndarray:
        if self.smoothing == 'ema':
            track.smoothed = track.smoothed + self.ema_alpha * (pose - track.smoothed)
        elif self.smoothing == 'one_euro':
            track.smoothed = track.filter(pose, time_s).copy()
        else:
            track.smoothed = pose
        return track.smoothed
