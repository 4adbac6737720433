"""Arrays that grow on a training device, for caches read while renderers still add to them."""
from __future__ import annotations

import numpy as np
import torch


class DeviceStorage:
    """Named tensors on `device` with a common first dimension, appended to in place and grown
    by doubling (few copies of a large pool); `tensors[name][:size]` are the rows so far."""

    def __init__(self, device: torch.device):
        self.device = device
        self.size = 0
        self.tensors: dict[str, torch.Tensor] = {}

    def append(self, arrays: dict[str, np.ndarray | torch.Tensor]) -> None:
        arrays = {name: torch.as_tensor(array) for name, array in arrays.items()}
        n = len(next(iter(arrays.values())))
        capacity = len(next(iter(self.tensors.values()))) if self.tensors else 0
        if self.size + n > capacity:
            new_capacity = max(2 * capacity, self.size + n)
            for name, array in arrays.items():
                grown = torch.empty((new_capacity, *array.shape[1:]), dtype=array.dtype,
                                    device=self.device)
                if capacity:
                    grown[:self.size] = self.tensors[name][:self.size]
                self.tensors[name] = grown
        for name, array in arrays.items():
            self.tensors[name][self.size:self.size + n] = array.to(self.device)
        self.size += n

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]
