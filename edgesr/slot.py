"""Single-slot, latest-frame-wins hand-off between threads: a slow consumer drops frames, never grows memory."""
from __future__ import annotations

import threading


class Slot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        """The newest item, or None on timeout/close."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class Queue(Slot):
    """Every item in order up to ``maxlen`` waiting (a recording wants them all); past that the oldest is dropped and
    counted, so memory stays bounded even when the consumer stops."""

    def __init__(self, maxlen: int = 64) -> None:
        super().__init__()
        from collections import deque

        self._items: deque = deque()
        self.maxlen = maxlen

    def put(self, item) -> None:
        with self._cond:
            if len(self._items) >= self.maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None


def consume(slot: Slot, handle, stop: threading.Event | None = None, timeout: float = 0.2) -> None:
    """Call ``handle(item)`` with each newest item until the slot is closed, ``stop`` is set, or ``handle``
    returns False (the consumer thread of every sink, client and output)."""
    while stop is None or not stop.is_set():
        item = slot.get(timeout)
        if item is None:
            if slot.closed:
                return
            continue
        if handle(item) is False:
            return
