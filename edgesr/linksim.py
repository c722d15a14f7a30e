"""Loopback links for tests and link benchmarks: a simulated serial radio between two pseudo-terminals, and a
free local port.

    link = PtyLink(bitrate=57600, corrupt=0.01, loss=0.05).start()
    edgesr serve --sink serial://{link.tx}   ...   edgesr receive serial://{link.rx}

A relay thread copies bytes from ``tx``'s master to ``rx``'s master at ``bitrate`` (8N1: 10 bits a byte),
flips each byte with probability ``corrupt`` and drops whole 0x00-delimited frames with probability ``loss``.
What the robot writes to ``rx`` (refresh requests: the back channel) reaches ``tx`` unpaced, with the same frame
loss (``stats["back_frames"]``, ``stats["back_dropped"]``).
``arrivals`` records (time, nbytes) of what entered the link, to check a sender's pacing.
"""
from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
import tty


def free_port(kind=socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 that is free now (UDP by default; pass socket.SOCK_STREAM for TCP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PtyLink:
    def __init__(self, bitrate: float = 57600, corrupt: float = 0.0, loss: float = 0.0, seed: int = 0,
                 keep_arrivals: bool = True):
        self.bitrate, self.corrupt, self.loss, self.keep_arrivals = bitrate, corrupt, loss, keep_arrivals
        self.rng = random.Random(seed)
        self.tx_master, tx_slave = os.openpty()
        self.rx_master, rx_slave = os.openpty()
        for fd in (tx_slave, rx_slave, self.tx_master, self.rx_master):
            tty.setraw(fd)
        self.tx, self.rx = os.ttyname(tx_slave), os.ttyname(rx_slave)
        self._slaves = (tx_slave, rx_slave)  # kept open so the ptys survive reopen by the endpoints
        self.arrivals: list[tuple[float, int]] = []
        self.stats = {"bytes_in": 0, "bytes_out": 0, "corrupted": 0, "frames_dropped": 0, "back_frames": 0,
                      "back_dropped": 0}
        self.stop = threading.Event()
        self.cut = threading.Event()  # set: the link is down (bytes vanish)
        self.thread = threading.Thread(target=self._relay, name="ptylink", daemon=True)

    def start(self) -> "PtyLink":
        self.thread.start()
        return self

    def _relay(self) -> None:
        byte_time = 10.0 / self.bitrate if self.bitrate else 0.0
        pending, dropping, t_free, back = bytearray(), False, time.monotonic(), bytearray()
        while not self.stop.is_set():
            r, _, _ = select.select([self.tx_master, self.rx_master], [], [], 0.02)
            if self.rx_master in r:
                self._back(back)
            if self.tx_master in r:
                try:
                    data = os.read(self.tx_master, 4096)
                except OSError:
                    data = b""
                if data:
                    if self.keep_arrivals:  # tests check pacing; a long rehearsal keeps no history
                        self.arrivals.append((time.monotonic(), len(data)))
                    self.stats["bytes_in"] += len(data)
                    for b in data:
                        if not self.cut.is_set():
                            if dropping:
                                pass
                            elif self.corrupt and self.rng.random() < self.corrupt:
                                pending.append(b ^ (1 << self.rng.randrange(8)))
                                self.stats["corrupted"] += 1
                            else:
                                pending.append(b)
                        if b == 0:  # frame boundary: decide the fate of the next frame
                            dropping = bool(self.loss and self.rng.random() < self.loss)
                            self.stats["frames_dropped"] += dropping
            if pending:
                now = time.monotonic()
                n = len(pending) if not byte_time else min(len(pending), max(0, int((now - t_free) / byte_time)))
                if n:
                    try:
                        os.write(self.rx_master, bytes(pending[:n]))
                    except OSError:
                        pass
                    del pending[:n]
                    self.stats["bytes_out"] += n
                    t_free = max(t_free + n * byte_time, now - 0.05) if byte_time else now
            else:
                t_free = max(t_free, time.monotonic() - 0.05)

    def _back(self, buf: bytearray) -> None:
        """Robot -> device: whole 0x00-delimited frames, each lost with probability ``loss``."""
        try:
            buf += os.read(self.rx_master, 4096)
        except OSError:
            return
        *frames, rest = bytes(buf).split(b"\x00")
        buf[:] = rest[-4096:]
        for fr in frames:
            self.stats["back_frames"] += 1
            if self.cut.is_set() or (self.loss and self.rng.random() < self.loss):
                self.stats["back_dropped"] += 1
                continue
            try:
                os.write(self.tx_master, fr + b"\x00")
            except OSError:
                pass

    def max_window_bytes(self, window: float = 2.0) -> int:
        """Most bytes that entered the link in any ``window`` seconds."""
        best, j, total = 0, 0, 0
        for i, (t, n) in enumerate(self.arrivals):
            total += n
            while self.arrivals[j][0] < t - window:
                total -= self.arrivals[j][1]
                j += 1
            best = max(best, total)
        return best

    def close(self) -> None:
        self.stop.set()
        self.thread.join(1)
        for fd in (self.tx_master, self.rx_master, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass
