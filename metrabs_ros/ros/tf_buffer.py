"""The subset of tf2_ros' Buffer and TransformListener that the node uses, for pip-only
environments (the node imports tf2_ros where it is importable).

``Buffer.lookup_transform(target, source, time, timeout)`` returns the TransformStamped that maps
points in the source frame into the target frame at `time` (0 = latest), composing the frame tree
and interpolating (linear translation, slerp rotation) between the samples around `time`.
"""
from __future__ import annotations

import bisect
import threading
import time as systime

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.time import Time


class TransformException(Exception):
    pass


class LookupException(TransformException):
    pass


class ConnectivityException(TransformException):
    pass


class ExtrapolationException(TransformException):
    pass


class Buffer:
    """Time-stamped transforms per child frame; lookups compose and interpolate them."""

    def __init__(self, cache_time: Duration | None = None, node=None):
        self.cache_ns = (cache_time or Duration(seconds=10)).nanoseconds
        self.samples: dict[str, list] = {}  # child -> sorted [(t_ns, parent, xyz, xyzw)]
        self.static: dict[str, tuple] = {}  # child -> (parent, xyz, xyzw)
        self.condition = threading.Condition()

    def set_transform(self, transform: TransformStamped, authority: str) -> bool:
        child, parent, xyz, xyzw = _unpack(transform)
        t_ns = Time.from_msg(transform.header.stamp).nanoseconds
        with self.condition:
            samples = self.samples.setdefault(child, [])
            bisect.insort(samples, (t_ns, parent, xyz, xyzw), key=lambda s: s[0])
            while samples and samples[-1][0] - samples[0][0] > self.cache_ns:
                samples.pop(0)
            self.condition.notify_all()
        return True

    def set_transform_static(self, transform: TransformStamped, authority: str) -> bool:
        child, parent, xyz, xyzw = _unpack(transform)
        with self.condition:
            self.static[child] = (parent, xyz, xyzw)
            self.condition.notify_all()
        return True

    def lookup_transform(self, target_frame: str, source_frame: str, time: Time,
                         timeout: Duration | None = None) -> TransformStamped:
        """Transform mapping source-frame points to target_frame at `time`; waits up to timeout."""
        deadline = systime.monotonic() + (timeout.nanoseconds * 1e-9 if timeout else 0.0)
        t_ns = time.nanoseconds
        with self.condition:
            while True:
                try:
                    matrix = self._lookup(target_frame, source_frame, t_ns)
                    break
                except TransformException:
                    remaining = deadline - systime.monotonic()
                    if remaining <= 0:
                        raise
                    self.condition.wait(remaining)
        return _pack(matrix, target_frame, source_frame, time)

    def can_transform(self, target_frame: str, source_frame: str, time: Time,
                      timeout: Duration | None = None) -> bool:
        try:
            self.lookup_transform(target_frame, source_frame, time, timeout)
            return True
        except TransformException:
            return False

    def _lookup(self, target: str, source: str, t_ns: int) -> np.ndarray:
        source_chain = self._chain_to_root(source, t_ns)
        target_chain = self._chain_to_root(target, t_ns)
        source_frames = [frame for frame, _ in source_chain]
        common = next((f for f, _ in target_chain if f in source_frames), None)
        if common is None:
            raise ConnectivityException(f'{source!r} and {target!r} are not connected')
        root_from_source = dict(source_chain)[common]
        root_from_target = dict(target_chain)[common]
        return np.linalg.inv(root_from_target) @ root_from_source

    def _chain_to_root(self, frame: str, t_ns: int) -> list[tuple[str, np.ndarray]]:
        """[(ancestor, ancestor_from_frame 4x4)] from frame itself up to its root."""
        chain, accumulated = [(frame, np.eye(4))], np.eye(4)
        if frame not in self.static and frame not in self.samples and not self._is_parent(frame):
            raise LookupException(f'frame {frame!r} does not exist')
        while frame in self.static or frame in self.samples:
            parent, parent_from_frame = self._edge(frame, t_ns)
            accumulated = parent_from_frame @ accumulated
            frame = parent
            chain.append((frame, accumulated))
            if len(chain) > 1000:
                raise LookupException('cycle in the frame tree')
        return chain

    def _is_parent(self, frame: str) -> bool:
        return any(s[0] == frame for s in self.static.values()) or any(
            samples and samples[-1][1] == frame for samples in self.samples.values())

    def _edge(self, child: str, t_ns: int) -> tuple[str, np.ndarray]:
        if child in self.static:
            parent, xyz, xyzw = self.static[child]
            return parent, _matrix(xyz, xyzw)
        samples = self.samples[child]
        if t_ns == 0:
            _, parent, xyz, xyzw = samples[-1]
            return parent, _matrix(xyz, xyzw)
        times = [s[0] for s in samples]
        i = bisect.bisect_left(times, t_ns)
        if i < len(times) and times[i] == t_ns:
            _, parent, xyz, xyzw = samples[i]
            return parent, _matrix(xyz, xyzw)
        if i == 0 or i == len(times):
            raise ExtrapolationException(
                f'{child!r} is known from {times[0] * 1e-9:.3f} to {times[-1] * 1e-9:.3f} s, '
                f'not at {t_ns * 1e-9:.3f} s')
        (t0, parent, p0, q0), (t1, _, p1, q1) = samples[i - 1], samples[i]
        w = (t_ns - t0) / (t1 - t0)
        return parent, _matrix(p0 + w * (p1 - p0), _slerp(q0, q1, w))


