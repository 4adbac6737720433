"""Wall-clock time per named pipeline stage, for benchmarks (off by default, then free).

When enabled, CUDA is synchronized at each stage boundary so that asynchronous GPU work is
counted in the stage that queued it.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class StageTimer:
    def __init__(self, device: torch.device | str = 'cpu', enabled: bool = False):
        self.device = torch.device(device)
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str):
        """Time the enclosed block and add it to `stage`."""
        if not self.enabled:
            yield
            return
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self.seconds[stage] += time.perf_counter() - start

    def reset(self) -> None:
        self.seconds.clear()

    def _synchronize(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
