"""Serial radio links (pyserial): COBS-framed packets, paced to the link budget, reopened with backoff."""
from __future__ import annotations

import time

from ..backoff import Backoff
from ..framing import StreamDeframer, frame_bytes
from .base import PacketSink, log


class _Port:
    """A serial port (or pyserial URL) opened on demand and reopened with backoff after a failure."""

    def __init__(self, dev: str, baud: int, timeout: float):
        self.dev, self.baud, self.timeout = dev, baud, timeout
        self.port, self.backoff, self.last_error = None, Backoff(0.2, 5.0), None

    def get(self):
        """The open port, or None while it cannot be opened (``last_error`` says why)."""
        import serial

        if self.port is None and self.backoff.ready():
            try:
                self.port = serial.serial_for_url(self.dev, baudrate=self.baud, timeout=self.timeout,
                                                  write_timeout=2.0)
                self.backoff.reset()
                self.last_error = None
            except (serial.SerialException, OSError) as e:
                first = self.last_error is None
                self.last_error = f"cannot open {self.dev} ({e})"
                self.backoff.failed()
                if first:
                    log.warning("serial %s; retrying every <= %.1f s", self.last_error, self.backoff.limit)
        return self.port

    def lost(self) -> None:
        if self.port is not None:
            self.port.close()
        self.port = None

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.flush()
            except Exception:  # noqa: BLE001 -- pyserial raises several types on a dead port; closing anyway
                pass
            self.port.close()
            self.port = None


class SerialSink(PacketSink):
    def __init__(self, endpoint, **kw):
        kw.setdefault("mtu", 256)
        if not kw.get("bitrate"):
            kw["bitrate"] = endpoint.baud * 0.8  # 8N1 carries 8 of 10 bits; pace to the wire, not the buffer
        self.rs = endpoint.params.get("rs", 0)  # Reed-Solomon bytes per 255 inside each frame
        frame_bytes(b"", self.rs)  # a missing reedsolo is a config error now, not a send error later
        super().__init__(endpoint, overhead=(255 + self.rs) / 255, **kw)
        self.link = _Port(endpoint.host, endpoint.baud, 0.1)
        self.requests = StreamDeframer(max_len=256, rs=self.rs)  # robots' refresh requests (tiny) coming back
        self.stats.update(reconnects=0)

    def open(self) -> None:
        self.link.get()

    def send(self, f) -> bool:
        import serial

        port = self.link.get()
        if port is None:
            return False
        try:
            back = port.read(min(port.in_waiting, 4096)) if port.in_waiting else b""
        except (serial.SerialException, OSError):
            back = b""  # the write below finds out whether the link is lost
        for raw in self.requests.feed(back)[:64]:
            self.encoder.on_request(raw)
        for p in self.encoder.packets(f):
            data = frame_bytes(p, self.rs)
            if not self.pace(len(data)):
                return False
            try:
                port.write(data)
                self.count(p, len(data))
            except (serial.SerialException, OSError) as e:
                log.warning("%s: link lost (%s); reopening", self.url, e)
                self.link.lost()
                self.stats["reconnects"] += 1
                return False
        return True

    def close(self, timeout: float = 1.5) -> None:
        super().close(timeout)
        self.link.close()


class SerialReader:
    def __init__(self, endpoint):
        self.link = _Port(endpoint.host, endpoint.baud, 0.05)
        self.rs = endpoint.params.get("rs", 0)
        self.deframer = StreamDeframer(rs=self.rs)
        self.reconnects = 0

    @property
    def last_error(self) -> str | None:
        return self.link.last_error

    def read(self, timeout: float = 0.5) -> list[bytes]:
        import serial

        port = self.link.get()
        if port is None:
            time.sleep(min(timeout, 0.1))
            return []
        try:
            port.timeout = timeout
            data = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError, TypeError):  # TypeError: pyserial, a port close() just closed
            self.link.lost()
            self.reconnects += 1
            return []
        return self.deframer.feed(data) if data else []

    def send_back(self, raw: bytes) -> None:
        """A refresh request to the device (edgesr.protocol.encode_request), framed like the stream."""
        import serial

        if self.link.port is not None:
            try:
                self.link.port.write(frame_bytes(raw, self.rs))
            except (serial.SerialException, OSError):
                pass

    def close(self) -> None:
        self.link.close()
