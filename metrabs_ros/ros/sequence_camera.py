"""metrabs-camera: publish a recorded sequence as a camera driver would, to test a setup without a
camera. Image (rgb8) + CameraInfo (plumb_bob) with the same stamps, at a fixed rate, with the
chosen QoS reliability; no waiting for any consumer once playing.

    metrabs-camera --namespace /camera --image-topic image_raw --rate 10 --reliability best_effort

Default sequence: the bundled synthetic one. Large best-effort images on one host need the
publishing side's Fast DDS profile config/fastdds_large_data.xml (see the README).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from metrabs_ros.bundled import SAMPLE_SEQUENCE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='metrabs-camera', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sequence', type=Path, default=SAMPLE_SEQUENCE,
                        help='dataset directory of consecutive frames (metrabs-synth-sequence)')
    parser.add_argument('--namespace', default='/camera')
    parser.add_argument('--image-topic', default='image_raw', help='relative to the namespace')
    parser.add_argument('--rate', type=float, default=10.0, help='frames per second')
    parser.add_argument('--loops', type=int, default=1, help='times through the sequence (0: forever)')
    parser.add_argument('--reliability', choices=('reliable', 'best_effort'), default='best_effort',
                        help='QoS reliability (camera drivers usually publish best effort)')
    parser.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SECONDS',
                        help='first wait this long for a subscriber to both topics')
    args = parser.parse_args(argv)
    if not (args.sequence / 'index.json').is_file():
        print(f'metrabs-camera: error: no sequence at {args.sequence}', file=sys.stderr)
        return 2
    if args.rate <= 0:
        print('metrabs-camera: error: --rate must be positive', file=sys.stderr)
        return 2

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from metrabs_ros.data.dataset import dataset_size, load_sample
    from metrabs_ros.ros.demo import frame_messages
    from metrabs_ros.ros.node_process import spin_until

    count = dataset_size(args.sequence)
    samples = [load_sample(args.sequence, i) for i in range(count)]
    rclpy.init()
    node = rclpy.create_node('metrabs_sequence_camera', namespace=args.namespace)
    try:
        reliability = ReliabilityPolicy.RELIABLE if args.reliability == 'reliable' \
            else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=5, reliability=reliability)
        image_pub = node.create_publisher(Image, args.image_topic, qos)
        info_pub = node.create_publisher(CameraInfo, 'camera_info', qos)
        spin_until(node, lambda: image_pub.get_subscription_count() and
                   info_pub.get_subscription_count(), args.wait_for_subscribers)
        sent, loop = 0, 0
        while args.loops == 0 or loop < args.loops:
            for sample in samples:
                start = time.monotonic()
                image, info = frame_messages(sample, node.get_clock().now().to_msg())
                image_pub.publish(image)
                info_pub.publish(info)
                sent += 1
                spin_until(node, lambda: False, 1.0 / args.rate - (time.monotonic() - start))
            loop += 1
        print(f'metrabs-camera: published {sent} frames on {image_pub.topic_name} '
              f'({args.reliability})')
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
