"""Node end to end: a camera publisher (this process) at a fixed rate and the pose node in its own
process over DDS. Reports output rate, latency from image stamp to skeleton receipt (median,
p95), frames dropped by the node, its resident memory after warm-up and at the end, and the
node's overhead over the estimator alone on the same frames.

    python benchmarks/node_latency.py [--rates 30 100] [--seconds 60] [--device auto]
        [--num-aug 1]

Frames: the bundled sample sequence (640x480, 2 people), cycled, each with a fresh stamp; the
messages are built once, as a camera driver would not pay Python message construction.
Overhead, per input rate: wall, the node's output period against estimator.detect_poses on the
same frames in this process; CPU, the node process's CPU time (all threads) per output against
the estimator's per frame. The publisher's own CPU share is printed too: on a small machine it
competes with the node.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# As the node does (metrabs_ros/ros/pose_node.py), so that the estimator alone runs the same way.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from _common import machine  # noqa: E402  (imports torch)


@dataclass
class Rig:
    """The pose node (own process) and a camera peer in this process, with what it received."""

    node: object  # subprocess.Popen
    peer: object  # rclpy Node
    image_pub: object
    info_pub: object
    messages: list  # (Image, CameraInfo) pairs, built once
    latencies: list = field(default_factory=list)  # (receipt time, seconds since the stamp)
    diagnostics: list = field(default_factory=list)
    sent: int = 0

    def publish_for(self, rate: float, seconds: float) -> float:
        """Publish frames (cycled, fresh stamps) at `rate` Hz for `seconds`; returns the time."""
        import rclpy
        period, start, first = 1.0 / rate, time.monotonic(), self.sent
        while time.monotonic() - start < seconds:
            image, info = self.messages[self.sent % len(self.messages)]
            image.header.stamp = info.header.stamp = self.peer.get_clock().now().to_msg()
            self.image_pub.publish(image)
            self.info_pub.publish(info)
            self.sent += 1
            next_time = start + (self.sent - first) * period
            while time.monotonic() < next_time:
                rclpy.spin_once(self.peer, timeout_sec=max(0.0, next_time - time.monotonic()))
        return time.monotonic() - start

    def diagnostic_values(self) -> dict:
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}


@contextmanager
def node_and_camera(parameters: dict, frames):
    """Start the node with `parameters`, wait until it is up and subscribed; yields a Rig."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from metrabs_ros.msg import SkeletonArray
    from metrabs_ros.ros.demo import frame_messages
    from metrabs_ros.ros.node_process import pose_node_process, spin_until

    namespace = '/metrabs_benchmark'
    log = Path(tempfile.mkdtemp()) / 'node.log'
    with pose_node_process(namespace, parameters, log) as node:
        rclpy.init()
        peer = rclpy.create_node('benchmark_camera', namespace=namespace)
        try:
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            rig = Rig(node, peer, peer.create_publisher(Image, 'image', qos),
                      peer.create_publisher(CameraInfo, 'camera_info', qos), [])

            def on_skeletons(msg):
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                rig.latencies.append((time.time(), time.time() - stamp))

            peer.create_subscription(SkeletonArray, 'skeletons', on_skeletons, 100)
            peer.create_subscription(DiagnosticArray, '/diagnostics', rig.diagnostics.append, 10)
            if not spin_until(peer, lambda: rig.diagnostics or node.poll() is not None, 180.0) \
                    or node.poll() is not None:
                raise RuntimeError(f'node did not come up: {log.read_text()[-2000:]}')
            spin_until(peer, lambda: rig.image_pub.get_subscription_count() > 0, 30.0)
            # Built once: a camera driver does not pay Python message construction per frame.
            rig.messages = [frame_messages(frame, peer.get_clock().now().to_msg())
                            for frame in frames]
            yield rig
        finally:
            peer.destroy_node()
            rclpy.try_shutdown()


def run_rate(rate: float, seconds: float, parameters: dict, frames) -> dict:
    from metrabs_ros.ros.node_process import (process_cpu_seconds, resident_memory_mb,
                                              spin_until)
    with node_and_camera(parameters, frames) as rig:
        rss_start = resident_memory_mb(rig.node.pid)
        node_cpu_start, own_cpu_start = process_cpu_seconds(rig.node.pid), time.process_time()
        elapsed = rig.publish_for(rate, seconds)
        outputs_in_window = len(rig.latencies)
        node_cpu = process_cpu_seconds(rig.node.pid) - node_cpu_start
        own_cpu = time.process_time() - own_cpu_start
        spin_until(rig.peer, lambda: False, 5.0)  # the outputs still in flight
        rss_end = resident_memory_mb(rig.node.pid)
        values = rig.diagnostic_values()
        latencies, sent = rig.latencies, rig.sent
    times = np.array([t for t, _ in latencies])
    lat = 1000 * np.array([d for _, d in latencies])
    steady = times > times[0] + 2 if len(times) else times  # skip the first 2 s
    output_rate = (steady.sum() - 1) / (times[steady][-1] - times[steady][0]) \
        if steady.sum() > 2 else float('nan')
    return dict(rate_hz=rate, sent=sent, received=len(lat), output_hz=output_rate,
                latency_median_ms=float(np.median(lat)), latency_p95_ms=float(
                    np.percentile(lat, 95)), dropped=int(values.get('frames_dropped', -1)),
                node_inference_ms=float(values.get('inference_ms', 'nan')),
                rss_start_mb=rss_start, rss_end_mb=rss_end,
                node_cpu_percent=100 * node_cpu / elapsed,
                node_cpu_ms_per_output=1000 * node_cpu / max(outputs_in_window, 1),
                publisher_cpu_percent=100 * own_cpu / elapsed)


