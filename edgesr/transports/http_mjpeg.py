"""MJPEG over HTTP: any browser, VLC, ffmpeg or cv2.VideoCapture(url) can watch.

    /             a small page showing the stream
    /stream       multipart/x-mixed-replace JPEG stream
    /snapshot.jpg the latest frame

Robot side: ``MultipartParser`` turns the stream's bytes into JPEGs (pure, no I/O, bounded part size).
"""
from __future__ import annotations

import threading

from ..codec import encode
from ..errors import ProtocolError
from ..httpserver import Handler, Server, reply
from .base import Sink

BOUNDARY = "edgesrframe"
MAX_PART = 16 << 20  # bytes: a part that claims more is refused (hostile or broken server)
PAGE = b"""<!doctype html><html><head><title>edgesr</title></head>
<body style="margin:0;background:#111;color:#ddd;font-family:sans-serif">
<p style="margin:6px">edgesr live stream &middot; <a style="color:#8cf" href="/snapshot.jpg">snapshot</a></p>
<img src="/stream" style="max-width:100%" alt="stream"></body></html>"""


class MJPEGSink(Sink):
    def __init__(self, endpoint, max_clients: int = 64, client_timeout: float = 10.0, topology: str = "source",
                 quality: int = 80):
        super().__init__(endpoint)
        self.needs_sr, self.quality = topology == "source", quality  # whole JPEGs: the SR frame, or the LR one
        self.addr = (endpoint.host, endpoint.port)
        self.max_clients, self.client_timeout = max_clients, client_timeout
        self.jpeg: bytes | None = None
        self.count_frames = 0
        self.cond = threading.Condition()
        self.stats.update(clients=0, client_frames_skipped=0, clients_refused=0, client_errors=0)

    def open(self) -> None:
        sink = self

        class MJPEGHandler(Handler):
            timeout = sink.client_timeout

            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/":
                    return reply(self, 200, "text/html; charset=utf-8", PAGE)
                if path == "/snapshot.jpg":
                    with sink.cond:
                        sink.cond.wait_for(lambda: sink.jpeg is not None or sink.stop.is_set(), timeout=5)
                        jpeg = sink.jpeg
                    if jpeg is None:
                        return reply(self, 503, "text/plain", b"no frame yet\n")
                    return reply(self, 200, "image/jpeg", jpeg)
                if path == "/stream":
                    return self._stream()
                reply(self, 404, "text/plain", b"not found\n")

            def _stream(self):
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = -1
                sink.stats["clients"] += 1
                try:
                    while not sink.stop.is_set():
                        with sink.cond:
                            sink.cond.wait_for(lambda: sink.count_frames != seen or sink.stop.is_set(), timeout=1)
                            if sink.count_frames == seen:
                                continue
                            if seen >= 0:  # frames this client missed while its previous one was being written
                                sink.stats["client_frames_skipped"] += sink.count_frames - seen - 1
                            jpeg, seen = sink.jpeg, sink.count_frames
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                finally:  # a client dropped mid-stream missed every frame since its last one
                    sink.stats["clients"] -= 1
                    sink.stats["client_frames_skipped"] += max(0, sink.count_frames - max(seen, 0) - 1)

        self.server = Server(self.addr, MJPEGHandler, f"http sink {self.url}", self.max_clients).start()
        self.port = self.server.port

    def send(self, f) -> bool:
        jpeg = encode(f.sr if self.needs_sr and f.sr is not None else f.lr, "jpeg", self.quality)
        with self.cond:
            self.jpeg = jpeg
            self.count_frames += 1
            self.cond.notify_all()
        self.stats["bytes_sent"] += len(jpeg)
        self.stats.update(self.server.stats)
        return True

    def close(self, timeout: float = 1.5) -> None:
        super().close(timeout)
        with self.cond:
            self.cond.notify_all()
        self.server.stop()


class MultipartParser:
    """Bytes of a multipart/x-mixed-replace stream in, JPEG payloads out (each part needs Content-Length)."""

    def __init__(self, max_part: int = MAX_PART):
        self.buf, self.max_part = bytearray(), max_part
        self.need: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        while True:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > 64 << 10:
                        raise ProtocolError("MJPEG part headers longer than 64 KiB")
                    return out
                length = None
                for line in bytes(self.buf[:end]).split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        try:
                            length = int(value)
                        except ValueError:
                            raise ProtocolError(f"bad Content-Length {value[:20]!r}") from None
                if length is None or not 0 < length <= self.max_part:
                    raise ProtocolError(f"MJPEG part without a Content-Length of 1..{self.max_part} bytes")
                del self.buf[:end + 4]
                self.need = length
            if len(self.buf) < self.need:
                return out
            out.append(bytes(self.buf[:self.need]))
            del self.buf[:self.need]
            self.need = None
