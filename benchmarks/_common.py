"""Shared by the benchmark scripts: the machine they ran on, and model loading."""
from __future__ import annotations

import os
import platform

import torch


def machine() -> str:
    """One line describing the CPU / GPU and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
    return (f'{cpu}, {os.cpu_count()} CPU threads visible, torch {torch.__version__} '
            f'({torch.get_num_threads()} intra-op threads), {gpu}')


def load_pose_model(path: str | None):
    """A model directory, or the bundled default when path is None or ''."""
    from metrabs_ros.bundled import DEFAULT_MODEL
    from metrabs_ros.weights import load_model
    return load_model(path or DEFAULT_MODEL)


def resolve(device: str) -> torch.device:
    from metrabs_ros.estimator import resolve_device
    return resolve_device(device)
