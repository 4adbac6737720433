"""Joint sets as data: names, edges (bones) and the left/right mirror permutation.

Joint names follow the official MeTRAbs release (``pelv``, ``lhip``, ``rsho``, ``htop``, ...):
a leading ``l``/``r`` marks the body side, which is what the mirror permutation is built from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A named joint set. edges: (E, 2) joint index pairs; mirror: (J,) left/right permutation."""

    name: str
    joint_names: tuple[str, ...]
    edges: np.ndarray
    mirror: np.ndarray

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def index(self, joint_name: str) -> int:
        return self.joint_names.index(joint_name)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Skeleton) and self.name == other.name and
                self.joint_names == other.joint_names and
                np.array_equal(self.edges, other.edges) and
                np.array_equal(self.mirror, other.mirror))

    def __hash__(self) -> int:
        return hash((self.name, self.joint_names))


def mirror_permutation(joint_names) -> np.ndarray:
    """Permutation swapping each ``l...`` joint with its ``r...`` twin; others map to themselves."""
    names = list(joint_names)
    position = {name: i for i, name in enumerate(names)}
    permutation = np.arange(len(names))
    for i, name in enumerate(names):
        side = name[:1]
        twin = {'l': 'r', 'r': 'l'}.get(side, '') + name[1:]
        if side in 'lr' and twin in position:
            permutation[i] = position[twin]
    return permutation


def make_skeleton(name: str, joint_names, edge_names) -> Skeleton:
    """Build a Skeleton from joint names and edges given as (name, name) pairs."""
    joint_names = tuple(joint_names)
    if len(set(joint_names)) != len(joint_names):
        raise ValueError(f'skeleton {name!r} has duplicate joint names')
    position = {n: i for i, n in enumerate(joint_names)}
    edges = np.array([[position[a], position[b]] for a, b in edge_names], dtype=np.int64)
    return Skeleton(name, joint_names, edges.reshape(-1, 2), mirror_permutation(joint_names))


def make_skeleton_from_indices(name: str, joint_names, edges) -> Skeleton:
    """Build a Skeleton from joint names and (E, 2) edges given as joint indices."""
    joint_names = tuple(str(n) for n in joint_names)
    return make_skeleton(name, joint_names, [
        (joint_names[a], joint_names[b]) for a, b in np.asarray(edges, dtype=np.int64).reshape(-1, 2)])


def _chains(*chains: str) -> list[tuple[str, str]]:
    """Edges from chains written as 'a-b-c' (a-b, b-c)."""
    edges = []
    for chain in chains:
        names = chain.split('-')
        edges += list(zip(names[:-1], names[1:]))
    return edges


_SMPL_24_NAMES = (
    'pelv', 'lhip', 'rhip', 'spi1', 'lkne', 'rkne', 'spi2', 'lank', 'rank', 'spi3', 'ltoe', 'rtoe',
    'neck', 'lcla', 'rcla', 'head', 'lsho', 'rsho', 'lelb', 'relb', 'lwri', 'rwri', 'lhan', 'rhan')
_SMPL_24_EDGES = _chains(
    'pelv-spi1-spi2-spi3-neck-head', 'pelv-lhip-lkne-lank-ltoe', 'pelv-rhip-rkne-rank-rtoe',
    'spi3-lcla-lsho-lelb-lwri-lhan', 'spi3-rcla-rsho-relb-rwri-rhan')

_HEAD_6_NAMES = ('htop', 'lear', 'leye', 'nose', 'rear', 'reye')
_HEAD_6_EDGES = _chains('head-htop', 'head-nose', 'nose-leye-lear', 'nose-reye-rear')

_H36M_17_NAMES = (
    'rhip', 'rkne', 'rank', 'lhip', 'lkne', 'lank', 'tors', 'neck', 'head', 'htop',
    'lsho', 'lelb', 'lwri', 'rsho', 'relb', 'rwri', 'pelv')
_H36M_17_EDGES = _chains(
    'pelv-rhip-rkne-rank', 'pelv-lhip-lkne-lank', 'pelv-tors-neck-head-htop',
    'neck-lsho-lelb-lwri', 'neck-rsho-relb-rwri')

_COCO_19_NAMES = (
    'neck', 'nose', 'pelv', 'lsho', 'lelb', 'lwri', 'lhip', 'lkne', 'lank',
    'rsho', 'relb', 'rwri', 'rhip', 'rkne', 'rank', 'leye', 'lear', 'reye', 'rear')
_COCO_19_EDGES = _chains(
    'neck-nose', 'neck-pelv', 'neck-lsho-lelb-lwri', 'neck-rsho-relb-rwri',
    'pelv-lhip-lkne-lank', 'pelv-rhip-rkne-rank', 'nose-leye-lear', 'nose-reye-rear')

# pybullet's DeepMimic humanoid (metrabs_ros.data): its 15 link origins, in URDF link order.
_HUMANOID_15_NAMES = (
    'pelv', 'thor', 'neck', 'rhip', 'rkne', 'rank', 'rsho', 'relb', 'rwri',
    'lhip', 'lkne', 'lank', 'lsho', 'lelb', 'lwri')
_HUMANOID_15_EDGES = _chains(
    'pelv-thor-neck', 'pelv-rhip-rkne-rank', 'pelv-lhip-lkne-lank',
    'thor-rsho-relb-rwri', 'thor-lsho-lelb-lwri')

SKELETONS: dict[str, Skeleton] = {
    s.name: s for s in [
        make_skeleton('smpl_24', _SMPL_24_NAMES, _SMPL_24_EDGES),
        make_skeleton('smpl+head_30', _SMPL_24_NAMES + _HEAD_6_NAMES,
                      _SMPL_24_EDGES + _HEAD_6_EDGES),
        make_skeleton('h36m_17', _H36M_17_NAMES, _H36M_17_EDGES),
        make_skeleton('coco_19', _COCO_19_NAMES, _COCO_19_EDGES),
        make_skeleton('humanoid_15', _HUMANOID_15_NAMES, _HUMANOID_15_EDGES),
    ]
}


def get_skeleton(name: str) -> Skeleton:
    """Look up a registered skeleton by name; unknown names raise a ValueError listing the known."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f'unknown skeleton {name!r}; known: {sorted(SKELETONS)}') from None
