"""MJPEG over HTTP: any browser, VLC, ffmpeg or cv2.VideoCapture(url) can watch.

    /             a small page showing the stream
    /stream       multipart/x-mixed-replace JPEG stream
    /snapshot.jpg the latest frame
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..codec import encode
from .base import Sink

BOUNDARY = "edgesrframe"
PAGE = b"""<!doctype html><html><head><title>edgesr</title></head>
<body style="margin:0;background:#111;color:#ddd;font-family:sans-serif">
<p style="margin:6px">edgesr live stream &middot; <a style="color:#8cf" href="/snapshot.jpg">snapshot</a></p>
<img src="/stream" style="max-width:100%" alt="stream"></body></html>"""


def reply(handler: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes) -> None:
    """A complete, uncached HTTP response."""
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)


class MJPEGSink(Sink):
    def __init__(self, url, host, port, **kw):
        super().__init__(url, **kw)
        self.addr = (host, port)
        self.jpeg, self.count_frames = None, 0
        self.cond = threading.Condition()
        self.stats.update(clients=0)

    def open(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/":
                    return self._reply(200, "text/html; charset=utf-8", PAGE)
                if path == "/snapshot.jpg":
                    with sink.cond:
                        sink.cond.wait_for(lambda: sink.jpeg is not None or sink.stop.is_set(), timeout=5)
                        jpeg = sink.jpeg
                    if jpeg is None:
                        return self._reply(503, "text/plain", b"no frame yet\n")
                    return self._reply(200, "image/jpeg", jpeg)
                if path == "/stream":
                    return self._stream()
                self._reply(404, "text/plain", b"not found\n")

            def _reply(self, code, ctype, body):
                reply(self, code, ctype, body)

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
                            jpeg, seen = sink.jpeg, sink.count_frames
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                except OSError:
                    pass
                finally:
                    sink.stats["clients"] -= 1

        self.server = ThreadingHTTPServer(self.addr, Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                         name=f"http {self.addr}").start()

    def send(self, f) -> bool:
        jpeg = encode(self.image_of(f), "jpeg", self.quality)
        with self.cond:
            self.jpeg = jpeg
            self.count_frames += 1
            self.cond.notify_all()
        self.stats["bytes_sent"] += len(jpeg)
        return True

    def close(self, timeout: float = 1.5) -> None:
        super().close(timeout)
        with self.cond:
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
