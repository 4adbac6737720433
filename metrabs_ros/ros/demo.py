"""metrabs-demo: play a recorded sequence (default: the bundled synthetic one) through the real pose
node, started in its own process, over DDS; write what came out.

The demo node publishes each frame as sensor_msgs/Image + CameraInfo (intrinsics and distortion
of the sequence's camera) at the sequence's frame rate, and records the node's SkeletonArray,
MarkerArray and debug image messages. Output directory: summary.json (message counts, people
per frame, latency image stamp -> skeleton receipt, and errors against the sequence's ground
truth), overlay.png (the node's last debug image), markers.png (the last MarkerArray drawn in 3D)
and node.log.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from metrabs_ros.bundled import DEFAULT_DETECTOR, SAMPLE_SEQUENCE
from metrabs_ros.ros.node_process import pose_node_process, spin_until

NAMESPACE = '/metrabs_demo'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='metrabs-demo', description=__doc__)
    parser.add_argument('--sequence', type=Path, default=SAMPLE_SEQUENCE,
                        help='dataset directory of consecutive frames (metrabs-synth-sequence)')
    parser.add_argument('--model', default='', help="model directory; '' = bundled model")
    parser.add_argument('--detector', default='',
                        help="detector; '' = the bundled one (it knows the sample's synthetic "
                             "people), also with another --model")
    parser.add_argument('--device', default='auto')
    parser.add_argument('--num-aug', type=int, default=1)
    parser.add_argument('--out', type=Path, default=Path('metrabs_demo_output'))
    parser.add_argument('--keep-implausible', action='store_true',
                        help='turn the node\'s suppress_implausible_poses off (by default it '
                             'applies the rules the model\'s config says fit it)')
    parser.add_argument('--realtime', action='store_true',
                        help='publish at the frame rate even when the node is slower (it then '
                             'drops frames, as with a live camera)')
    parser.add_argument('--startup-timeout', type=float, default=180.0,
                        help='seconds to wait for the node to load and warm up')
    args = parser.parse_args(argv)
    if not (args.sequence / 'index.json').is_file():
        print(f'metrabs-demo: error: no sequence at {args.sequence}', file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    parameters = dict(model_path=args.model, detector=args.detector or str(DEFAULT_DETECTOR),
                      device=args.device,
                      num_aug=args.num_aug, reliability='reliable', diagnostics_period_s=0.5,
                      publish_debug_image=True,
                      suppress_implausible_poses=not args.keep_implausible)
    with pose_node_process(NAMESPACE, parameters, args.out / 'node.log') as node:
        summary = play(args.sequence, node, args.startup_timeout, args.out, args.realtime)
    if summary is None:
        print(f'metrabs-demo: error: the node did not come up; see {args.out / "node.log"}'
              f'{last_error(args.out / "node.log")}', file=sys.stderr)
        return 1
    (args.out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print(report(summary, args.out))
    complete = args.realtime or summary['skeleton_arrays'] == summary['frames_sent']
    return 0 if complete and summary['skeleton_arrays'] > 0 else 1


def last_error(log: Path) -> str:
    """The node log's last [ERROR] line (after ': '), or '' if it has none."""
    text = log.read_text(errors='replace') if log.is_file() else ''
    lines = [line for line in text.splitlines() if '[ERROR]' in line]
    return f': {lines[-1].split("]: ", 1)[-1]}' if lines else ''