def estimator_ms_per_frame(parameters: dict, frames, seconds: float,
                           warm_up_s: float = 3.0) -> tuple[float, float]:
    """Wall and CPU (all threads) milliseconds per frame of detect_poses in this process, over
    `seconds` after `warm_up_s` (shared hosts run faster for the first seconds after idling)."""
    from metrabs_ros.bundled import model_and_detector
    from metrabs_ros.detection import load_detector
    from metrabs_ros.estimator import PoseEstimator
    from metrabs_ros.weights import load_model
    model_path, detector = model_and_detector(parameters['model_path'], parameters['detector'])
    estimator = PoseEstimator(load_model(model_path), load_detector(detector),
                              device=parameters['device'])

    def run(duration_s: float) -> int:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration_s:
            frame = frames[count % len(frames)]
            estimator.detect_poses(frame.image, frame.camera, num_aug=parameters['num_aug'])
            count += 1
        return count

    run(warm_up_s)
    start, cpu_start = time.perf_counter(), time.process_time()
    count = run(seconds)
    return (1000 * (time.perf_counter() - start) / count,
            1000 * (time.process_time() - cpu_start) / count)


def main(argv=None) -> None:
    from metrabs_ros.bundled import SAMPLE_SEQUENCE
    from metrabs_ros.data.dataset import dataset_size, load_sample
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rates', type=float, nargs='+', default=[30.0, 100.0])
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--num-aug', type=int, default=1)
    parser.add_argument('--alone-seconds', type=float, default=15.0,
                        help='how long to time the estimator alone before each rate')
    parser.add_argument('--json', type=Path, default=None, help='also write the rows here')
    args = parser.parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    count = dataset_size(SAMPLE_SEQUENCE)
    frames = [load_sample(SAMPLE_SEQUENCE, i) for i in range(count)]
    parameters = dict(model_path='', detector='', device=args.device, num_aug=args.num_aug,
                      reliability='reliable', diagnostics_period_s=1.0)
    print(f'machine: {machine()}')
    rows = []
    for rate in args.rates:  # the estimator alone right before each run: shared hosts drift
        alone_ms, alone_cpu_ms = estimator_ms_per_frame(parameters, frames,
                                                         args.alone_seconds)
        rows.append(dict(run_rate(rate, args.seconds, parameters, frames),
                         estimator_ms=alone_ms, estimator_cpu_ms=alone_cpu_ms))
    print(f'node: bundled model + detector, num_aug {args.num_aug}, {args.seconds:.0f} s per rate')
    print('| input Hz | sent | outputs | output Hz | latency median (ms) | latency p95 (ms) | '
          'dropped | RSS after warm-up (MB) | RSS at end (MB) |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for r in rows:
        print(f'| {r["rate_hz"]:.0f} | {r["sent"]} | {r["received"]} | {r["output_hz"]:.2f} | '
              f'{r["latency_median_ms"]:.0f} | {r["latency_p95_ms"]:.0f} | {r["dropped"]} | '
              f'{r["rss_start_mb"]:.0f} | {r["rss_end_mb"]:.0f} |')
    print()
    print('| input Hz | estimator alone: wall / CPU per frame (ms) | node period (ms) | '
          'wall overhead | node CPU (%) | node CPU per output (ms) | CPU overhead | '
          'publisher CPU (%) |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for r in rows:
        period = 1000 / r['output_hz']
        print(f'| {r["rate_hz"]:.0f} | {r["estimator_ms"]:.1f} / {r["estimator_cpu_ms"]:.1f} | '
              f'{period:.1f} | {100 * (period / r["estimator_ms"] - 1):+.1f} % | '
              f'{r["node_cpu_percent"]:.0f} | {r["node_cpu_ms_per_output"]:.1f} | '
              f'{100 * (r["node_cpu_ms_per_output"] / r["estimator_cpu_ms"] - 1):+.1f} % | '
              f'{r["publisher_cpu_percent"]:.0f} |')
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows), indent=2))


if __name__ == '__main__':
    main()
