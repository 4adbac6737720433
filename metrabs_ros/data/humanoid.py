"""pybullet's DeepMimic humanoid posed by its motion clips (the skeleton and link frames of the
synthetic people; their look is `human_body`).

World frame: the clips' y-up frame (metres). Joints: the 15 URDF link origins of the humanoid,
as the `humanoid_15` skeleton. Clip frames are DeepMimic rows: duration, root position (3), root
rotation (w, x, y, z), then per joint a quaternion (w, x, y, z) or, for knees and elbows, an angle.

The kinematics is plain numpy over the URDF (parsed here), so only pybullet's data files are
needed, not pybullet itself. Quaternions are normalized; pybullet distorts a body whose root
quaternion is not unit (3 clip frames are off by up to 0.5 %), so its joints differ there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree

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
    """pybullet_data's folder (the humanoid URDF and motion clips), or $METRABS_HUMANOID_DATA
    where pybullet is not installed but a copy of those files is."""
    override = os.environ.get('METRABS_HUMANOID_DATA')
    if override:
        return Path(override)
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


@dataclass(frozen=True)
class KinematicTree:
    """The URDF's joints in link order: parent link index (-1: the base), origin offset in the
    parent's frame (metres, scaled), joint type and axis. Every joint origin has zero rpy."""
    parents: tuple[int, ...]
    offsets: np.ndarray  # (L, 3)
    kinds: tuple[str, ...]  # 'fixed', 'spherical' or 'revolute'
    axes: np.ndarray  # (L, 3)


@lru_cache(maxsize=None)
def kinematic_tree(path: Path | None = None, scale: float = URDF_SCALE) -> KinematicTree:
    """Parse the humanoid URDF (default: data_path() / URDF)."""
    text = Path(path or data_path() / URDF).read_bytes().replace(b'\0', b'').decode()
    root = ElementTree.fromstring(text)
    base = root.find('link').get('name')
    joints = root.findall('joint')
    links = [j.find('child').get('link') for j in joints]
    parents, offsets, kinds, axes = [], [], [], []
    for joint in joints:
        parent = joint.find('parent').get('link')
        parents.append(-1 if parent == base else links.index(parent))
        origin = joint.find('origin')
        if origin is not None and np.any(np.array(origin.get('rpy', '0 0 0').split(), float)):
            raise ValueError(f'{joint.get("name")}: joint origins with rotation are not supported')
        xyz = origin.get('xyz', '0 0 0') if origin is not None else '0 0 0'
        offsets.append(np.array(xyz.split(), float) * scale)
        kinds.append(joint.get('type'))
        axis = joint.find('axis')
        axes.append(np.array(axis.get('xyz').split(), float) if axis is not None else [1, 0, 0])
    return KinematicTree(tuple(parents), np.array(offsets), tuple(kinds), np.array(axes))


class Humanoid:
    """`n_bodies` humanoids (bodies 0 .. n-1) posed by clip rows; forward kinematics of the URDF
    in numpy (the link frames pybullet reports for the same joint states). Unused bodies are
    parked far away."""

    PARKED = (0.0, -1000.0, 0.0)

    def __init__(self, n_bodies: int = 1):
        self.tree = kinematic_tree()
        self.n_links = len(self.tree.parents)
        self.bodies = list(range(n_bodies))
        self.body = self.bodies[0]
        self.positions = np.zeros((n_bodies, self.n_links, 3))
        self.rotations = np.zeros((n_bodies, self.n_links, 3, 3))
        for body in self.bodies:
            self.park(body)

    def park(self, body: int) -> None:
        """Move a body out of every view."""
        self._place(body, np.array(self.PARKED), np.eye(3), {})

    def close(self) -> None:
        """Nothing to release (kept for the callers' try/finally)."""

    def set_pose(self, frame: np.ndarray, root_position=None, yaw: float = 0.0,
                 body: int | None = None, tilt: np.ndarray | None = None) -> None:
        """Pose a humanoid from a clip row; optionally move its root and turn it about y.
        tilt: a (3, 3) world rotation applied to the clip's root orientation before the yaw
        (e.g. a standing frame laid on its back)."""
        body = self.body if body is None else body
        position = np.asarray(frame[1:4]) if root_position is None else np.asarray(root_position)
        w, x, y, z = frame[4:8]
        turn = np.array([0.0, np.sin(yaw / 2), 0.0, np.cos(yaw / 2)])  # about world y
        clip_orientation = np.array([x, y, z, w])
        if tilt is None:
            orientation = quaternion_matrix(quat_multiply(turn, clip_orientation))
        else:
            orientation = quaternion_matrix(turn) @ tilt @ quaternion_matrix(clip_orientation)
        rotations, column = {}, 8
        for link, kind in CLIP_JOINTS:
            if kind == 'sphere':
                w, x, y, z = frame[column:column + 4]
                rotations[link] = quaternion_matrix(np.array([x, y, z, w]))
                column += 4
            else:
                rotations[link] = axis_angle_matrix(self.tree.axes[link], frame[column])
                column += 1
        self._place(body, position.astype(float), orientation, rotations)

    def translate(self, offset: np.ndarray, body: int | None = None) -> None:
        """Move a posed humanoid by a world offset (3,) in metres."""
        self.positions[self.body if body is None else body] += offset

    def _place(self, body: int, position: np.ndarray, orientation: np.ndarray,
               joint_rotations: dict[int, np.ndarray]) -> None:
        for link, parent in enumerate(self.tree.parents):
            parent_position, parent_rotation = (position, orientation) if parent < 0 else (
                self.positions[body, parent], self.rotations[body, parent])
            self.positions[body, link] = parent_position + parent_rotation @ self.tree.offsets[link]
            self.rotations[body, link] = parent_rotation @ joint_rotations.get(link, np.eye(3))

    def joints_world(self, body: int | None = None) -> np.ndarray:
        """(15, 3) joint positions (link frame origins), world frame, metres."""
        return self.positions[self.body if body is None else body].copy()

    def link_rotations(self, body: int | None = None) -> np.ndarray:
        """(15, 3, 3) world rotations of the link frames (x forward, y up along the bone)."""
        return self.rotations[self.body if body is None else body].copy()


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit (x, y, z, w) quaternion (normalized first)."""
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by `angle` radians about the unit `axis` (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])