def play(sequence: Path, node: subprocess.Popen, startup_timeout: float, out: Path,
         realtime: bool = False):
    """Publish the sequence to the running node at the sequence's frame rate (or slower: unless
    realtime, each frame waits for the previous frame's output); returns the summary, or None
    if the node never came up."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from visualization_msgs.msg import MarkerArray

    from metrabs_ros.data.dataset import load_sample
    from metrabs_ros.msg import SkeletonArray

    index = json.loads((sequence / 'index.json').read_text())
    rclpy.init()
    peer = rclpy.create_node('metrabs_demo_camera', namespace=NAMESPACE)
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = peer.create_publisher(Image, 'image', qos)
        info_pub = peer.create_publisher(CameraInfo, 'camera_info', qos)
        received = dict(skeletons=[], markers=[], debug=[], diagnostics=[])
        receipt_times = {}

        def on_skeletons(msg):
            receipt_times[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.time()
            received['skeletons'].append(msg)

        outputs = [peer.create_subscription(SkeletonArray, 'skeletons', on_skeletons, 50),
                   peer.create_subscription(MarkerArray, 'markers', received['markers'].append, 50),
                   peer.create_subscription(Image, 'debug_image', received['debug'].append, 5)]
        peer.create_subscription(DiagnosticArray, '/diagnostics',
                                 received['diagnostics'].append, 10)

        def frames_with_all_outputs() -> int:
            return min(len(received[k]) for k in ('skeletons', 'markers', 'debug'))

        # The node publishes diagnostics once configured (and, with autostart, activated); a
        # failed configure leaves it running, unconfigured, with the reason in its log.
        def gave_up() -> bool:
            return node.poll() is not None or 'configure failed' in last_error(out / 'node.log')

        if not spin_until(peer, lambda: received['diagnostics'] or gave_up(), startup_timeout,
                          period_s=0.1) or gave_up():
            return None
        spin_until(peer, lambda: image_pub.get_subscription_count()
                   and info_pub.get_subscription_count()
                   and all(s.get_publisher_count() for s in outputs), 10.0)
        samples = [load_sample(sequence, i) for i in range(index['count'])]
        period = 1.0 / index.get('fps', 10.0)
        sent = {}
        for number, sample in enumerate(samples):
            start = time.monotonic()
            stamp = peer.get_clock().now().to_msg()
            image, info = frame_messages(sample, stamp)
            sent[(stamp.sec, stamp.nanosec)] = (number, time.time())
            image_pub.publish(image)
            info_pub.publish(info)
            if not realtime:  # paced: wait for all of this frame's outputs (the node drops no
                # frame; its debug image publisher keeps only the latest, so the next frame
                # could replace an image still on its way)
                spin_until(peer, lambda: frames_with_all_outputs() > number, 30.0)
            spin_until(peer, lambda: False, max(0.0, period - (time.monotonic() - start)))
        spin_until(peer, lambda: frames_with_all_outputs() >= len(samples), 60.0)
        summary = summarize(received, receipt_times, sent, samples)
        write_pictures(received, out)
        return summary
    finally:
        peer.destroy_node()
        rclpy.try_shutdown()


def frame_messages(sample, stamp):
    """sensor_msgs Image (rgb8) and CameraInfo (plumb_bob) for a sequence frame."""
    from sensor_msgs.msg import CameraInfo, Image
    height, width = sample.image.shape[:2]
    image = Image(height=height, width=width, encoding='rgb8', step=3 * width,
                  data=np.ascontiguousarray(sample.image).tobytes())
    K = sample.camera.K
    distortion = [float(v) for v in sample.camera.distortion_coeffs[:5]]
    projection = np.concatenate([K, np.zeros((3, 1))], axis=1)
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob', d=distortion,
                      k=[float(v) for v in K.ravel()], r=[float(v) for v in np.eye(3).ravel()],
                      p=[float(v) for v in projection.ravel()])
    for message in (image, info):
        message.header.stamp = stamp
        message.header.frame_id = 'demo_camera_optical_frame'
    return image, info


def summarize(received, receipt_times, sent, samples) -> dict:
    """Counts, latency and ground-truth errors (people matched greedily by root distance)."""
    latencies, people, relative, absolute, missed = [], [], [], [], 0
    for message in received['skeletons']:
        key = (message.header.stamp.sec, message.header.stamp.nanosec)
        if key not in sent:
            continue
        number, sent_time = sent[key]
        latencies.append(receipt_times[key] - sent_time)
        people.append(len(message.skeletons))
        truth = samples[number].joints3d
        predicted = [np.array([[p.x, p.y, p.z] for p in s.joints3d]) for s in message.skeletons]
        unmatched = list(range(len(predicted)))
        for pose in truth:
            if not unmatched:
                missed += 1
                continue
            best = min(unmatched, key=lambda i: np.linalg.norm(predicted[i][0] - pose[0]))
            if len(predicted[best]) != len(pose):
                missed += 1
                continue
            unmatched.remove(best)
            absolute.append(np.linalg.norm(predicted[best] - pose, axis=-1).mean())
            relative.append(np.linalg.norm((predicted[best] - predicted[best][:1]) -
                                           (pose - pose[:1]), axis=-1).mean())
    latencies_ms = 1000 * np.array(latencies) if latencies else np.array([np.nan])
    return dict(
        frames_sent=len(sent), skeleton_arrays=len(latencies),
        marker_arrays=len(received['markers']), debug_images=len(received['debug']),
        people_per_frame=people,
        ground_truth_people=int(sum(len(s.joints3d) for s in samples)),
        missed_people=missed,
        mpjpe_mm=float(1000 * np.mean(relative)) if relative else None,
        abs_mpjpe_mm=float(1000 * np.mean(absolute)) if absolute else None,
        latency_ms=dict(median=float(np.median(latencies_ms)),
                        p95=float(np.percentile(latencies_ms, 95))))


def write_pictures(received, out: Path) -> None:
    """overlay.png (debug image) and markers.png (MarkerArray) of the frame with the most people
    (the latest of those)."""
    import cv2
    if not received['skeletons']:
        return
    best = max(reversed(received['skeletons']), key=lambda m: len(m.skeletons))
    stamp = (best.header.stamp.sec, best.header.stamp.nanosec)
    stamp_of = lambda header: (header.stamp.sec, header.stamp.nanosec)  # noqa: E731
    debug = [m for m in received['debug'] if stamp_of(m.header) == stamp]
    if debug:
        message = debug[0]
        rgb = np.frombuffer(bytes(message.data), np.uint8).reshape(message.height,
                                                                    message.width, 3)
        cv2.imwrite(str(out / 'overlay.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    markers = [m for m in received['markers']
               if any(stamp_of(marker.header) == stamp for marker in m.markers)]
    if markers:
        draw_markers(markers[0], out / 'markers.png')


def draw_markers(message, path: Path) -> None:
    """Bones (LINE_LIST) and joints (SPHERE_LIST) of a MarkerArray in a 3D plot (camera frame,
    shown with y down as in the image)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from visualization_msgs.msg import Marker
    figure = plt.figure(figsize=(6, 6))
    axes = figure.add_subplot(projection='3d')
    everything = []
    for marker in message.markers:
        points = np.array([[p.x, p.y, p.z] for p in marker.points]).reshape(-1, 3)
        everything.append(points)
        colour = (marker.color.r, marker.color.g, marker.color.b)
        if marker.type == Marker.LINE_LIST:
            for a, b in zip(points[0::2], points[1::2]):
                axes.plot([a[0], b[0]], [a[2], b[2]], [-a[1], -b[1]], color=colour)
        elif marker.type == Marker.SPHERE_LIST:
            axes.scatter(points[:, 0], points[:, 2], -points[:, 1], color=colour, s=8)
    if everything:  # equal metric scale on all axes
        points = np.concatenate(everything)[:, [0, 2, 1]] * [1, 1, -1]
        centre = (points.min(0) + points.max(0)) / 2
        half = max(0.5, (points.max(0) - points.min(0)).max() / 2)
        axes.set_xlim(centre[0] - half, centre[0] + half)
        axes.set_ylim(centre[1] - half, centre[1] + half)
        axes.set_zlim(centre[2] - half, centre[2] + half)
    axes.set_xlabel('x (m)')
    axes.set_ylabel('z, forward (m)')
    axes.set_zlabel('-y, up (m)')
    axes.set_title('MarkerArray from the pose node')
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(summary: dict, out: Path) -> str:
    mpjpe = summary['mpjpe_mm']
    errors = (f'MPJPE {mpjpe:.0f} mm, absolute MPJPE {summary["abs_mpjpe_mm"]:.0f} mm against '
              f'the ground truth' if mpjpe is not None else 'no people matched')
    return (f'metrabs-demo: {summary["frames_sent"]} frames sent, '
            f'{summary["skeleton_arrays"]} skeleton arrays, {summary["marker_arrays"]} marker '
            f'arrays, {summary["debug_images"]} debug images received; people per frame '
            f'{summary["people_per_frame"]}; {errors}; latency median '
            f'{summary["latency_ms"]["median"]:.0f} ms, p95 {summary["latency_ms"]["p95"]:.0f} '
            f'ms\nmetrabs-demo: wrote {out}/summary.json, overlay.png, markers.png, node.log')


if __name__ == '__main__':
    raise SystemExit(main())
