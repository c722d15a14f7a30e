"""Reconnect with exponential backoff: the one helper for cameras, serial ports and TCP links."""
from __future__ import annotations

import time


class Backoff:
    """``ready()``: may we try now? ``failed()``: schedule the next try (delay doubles up to ``limit``);
    ``reset()`` after a success."""

    def __init__(self, first: float = 0.2, limit: float = 5.0):
        self.first, self.limit = first, limit
        self.delay, self.next_try, self.failures = first, 0.0, 0

    def ready(self) -> bool:
        return time.monotonic() >= self.next_try

    def failed(self) -> float:
        """Record a failure; returns the seconds until the next try."""
        delay = self.delay
        self.next_try = time.monotonic() + delay
        self.delay = min(self.limit, self.delay * 2)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.delay, self.next_try = self.first, 0.0
