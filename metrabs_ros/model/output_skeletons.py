"""Which skeletons a model can output, and how its raw joints map onto them.

Multi-dataset models predict a set of raw joints; an optional joint transform matrix
(J_raw, J_all) linearly maps them to all output joints, and each skeleton picks its joints from
those by index.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metrabs_ros.skeletons import Skeleton, make_skeleton_from_indices


class OutputSkeletons(nn.Module):
    """Maps raw-joint poses (..., J_raw, C) to a named skeleton's joints (..., J, C)."""

    def __init__(self, skeletons: dict[str, tuple[Skeleton, np.ndarray]],
                 joint_transform: np.ndarray | None = None):
        super().__init__()
        if not skeletons:
            raise ValueError('a model needs at least one output skeleton')
        if joint_transform is not None:
            self.register_buffer('joint_transform',
                                 torch.as_tensor(np.asarray(joint_transform), dtype=torch.float32))
        else:
            self.joint_transform = None
        self.skeletons = {name: skeleton for name, (skeleton, _) in skeletons.items()}
        self._buffer_of = {name: f'indices_{i}' for i, name in enumerate(skeletons)}
        for name, (skeleton, indices) in skeletons.items():
            indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            if len(indices) != skeleton.n_joints:
                raise ValueError(f'skeleton {name!r}: {len(indices)} indices for '
                                 f'{skeleton.n_joints} joints')
            self.register_buffer(self._buffer_of[name], torch.from_numpy(indices), persistent=False)

    @classmethod
    def identity(cls, skeleton: Skeleton) -> 'OutputSkeletons':
        """The raw joints are the output: one skeleton, no transform."""
        return cls({skeleton.name: (skeleton, np.arange(skeleton.n_joints))})

    @property
    def names(self) -> list[str]:
        return list(self.skeletons)

    @property
    def default(self) -> str:
        return next(iter(self.skeletons))

    def indices(self, name: str) -> torch.Tensor:
        return getattr(self, self._buffer_of[self._check(name)])

    def select(self, poses_raw: torch.Tensor, name: str) -> torch.Tensor:
        """(..., J_raw, C) raw-joint poses -> (..., J, C) poses of skeleton `name`."""
        name = self._check(name)
        if self.joint_transform is not None:  # the buffers follow the model; poses may not
            poses_raw = torch.einsum('...jc,jk->...kc', poses_raw, self.joint_transform.to(
                poses_raw.device, poses_raw.dtype))
        return poses_raw.index_select(-2, self.indices(name).to(poses_raw.device))

    def _check(self, name: str) -> str:
        if name not in self.skeletons:
            raise ValueError(f'unknown skeleton {name!r} for this model; it has: {self.names}')
        return name


def skeletons_from_infos(infos: dict) -> dict[str, tuple[Skeleton, np.ndarray]]:
    """Official ``skeleton_infos`` dict ({name: {indices, names, edges}}) -> OutputSkeletons input."""
    result = {}
    for name, info in infos.items():
        names = [str(n) for n in info['names']]
        skeleton = make_skeleton_from_indices(str(name), names, np.asarray(info['edges']))
        result[str(name)] = (skeleton, np.asarray(info['indices']))
    return result

