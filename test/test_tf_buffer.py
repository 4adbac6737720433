import threading

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='rclpy not installed: run scripts/setup_env.sh')
from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.time import Time  # noqa: E402

from metrabs_ros.ros.tf_buffer import (Buffer, ConnectivityException,  # noqa: E402
                                       ExtrapolationException, LookupException,
                                       transform_to_matrix)


def transform(parent, child, xyz, yaw=0.0, sec=0, nanosec=0):
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp.sec, t.header.stamp.nanosec = sec, nanosec
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
    t.transform.rotation.z, t.transform.rotation.w = np.sin(yaw / 2), np.cos(yaw / 2)
    return t


def apply(t: TransformStamped, point):
    return (transform_to_matrix(t) @ np.append(point, 1.0))[:3]


def test_chain_with_static_and_interpolated_dynamic_transforms():
    buffer = Buffer()
    buffer.set_transform_static(transform('base', 'camera', (0.1, 0, 1.2), yaw=np.pi / 2), 'test')
    buffer.set_transform(transform('world', 'base', (0, 0, 0), sec=10), 'test')
    buffer.set_transform(transform('world', 'base', (2, 0, 0), yaw=np.pi / 2, sec=12), 'test')
    t = buffer.lookup_transform('world', 'camera', Time(seconds=11))
    assert (t.header.frame_id, t.child_frame_id) == ('world', 'camera')
    # Halfway: base at x = 1 turned 45 deg; the camera's origin sits 0.1 m ahead of base.
    expected_origin = np.array([1 + 0.1 * np.cos(np.pi / 4), 0.1 * np.sin(np.pi / 4), 1.2])
    np.testing.assert_allclose(apply(t, [0, 0, 0]), expected_origin, atol=1e-12)
    # The inverse lookup maps back.
    inverse = buffer.lookup_transform('camera', 'world', Time(seconds=11))
    np.testing.assert_allclose(apply(inverse, expected_origin), [0, 0, 0], atol=1e-12)
    latest = buffer.lookup_transform('world', 'camera', Time())
    np.testing.assert_allclose(apply(latest, [0, 0, 0])[:2], [2, 0.1], atol=1e-12)


def test_sibling_frames_compose_through_their_common_parent():
    buffer = Buffer()
    buffer.set_transform_static(transform('map', 'a', (1, 0, 0)), 'test')
    buffer.set_transform_static(transform('map', 'b', (0, 2, 0)), 'test')
    t = buffer.lookup_transform('b', 'a', Time())
    np.testing.assert_allclose(apply(t, [0, 0, 0]), [1, -2, 0], atol=1e-12)


def test_errors():
    buffer = Buffer()
    buffer.set_transform(transform('world', 'base', (0, 0, 0), sec=10), 'test')
    buffer.set_transform(transform('world', 'base', (1, 0, 0), sec=11), 'test')
    buffer.set_transform_static(transform('elsewhere', 'island', (0, 0, 0)), 'test')
    with pytest.raises(ExtrapolationException, match='not at 12.000'):
        buffer.lookup_transform('world', 'base', Time(seconds=12))
    with pytest.raises(LookupException, match='nowhere'):
        buffer.lookup_transform('world', 'nowhere', Time())
    with pytest.raises(ConnectivityException):
        buffer.lookup_transform('world', 'island', Time())
    assert not buffer.can_transform('world', 'base', Time(seconds=9))


def test_lookup_waits_for_a_transform_arriving_within_the_timeout():
    buffer = Buffer()
    timer = threading.Timer(0.2, lambda: buffer.set_transform_static(
        transform('world', 'late', (0, 0, 3)), 'test'))
    timer.start()
    t = buffer.lookup_transform('world', 'late', Time(), Duration(seconds=5))
    np.testing.assert_allclose(apply(t, [0, 0, 0]), [0, 0, 3])
    timer.join()