class TransformListener:
    """Fills a Buffer from /tf and /tf_static."""

    def __init__(self, buffer: Buffer, node, qos=100, static_qos=None):
        from tf2_msgs.msg import TFMessage  # ImportError where no tf2_msgs is built
        self.buffer, self.node = buffer, node
        static_qos = static_qos or QoSProfile(depth=100,
                                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_sub = node.create_subscription(TFMessage, '/tf', self._on_tf, qos)
        self.tf_static_sub = node.create_subscription(TFMessage, '/tf_static',
                                                      self._on_tf_static, static_qos)

    def unregister(self) -> None:
        """Destroy both subscriptions (as tf2_ros's listener does)."""
        self.node.destroy_subscription(self.tf_sub)
        self.node.destroy_subscription(self.tf_static_sub)

    def _on_tf(self, msg) -> None:
        for transform in msg.transforms:
            self.buffer.set_transform(transform, 'default_authority')

    def _on_tf_static(self, msg) -> None:
        for transform in msg.transforms:
            self.buffer.set_transform_static(transform, 'default_authority')


def transform_to_matrix(transform: TransformStamped) -> np.ndarray:
    """(4, 4) matrix of a TransformStamped (maps child-frame points into the header frame)."""
    _, _, xyz, xyzw = _unpack(transform)
    return _matrix(xyz, xyzw)


def _unpack(transform: TransformStamped):
    t, q = transform.transform.translation, transform.transform.rotation
    xyzw = np.array([q.x, q.y, q.z, q.w])
    return (transform.child_frame_id, transform.header.frame_id, np.array([t.x, t.y, t.z]),
            xyzw / np.linalg.norm(xyzw))


def _matrix(xyz: np.ndarray, xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = xyzw
    matrix = np.eye(4)
    matrix[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    matrix[:3, 3] = xyz
    return matrix


def _slerp(q0: np.ndarray, q1: np.ndarray, w: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + w * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - w) * theta) * q0 + np.sin(w * theta) * q1) / np.sin(theta)


def _pack(matrix: np.ndarray, target: str, source: str, time: Time) -> TransformStamped:
    out = TransformStamped()
    out.header.frame_id, out.child_frame_id = target, source
    out.header.stamp = time.to_msg()
    out.transform.translation.x, out.transform.translation.y, out.transform.translation.z = (
        float(v) for v in matrix[:3, 3])
    q = _quaternion(matrix[:3, :3])
    (out.transform.rotation.x, out.transform.rotation.y, out.transform.rotation.z,
     out.transform.rotation.w) = (float(v) for v in q)
    return out


def _quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w)."""
    trace = np.trace(R)
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        return np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s,
                         (R[1, 0] - R[0, 1]) / s, s / 4])
    i = int(np.argmax(np.diag(R)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * np.sqrt(1 + R[i, i] - R[j, j] - R[k, k])
    q = np.zeros(4)
    q[i], q[j], q[k] = s / 4, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    q[3] = (R[k, j] - R[j, k]) / s
    return q
