"""TCP: the device is the server; each client gets COBS-framed packets of whole frames. A client that cannot
keep up skips frames (its own latest-frame-wins slot); a dead client is dropped without touching the others."""
from __future__ import annotations

import socket
import threading
import time

from ..backoff import Backoff
from ..errors import listen_error
from ..framing import StreamDeframer, frame_bytes
from ..slot import Slot, consume
from .base import PacketSink, log


class _Client:
    def __init__(self, conn: socket.socket, addr, sink: "TCPSink"):
        self.conn, self.addr, self.sink = conn, addr, sink
        self.slot = Slot()
        self.busy = threading.Lock()
        conn.settimeout(5.0)
        self.thread = threading.Thread(target=self._loop, name=f"tcp client {addr}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        consume(self.slot, self._send, timeout=0.5)
        self.sink.drop(self)

    def _send(self, data: bytes) -> bool:
        with self.busy:  # a frame in flight is finished even during shutdown
            try:
                self.conn.sendall(data)
                self.sink.stats["bytes_sent"] += len(data)
                return True
            except OSError:
                return False

    def close(self, timeout: float) -> None:
        self.slot.close()
        self.thread.join(timeout)
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class TCPSink(PacketSink):
    def __init__(self, endpoint, **kw):
        super().__init__(endpoint, **kw)
        self.addr = (endpoint.host, endpoint.port)
        self.clients: list[_Client] = []
        self.lock = threading.Lock()
        self.stats.update(clients=0, client_drops=0)

    def open(self) -> None:
        try:
            self.server = socket.create_server(self.addr, reuse_port=False, backlog=64)
        except OSError as e:
            raise listen_error(self.url, self.addr[0], self.addr[1], e) from None
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, name=f"tcp accept {self.addr}", daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, addr = self.server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.clients.append(_Client(conn, addr, self))
                self.stats["clients"] = len(self.clients)
            self.encoder.key_next()  # H.264: the new client decodes from the next unit
            log.info("%s: client %s connected", self.url, addr)

    def drop(self, client: _Client) -> None:
        with self.lock:
            if client in self.clients:
                self.clients.remove(client)
                self.stats["client_drops"] += 1
                self.stats["clients"] = len(self.clients)

    def send(self, f) -> bool:
        with self.lock:
            if not self.clients:
                return False
        pk = self.encoder.packets(f)
        with self.lock:  # after encoding: a client that connected meanwhile asked for this unit to be an IDR
            clients = list(self.clients)
        data = b"".join(frame_bytes(p) for p in pk)
        if not self.pace(len(data)):
            return False
        self.stats["packets_sent"] += len(pk)
        for c in clients:
            c.slot.put(data)
        return True

    def close(self, timeout: float = 1.5) -> None:
        super().close(timeout)
        self.acceptor.join(1.0)  # a thread still inside accept() keeps the port listening
        self.server.close()
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            c.close(timeout)


class TCPReader:
    """Connects to a device's tcp:// sink; reconnects with exponential backoff (0.2 s .. 5 s)."""

    def __init__(self, endpoint):
        self.addr = (endpoint.host, endpoint.port)
        self.sock = None
        self.deframer = StreamDeframer()
        self.backoff = Backoff(0.2, 5.0)
        self.reconnects = 0
        self.last_error = None  # why the last connection attempt failed (reported when no frame ever came)

    def _connect(self) -> bool:
        if not self.backoff.ready():
            return False
        try:
            self.sock = socket.create_connection(self.addr, timeout=2.0)
            self.backoff.reset()
            self.deframer = StreamDeframer()
            self.last_error = None
            return True
        except OSError as e:
            self.last_error = f"cannot connect to {self.addr[0]}:{self.addr[1]} ({e.strerror or e})"
            self.backoff.failed()
            return False

    def read(self, timeout: float = 0.5) -> list[bytes]:
        if self.sock is None and not self._connect():
            time.sleep(min(timeout, 0.1))
            return []
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (TimeoutError, socket.timeout):
            return []
        except OSError:
            data = b""
        if not data:  # server went away: reconnect later
            self.sock.close()
            self.sock = None
            self.reconnects += 1
            return []
        return self.deframer.feed(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
