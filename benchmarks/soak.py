"""Soak: the pose node under a steady camera for minutes; resident memory, latency and output
rate sampled per interval, printed as a table (memory growth and slowdowns show up here, not in
the short benchmarks).

    python benchmarks/soak.py [--minutes 10] [--rate 30] [--sample-seconds 60] [--device auto]

Camera and node as in node_latency.py: the bundled sample sequence (640x480, 2 people) cycled
with fresh stamps, reliable QoS, the node in its own process, bundled model and detector.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # as the node does

from _common import machine  # noqa: E402  (imports torch)
from node_latency import node_and_camera  # noqa: E402


def soak(minutes: float, rate: float, sample_s: float, parameters: dict, frames) -> list[dict]:
    """One row per sample_s interval: time, RSS, outputs, output Hz, latency median / p95,
    frames dropped so far (node diagnostics)."""
    from metrabs_ros.ros.node_process import resident_memory_mb
    rows = []
    with node_and_camera(parameters, frames) as rig:
        rows.append(dict(t_s=0.0, rss_mb=resident_memory_mb(rig.node.pid), outputs=0,
                         output_hz=float('nan'), latency_median_ms=float('nan'),
                         latency_p95_ms=float('nan'), sent=0, dropped=0))
        elapsed = 0.0
        while elapsed < minutes * 60:
            seen = len(rig.latencies)
            interval = rig.publish_for(rate, min(sample_s, minutes * 60 - elapsed))
            elapsed += interval
            window = 1000 * np.array([d for _, d in rig.latencies[seen:]]) \
                if len(rig.latencies) > seen else np.array([np.nan])
            rows.append(dict(
                t_s=elapsed, rss_mb=resident_memory_mb(rig.node.pid),
                outputs=len(rig.latencies) - seen,
                output_hz=(len(rig.latencies) - seen) / interval,
                latency_median_ms=float(np.median(window)),
                latency_p95_ms=float(np.percentile(window, 95)), sent=rig.sent,
                dropped=int(rig.diagnostic_values().get('frames_dropped', -1))))
            print(f'soak: {elapsed / 60:.1f} min, RSS {rows[-1]["rss_mb"]:.0f} MB, '
                  f'{rows[-1]["output_hz"]:.2f} Hz', flush=True)
    return rows


def main(argv=None) -> None:
    from metrabs_ros.bundled import SAMPLE_SEQUENCE
    from metrabs_ros.data.dataset import dataset_size, load_sample
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--rate', type=float, default=30.0, help='camera frames per second')
    parser.add_argument('--sample-seconds', type=float, default=60.0)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--json', type=Path, default=None, help='also write the rows here')
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    count = dataset_size(SAMPLE_SEQUENCE)
    frames = [load_sample(SAMPLE_SEQUENCE, i) for i in range(count)]
    parameters = dict(model_path='', detector='', device=args.device, num_aug=1,
                      reliability='reliable', diagnostics_period_s=1.0)
    print(f'machine: {machine()}')
    rows = soak(args.minutes, args.rate, args.sample_seconds, parameters, frames)
    print(f'node: bundled model + detector, camera {args.rate:.0f} Hz for {args.minutes:.0f} min')
    print('| time (min) | RSS (MB) | outputs | output Hz | latency median (ms) | '
          'latency p95 (ms) | frames sent | dropped by the node (total) |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for r in rows:
        print(f'| {r["t_s"] / 60:.1f} | {r["rss_mb"]:.0f} | {r["outputs"]} | '
              f'{r["output_hz"]:.2f} | {r["latency_median_ms"]:.0f} | '
              f'{r["latency_p95_ms"]:.0f} | {r["sent"]} | {r["dropped"]} |')
    growth = rows[-1]['rss_mb'] - rows[1]['rss_mb'] if len(rows) > 2 else float('nan')
    print(f'RSS growth after the first interval: {growth:+.0f} MB')
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows), indent=2))


if __name__ == '__main__':
    main()
