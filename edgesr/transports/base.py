"""What every sink shares: a latest-frame-wins slot and a sender thread. Packet transports (udp, tcp, serial) get
their packets from a ``StreamEncoder`` (edgesr.encoder) and only move bytes; MJPEG sends whole JPEGs."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..encoder import StreamEncoder
from ..slot import Slot, consume

log = logging.getLogger("edgesr.transports")


@dataclass
class OutFrame:
    """What the pipeline hands to sinks: the upscaled frame (None if nobody needs it) and the LR frame."""
    seq: int
    timestamp_us: int
    lr: np.ndarray
    sr: np.ndarray | None
    scale: int
    captured_at: float  # time.monotonic() at capture, for latency


class Sink:
    """Base: ``submit()`` never blocks; a thread takes the newest frame and calls ``send(frame)``. ``needs_sr``:
    whether this sink wants the upscaled frame (the pipeline upscales only if some sink does)."""

    needs_sr = True

    def __init__(self, url):
        self.url = getattr(url, "url", url)  # an Endpoint, or a plain name for sinks outside transports/
        self.slot = Slot()
        self.stop = threading.Event()
        self.stats = {"frames_sent": 0, "packets_sent": 0, "bytes_sent": 0, "send_errors": 0, "latency_ms": 0.0}
        self.thread = threading.Thread(target=self._loop, name=f"sink {self.url}", daemon=True)

    def start(self) -> "Sink":
        if self.thread.is_alive():
            return self
        self.open()
        self.thread.start()
        return self

    def submit(self, frame: OutFrame) -> None:
        self.slot.put(frame)

    def state(self) -> dict:
        """Counters for /state and /metrics."""
        return {**self.stats, "drops": self.slot.dropped}

    def _loop(self) -> None:
        consume(self.slot, self._send_one, self.stop)

    def _send_one(self, f: OutFrame) -> None:
        try:
            if self.send(f):
                self.stats["frames_sent"] += 1
                self.stats["latency_ms"] = round(1000 * (time.monotonic() - f.captured_at), 2)
        except Exception as e:  # noqa: BLE001 -- a sink must never take the daemon down; it reconnects or drops
            self.stats["send_errors"] += 1
            log.warning("%s: send failed: %s", self.url, e)
            time.sleep(0.2)

    def count(self, packet: bytes, nbytes: int | None = None) -> None:
        self.stats["packets_sent"] += 1
        self.stats["bytes_sent"] += len(packet) if nbytes is None else nbytes

    # subclasses
    def open(self) -> None:
        pass

    def send(self, f: OutFrame) -> bool:
        raise NotImplementedError

    def close(self, timeout: float = 1.5) -> None:
        self.stop.set()
        self.slot.close()
        if self.thread.is_alive():
            self.thread.join(timeout)


class PacketSink(Sink):
    """A sink whose frames become protocol packets (``encoder``: the options of ``StreamEncoder``)."""

    def __init__(self, url, **encoder_opts):
        super().__init__(url)
        self.encoder = StreamEncoder(**encoder_opts)

    @property
    def needs_sr(self) -> bool:  # type: ignore[override]
        return self.encoder.needs_sr

    def state(self) -> dict:
        return {**super().state(), **self.encoder.state()}

    def pace(self, nbytes: int) -> bool:
        """Wait until the link budget allows ``nbytes`` more; False when the sink is stopping."""
        rate = self.encoder.rate
        return rate.wait(nbytes, stop=self.stop) if rate else not self.stop.is_set()
