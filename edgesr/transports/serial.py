"""Serial radio links (pyserial): COBS-framed packets, paced to the link budget, reopened with backoff."""
from __future__ import annotations

import time

from ..protocol import StreamDeframer, frame_bytes
from .base import Sink, log


def _open(dev: str, baud: int, timeout: float):
    import serial

    return serial.serial_for_url(dev, baudrate=baud, timeout=timeout, write_timeout=2.0)


class SerialSink(Sink):
    def __init__(self, url, dev, baud: int = 57600, **kw):
        kw.setdefault("mtu", 256)
        if not kw.get("bitrate"):
            kw["bitrate"] = baud * 0.8  # 8N1 carries 8 of 10 bits; pace to the wire, not to the kernel buffer
        super().__init__(url, **kw)
        self.dev, self.baud = dev, baud
        self.port = None
        self.backoff, self.next_try = 0.2, 0.0
        self.stats.update(reconnects=0)

    def open(self) -> None:
        self._try_open()

    def _try_open(self) -> bool:
        import serial

        if time.monotonic() < self.next_try:
            return False
        try:
            self.port = _open(self.dev, self.baud, 0.1)
            self.backoff = 0.2
            return True
        except (serial.SerialException, OSError) as e:
            log.warning("%s: cannot open %s (%s); retrying in %.1f s", self.url, self.dev, e, self.backoff)
            self.next_try = time.monotonic() + self.backoff
            self.backoff = min(5.0, self.backoff * 2)
            return False

    def send(self, f) -> bool:
        import serial

        if self.port is None and not self._try_open():
            return False
        for p in self.packets(f):
            data = frame_bytes(p)
            if not self.pace(len(data)):
                return False
            try:
                self.port.write(data)
                self.count(p, len(data))
            except (serial.SerialException, OSError) as e:
                log.warning("%s: link lost (%s); reopening", self.url, e)
                self.port.close()
                self.port = None
                self.stats["reconnects"] += 1
                return False
        return True

    def close(self, timeout: float = 1.5) -> None:
        super().close(timeout)
        if self.port is not None:
            try:
                self.port.flush()
            except Exception:
                pass
            self.port.close()


class SerialReader:
    def __init__(self, dev: str, baud: int = 57600):
        self.dev, self.baud = dev, baud
        self.port = None
        self.deframer = StreamDeframer()
        self.backoff, self.next_try = 0.2, 0.0
        self.reconnects = 0

    def read(self, timeout: float = 0.5) -> list[bytes]:
        import serial

        if self.port is None:
            if time.monotonic() < self.next_try:
                time.sleep(min(timeout, 0.1))
                return []
            try:
                self.port = _open(self.dev, self.baud, 0.05)
                self.backoff = 0.2
            except (serial.SerialException, OSError):
                self.next_try = time.monotonic() + self.backoff
                self.backoff = min(5.0, self.backoff * 2)
                return []
        try:
            self.port.timeout = timeout
            data = self.port.read(max(1, self.port.in_waiting))
        except (serial.SerialException, OSError):
            self.port.close()
            self.port = None
            self.reconnects += 1
            return []
        return self.deframer.feed(data) if data else []

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
