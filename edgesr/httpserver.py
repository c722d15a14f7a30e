"""The small threaded HTTP server that the MJPEG sink and the health endpoint share: bounded clients, client
timeouts, a real listen backlog, one log line per client error, and a clear error when the port is taken."""
from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import listen_error

log = logging.getLogger("edgesr.http")


def reply(handler: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes) -> None:
    """A complete, uncached HTTP response."""
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)


class Handler(BaseHTTPRequestHandler):
    """Base request handler: quiet access log, a socket timeout so a stalled client cannot hold a thread."""

    timeout = 10.0                       # seconds without progress on a client socket before it is dropped
    protocol_version = "HTTP/1.0"
    send_buffer = 256 << 10              # bytes the kernel queues for one client: a stalled one is found in ~1 s

    def setup(self):
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        super().setup()

    def log_message(self, *a):
        pass

    def log_error(self, fmt, *args):
        """The standard library's one-line client errors (a client that timed out): counted and logged once."""
        self.server.client_error(self.client_address, fmt % args if args else fmt)


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most ``max_clients`` concurrent requests (more are answered 503 and counted)
    and a backlog of 128 pending connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, handler, name: str, max_clients: int = 64):
        try:
            super().__init__(addr, handler)
        except OSError as e:
            raise listen_error(name, addr[0], addr[1], e) from None
        self.name, self.slots = name, threading.BoundedSemaphore(max_clients)
        self.stats = {"clients_refused": 0, "client_errors": 0}

    def process_request(self, request, client_address):
        if not self.slots.acquire(timeout=1.0):  # a free slot within a second, else 503
            self.stats["clients_refused"] += 1
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        """One line per client error (a viewer that closed its tab), never a traceback."""
        e = sys.exc_info()[1]
        self.client_error(client_address, f"{type(e).__name__}: {e}" if e else "error")

    def client_error(self, client_address, what: str) -> None:
        self.stats["client_errors"] += 1
        host, port = (tuple(client_address) + ("?", "?"))[:2]
        log.info("%s: client %s:%s dropped (%s)", self.name, host, port, what)

    def start(self) -> "Server":
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                         name=self.name).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def port(self) -> int:
        return self.server_address[1]


def listen_addr(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)

