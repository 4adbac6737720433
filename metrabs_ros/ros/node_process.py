"""Start the pose node in a process of its own (demo, benchmarks), stop it cleanly."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pose_node_process(namespace: str, parameters: dict, log_path: Path,
                      params_file: Path | None = None):
    """Run ``python -m metrabs_ros.ros.pose_node`` in `namespace` with a parameters file and
    `parameters` overriding it (empty strings are left at the node's default); yields the Popen,
    terminates it on exit."""
    args = [sys.executable, '-m', 'metrabs_ros.ros.pose_node', '--ros-args',
            '-r', f'__ns:={namespace}']
    if params_file is not None:
        args += ['--params-file', str(params_file)]
    for name, value in parameters.items():
        if value == '':
            continue  # '' cannot be written as a -p override; it is the default anyway
        if isinstance(value, bool):
            value = str(value).lower()
        args += ['-p', f'{name}:={value}']
    with open(log_path, 'w') as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   env=os.environ.copy())
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def spin_until(node, condition, timeout_s: float, period_s: float = 0.02) -> bool:
    """Spin an rclpy node until condition() holds or timeout_s passes; returns condition()."""
    import rclpy
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        rclpy.spin_once(node, timeout_sec=period_s)
    return bool(condition())


def resident_memory_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc), NaN when unavailable."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, in seconds (Linux /proc)."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except OSError:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
