"""pybullet's DeepMimic humanoid posed by its motion clips (the skeleton and link frames of the
synthetic people; their look is `human_body`).

World frame: the clips' y-up frame (metres). Joints: the 15 URDF link origins of the humanoid,
as the `humanoid_15` skeleton. Clip frames are DeepMimic rows: duration, root position (3), root
rotation (w, x, y, z), then per joint a quaternion (w, x, y, z) or, for knees and elbows, an angle.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

URDF = 'humanoid/humanoid.urdf'
URDF_SCALE = 0.25  # the URDF is modelled at 4x metric size
MOTIONS_DIR = 'data/motions'
# Clip columns after root position and rotation, in order: (link index, kind).
CLIP_JOINTS = ((1, 'sphere'), (2, 'sphere'), (3, 'sphere'), (4, 'angle'), (5, 'sphere'),
               (6, 'sphere'), (7, 'angle'), (9, 'sphere'), (10, 'angle'), (11, 'sphere'),
               (12, 'sphere'), (13, 'angle'))
CLIP_WIDTH = 1 + 3 + 4 + sum(4 if kind == 'sphere' else 1 for _, kind in CLIP_JOINTS)
CLIPS = ('walk', 'run', 'jump', 'dance_a', 'dance_b', 'backflip', 'cartwheel', 'kick', 'punch',
         'roll', 'crawl', 'spin', 'spinkick', 'getup_facedown', 'getup_faceup')


def data_path() -> Path:
    import pybullet_data
    return Path(pybullet_data.getDataPath())


@lru_cache(maxsize=None)
def load_clip(name: str) -> np.ndarray:
    """(F, 44) frames of motion clip `name` (e.g. 'walk')."""
    path = data_path() / MOTIONS_DIR / f'humanoid3d_{name}.txt'
    frames = np.array(json.loads(path.read_text())['Frames'], dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != CLIP_WIDTH:
        raise ValueError(f'{path}: expected rows of {CLIP_WIDTH} values, got {frames.shape}')
    return frames


class Humanoid:
    """A pybullet DIRECT connection holding `n_bodies` humanoids (unused ones parked far away)."""

    PARKED = (0.0, -1000.0, 0.0)

    def __init__(self, n_bodies: int = 1):
        import pybullet
        self.pb = pybullet
        self.client = pybullet.connect(pybullet.DIRECT)
        pybullet.setAdditionalSearchPath(str(data_path()), physicsClientId=self.client)
        self.bodies = [pybullet.loadURDF(URDF, self.PARKED, globalScaling=URDF_SCALE,
                                         useFixedBase=True, physicsClientId=self.client,
                                         flags=pybullet.URDF_MAINTAIN_LINK_ORDER)
                       for _ in range(n_bodies)]
        self.body = self.bodies[0]
        self.n_links = pybullet.getNumJoints(self.body, physicsClientId=self.client)

    def park(self, body: int) -> None:
        """Move a body out of every view."""
        self.pb.resetBasePositionAndOrientation(body, self.PARKED, [0, 0, 0, 1],
                                                physicsClientId=self.client)

    def close(self) -> None:
        self.pb.disconnect(self.client)

    def set_pose(self, frame: np.ndarray, root_position=None, yaw: float = 0.0,
                 body: int | None = None) -> None:
        """Pose a humanoid from a clip row; optionally move its root and turn it about y."""
        pb, c = self.pb, self.client
        body = self.body if body is None else body
        position = np.asarray(frame[1:4]) if root_position is None else np.asarray(root_position)
        w, x, y, z = frame[4:8]
        turn = np.array([0.0, np.sin(yaw / 2), 0.0, np.cos(yaw / 2)])  # about world y
        orientation = _quat_multiply(turn, np.array([x, y, z, w]))
        pb.resetBasePositionAndOrientation(body, position.tolist(), orientation.tolist(),
                                           physicsClientId=c)
        column = 8
        for link, kind in CLIP_JOINTS:
            if kind == 'sphere':
                w, x, y, z = frame[column:column + 4]
                pb.resetJointStateMultiDof(body, link, [x, y, z, w], physicsClientId=c)
                column += 4
            else:
                pb.resetJointState(body, link, frame[column], physicsClientId=c)
                column += 1

    def joints_world(self, body: int | None = None) -> np.ndarray:
        """(15, 3) joint positions (link frame origins), world frame, metres."""
        states = self.pb.getLinkStates(self.body if body is None else body,
                                       list(range(self.n_links)), physicsClientId=self.client)
        return np.array([s[4] for s in states])

    def link_rotations(self, body: int | None = None) -> np.ndarray:
        """(15, 3, 3) world rotations of the link frames (x forward, y up along the bone)."""
        states = self.pb.getLinkStates(self.body if body is None else body,
                                       list(range(self.n_links)), physicsClientId=self.client)
        return np.array([np.reshape(self.pb.getMatrixFromQuaternion(s[5]), (3, 3))
                         for s in states])


def _quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])
