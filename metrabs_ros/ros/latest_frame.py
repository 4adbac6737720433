"""A one-slot mailbox: the producer always overwrites, the consumer always gets the newest."""
from __future__ import annotations

import threading


class LatestFrame:
    """Holds at most one item; put() replaces an unconsumed item and counts it as dropped."""

    def __init__(self):
        self._item = None
        self._condition = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.received = 0

    def put(self, item) -> None:
        with self._condition:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.received += 1
            self._condition.notify()

    def take(self, timeout_s: float | None = None):
        """The newest item (removing it), or None on timeout or after close()."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def successor(self) -> 'LatestFrame':
        """A new open, empty mailbox that continues this one's counts (this one stays as is)."""
        following = LatestFrame()
        following.received, following.dropped = self.received, self.dropped
        return following
