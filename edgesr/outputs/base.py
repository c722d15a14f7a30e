"""The robot-side output machinery: a latest-frame-wins slot and a publishing thread per output, URL parsing,
and the one-line message for a missing `robot` extra."""
from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qs, urlparse

from ..errors import ConfigError, EdgeSRError
from ..slot import Slot, consume

log = logging.getLogger("edgesr.outputs")
SCHEMES = ("ros2", "foxglove", "mcap")


class Output:
    """Base: ``submit(frame)`` never blocks; a thread publishes the newest frame with ``publish(frame)``."""

    def __init__(self, url: str):
        self.url = url
        self.slot = Slot()
        self.stats = {"published": 0, "errors": 0}
        self.thread = threading.Thread(target=self._loop, name=f"output {url}", daemon=True)

    def start(self) -> "Output":
        self.open()
        self.thread.start()
        return self

    def submit(self, frame) -> None:
        self.slot.put(frame)

    def _loop(self) -> None:
        consume(self.slot, self._publish_one)

    def _publish_one(self, f) -> None:
        try:
            self.publish(f)
            self.stats["published"] += 1
        except (EdgeSRError, OSError, RuntimeError, ValueError) as e:  # an output never stops reception
            if not self.stats["errors"]:
                log.warning("%s: publishing failed (%s); counting further failures", self.url, e)
            self.stats["errors"] += 1

    def snapshot(self) -> dict:
        return {**self.stats, "drops": self.slot.dropped}

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is in the slot, then release the output (undeclare, stop the server, finish the file)."""
        self.slot.close()
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.shutdown()

    # subclasses
    def open(self) -> None:
        pass

    def publish(self, frame) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


def parse(url: str):
    """(scheme, netloc, path, {key: value}) of an output URL, or ConfigError."""
    u = urlparse(url)
    if u.scheme not in SCHEMES:
        raise ConfigError(f"{url}: unsupported output {u.scheme!r} (ros2://, foxglove://, mcap://)")
    return u.scheme, u.netloc, u.path, {k: v[-1] for k, v in parse_qs(u.query).items()}
