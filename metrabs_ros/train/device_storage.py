"""Arrays that grow on a training device, for caches read while renderers still add to them,
the base of the pools that draw batches from them (crop_pool, detector_pool), and their
uniform draws on the device."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metrabs_ros.train.crop_cache import cache_directories, chunk_dirs, no_chunks_error


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


class DevicePool:
    """Endless batches drawn on `device` from the chunks of the caches in `directories` (a
    path, comma-separated paths or a sequence of them); the chunks that renderers add meanwhile
    are read every `refresh_every` batches. Subclasses read a chunk (`load_chunk`, into
    `storage`) and draw a batch (`sample`)."""

    render_options = ''  # what the caches must be rendered with, for the empty-cache error

    def __init__(self, directories, batch_size: int, device: torch.device | str, seed: int,
                 refresh_every: int = 200):
        self.directories = cache_directories(directories)
        self.batch_size, self.device = batch_size, torch.device(device)
        self.refresh_every = refresh_every
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.loaded: set[Path] = set()
        self.storage = DeviceStorage(self.device)

    @property
    def size(self) -> int:
        return self.storage.size

    def refresh(self) -> int:
        """Read the chunks written since the last call onto the device; the number of rows."""
        new = [p for d in self.directories for p in chunk_dirs(d) if p not in self.loaded]
        for path in new:
            self.load_chunk(path)
            self.loaded.add(path)
        if not self.size:
            raise no_chunks_error(self.directories, self.render_options)
        return self.size

    def __iter__(self):
        batch_number = 0
        while True:
            if batch_number % self.refresh_every == 0:
                self.refresh()
            batch_number += 1
            yield self.sample()

    def load_chunk(self, path: Path) -> None:
        raise NotImplementedError

    def sample(self):
        raise NotImplementedError


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """n values uniform in [low, high) on the generator's device."""
    return low + (high - low) * torch.rand(n, device=generator.device, generator=generator)
