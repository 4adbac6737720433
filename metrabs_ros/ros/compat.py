"""The subsets of ROS 2 message_filters and tf2_ros that the node uses, for pip-only environments.

Where the upstream packages are importable, the node imports them instead; this module offers the
same names and call signatures so the node's code path is identical:
``Subscriber(node, msg_type, topic, qos_profile=...)`` with ``.sub`` and ``registerCallback``,
``TimeSynchronizer(subscribers, queue_size)`` calling back with exactly matching stamps, and
``TransformBroadcaster(node).sendTransform(transforms)`` publishing tf2_msgs/TFMessage on /tf
(publisher ``pub_tf``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict


class SimpleFilter:
    """Fans one input out to registered callbacks."""

    def __init__(self):
        self.callbacks = []

    def registerCallback(self, callback, *args):  # noqa: N802 (upstream name)
        self.callbacks.append((callback, args))

    def signalMessage(self, *msgs):  # noqa: N802 (upstream name)
        for callback, args in self.callbacks:
            callback(*(msgs + args))


class Subscriber(SimpleFilter):
    """A subscription whose messages feed the filter chain."""

    def __init__(self, node, msg_type, topic: str, qos_profile=10, **kwargs):
        super().__init__()
        self.node = node
        self.topic = topic
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, qos_profile,
                                            **kwargs)


class TimeSynchronizer(SimpleFilter):
    """Calls back with one message per input once all inputs have a message with the same
    header stamp; keeps at most queue_size pending stamps (oldest dropped first)."""

    def __init__(self, fs, queue_size: int):
        super().__init__()
        self.queue_size = queue_size
        self.n_inputs = len(fs)
        self.pending: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        for index, source in enumerate(fs):
            source.registerCallback(self.add, index)

    def add(self, msg, index: int):
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            slots = self.pending.setdefault(stamp, [None] * self.n_inputs)
            slots[index] = msg
            while len(self.pending) > self.queue_size:
                self.pending.popitem(last=False)
            if any(m is None for m in slots):
                return
            del self.pending[stamp]
            # Older incomplete stamps can no longer complete in order: drop them.
            for old in [s for s in self.pending if s < stamp]:
                del self.pending[old]
        self.signalMessage(*slots)


class TransformBroadcaster:
    """Publishes TransformStamped messages on /tf (needs the tf2_msgs interface package)."""

    def __init__(self, node, qos=100):
        from tf2_msgs.msg import TFMessage  # ImportError where no tf2_msgs is built
        self.message_type = TFMessage
        self.pub_tf = node.create_publisher(TFMessage, '/tf', qos)  # upstream's attribute name

    def sendTransform(self, transform):  # noqa: N802 (upstream name)
        transforms = list(transform) if isinstance(transform, (list, tuple)) else [transform]
        self.pub_tf.publish(self.message_type(transforms=transforms))


def import_message_filters():
    """The upstream message_filters module where importable, else this module."""
    try:
        import message_filters
        return message_filters
    except ImportError:
        import metrabs_ros.ros.compat as compat
        return compat
