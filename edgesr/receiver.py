"""Robot side: ``for frame in Receiver(url, key=..., upscale=True): frame.image, frame.seq, ...``.

Real time by construction: a thread drains the transport continuously into the depacketizer (edgesr.depacketizer)
and puts each complete frame into a latest-frame slot; the consumer (``frames()``) takes the newest, and SR at the
robot runs on that one only. A consumer slower than the stream skips frames (``skipped``, counted), it never reads
a backlog, and the link's loss estimate is not fed by this machine's own drops.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from .assembly import Frame, Limits
from .depacketizer import Depacketizer
from .errors import EdgeSRError, ProtocolError
from .slot import Queue, Slot
from .transports import open_reader, parse_url

log = logging.getLogger("edgesr.receiver")


class Receiver:
    """Packets from udp/tcp/serial (or JPEGs from an http MJPEG stream) -> frames, optionally upscaled here
    (SR at receiver) with ``model`` or the shipped default of the frame's scale. ``latest_only=False`` keeps every
    frame (a recording), up to 64 waiting."""

    def __init__(self, url: str, key: bytes | None = None, upscale: bool = True, model: str | None = None,
                 backend: str = "auto", threads: int | None = None, max_age: float = 0.5, latest_only: bool = True,
                 limits: Limits | None = None, fec_wait: float = 5.0, feedback: bool = True, dtype: str = "auto"):
        self.url, self.key, self.upscale, self.model = url, key, upscale, model
        self.backend, self.threads, self.max_age, self.dtype = backend, threads, max_age, dtype
        # feedback: where the link carries bytes back (udp, serial), ask the device for an IDR when an H.264 unit is
        # lost for good (the picture would show the error until the refresh sweep heals it)
        self.feedback = feedback
        self.endpoint = parse_url(url)
        self.scheme = self.endpoint.scheme
        self.limits = limits or Limits()
        self.depacketizer = Depacketizer(key, self.limits, fec_wait)
        self.assembler, self.recovery = self.depacketizer.assembler, self.depacketizer.recovery
        self.reader = None if self.scheme == "http" else open_reader(self.endpoint)
        self.ready: Slot = Slot() if latest_only else Queue(64)  # complete frames, newest wins (or all, bounded)
        self.engines: dict = {}  # (scale, codec) -> Engine
        self.counts = {"frames": 0, "upscaled": 0, "upscale_errors": 0, "refresh_requests": 0}
        self.latencies: list[float] = []
        self.outputs: list = []  # edgesr.outputs: ROS 2, Foxglove, MCAP (each with its own slot and thread)
        self._closed = False
        self._pump: threading.Thread | None = None
        self.error: Exception | None = None  # what ended the pump early (the MJPEG stream could not be opened)

    @property
    def stats(self) -> dict:
        """Counters: the link's packets (depacketizer), frames delivered, and what this machine dropped: frames
        superseded before the consumer took them (``skipped``) and datagrams the kernel dropped (``local_drops``)."""
        return {**self.depacketizer.stats, **self.counts, "skipped": self.ready.dropped,
                "local_drops": getattr(self.reader, "kernel_drops", 0)}

    def attach(self, output) -> "Receiver":
        """Republish every frame to ``output`` (an ``edgesr.outputs.Output``, started here)."""
        self.outputs.append(output.start())
        return self

    def _engine(self, scale: int, codec: str = ""):
        """The model for x``scale`` frames: ``model``, or the shipped default (for H.264 LR: the one trained on
        H.264-coded LR, +0.3 dB in the video study)."""
        from .engine import Engine
        from .modelcard import resolve_model

        if (scale, codec) not in self.engines:  # resolved once per kind of frame, not per frame
            path = resolve_model(self.model, scale, codec)
            same = next((e for e in self.engines.values() if e.path == path), None)  # one engine per model file
            self.engines[(scale, codec)] = same or Engine(str(path), backend=self.backend, threads=self.threads,
                                                         scale=scale, dtype=self.dtype)
        eng = self.engines[(scale, codec)]
        if eng.scale != scale:
            raise EdgeSRError(f"the model is x{eng.scale}, the frame asks for x{scale}")
        return eng

    def finish(self, f: Frame) -> Frame:
        """SR at the robot (an LR frame and ``upscale``), the outputs, the counters: what every delivered frame gets."""
        if f.lr and f.scale > 1 and self.upscale:
            try:
                f.image = self._engine(f.scale, f.codec).upscale(f.image)
                f.lr = False
                self.counts["upscaled"] += 1
            except EdgeSRError as e:  # e.g. no model for this scale: deliver the LR frame, say so once
                if not self.counts["upscale_errors"]:
                    log.warning("%s: cannot upscale x%d frames (%s); delivering them as received", self.url,
                                f.scale, e)
                self.counts["upscale_errors"] += 1
        self.counts["frames"] += 1
        for o in self.outputs:
            o.submit(f)
        self.latencies.append(time.time() - f.timestamp)
        del self.latencies[:-1000]
        return f

    def start(self) -> "Receiver":
        """Start draining the link (``frames()`` does it on first use)."""
        if self._pump is None:
            target = self._drain_mjpeg if self.scheme == "http" else self._drain
            self._pump = threading.Thread(target=target, name=f"receiver {self.url}", daemon=True)
            self._pump.start()
        return self

    def frames(self, timeout: float | None = None):
        """Yield the newest frames; stop after ``timeout`` seconds without one (None: forever), or at close()."""
        self.start()
        last = time.monotonic()
        while not self._closed:
            f = self.ready.get(0.2)
            if f is None:
                if self.ready.closed and self.error is not None:
                    raise self.error
                if self.ready.closed or self._closed or (timeout is not None and time.monotonic() - last > timeout):
                    return
                continue
            last = time.monotonic()
            yield self.finish(f)

    __iter__ = frames

    def _drain(self) -> None:
        """The pump: packets -> depacketizer -> the ready slot, refresh requests back, until close()."""
        dep, reader = self.depacketizer, self.reader
        assert reader is not None  # packet links have one (http is _drain_mjpeg)
        try:
            while not self._closed:
                raws = reader.read(0.2)
                now = time.monotonic()
                got = []
                for i, raw in enumerate(raws):
                    got += dep.feed(raw, now)
                    if dep.valid and hasattr(reader, "trust"):
                        reader.trust(i)  # requests go back to where valid packets come from
                got += dep.expire(now, self.max_age)
                if self.feedback and hasattr(reader, "send_back"):
                    for req in dep.requests(now):
                        reader.send_back(req)
                        self.counts["refresh_requests"] += 1
                for f in got:
                    self.ready.put(f)
        except Exception as e:  # noqa: BLE001 -- a bug must end frames() with its error, not hang it
            if not self._closed:  # a transport closed under a read by close() is the normal end
                log.error("%s: receiving stopped: %s", self.url, e)
                self.error = e
        finally:
            self.ready.close()

    def _drain_mjpeg(self) -> None:
        import urllib.request

        from .codec import decode, image_size
        from .transports.http_mjpeg import MultipartParser

        e = self.endpoint
        url = f"http://{e.host}:{e.port}/stream"
        try:
            resp = urllib.request.urlopen(url, timeout=10)
        except OSError as err:
            self.error = ProtocolError(f"{url}: cannot open the MJPEG stream ({getattr(err, 'reason', err)})")
            self.ready.close()
            return
        self._resp = resp
        parser, n = MultipartParser(), 0
        try:
            with resp:
                while not self._closed:
                    try:
                        data = resp.read1(1 << 16)
                    except (OSError, ValueError):  # the server stopped answering, or close() closed it
                        return
                    if not data:
                        return
                    self.depacketizer.stats["bytes"] += len(data)
                    for jpeg in parser.feed(data):
                        self.depacketizer.stats["packets"] += 1
                        w, h = image_size(jpeg) or (0, 0)
                        if not 0 < w * h <= self.limits.max_frame_pixels or max(w, h) > self.limits.max_side:
                            self.depacketizer.stats["bad_packets"] += 1  # no header, or over the limits: not decoded
                            continue
                        try:
                            img = decode(jpeg)
                        except ProtocolError:
                            self.depacketizer.stats["bad_packets"] += 1
                            continue
                        n += 1
                        self.ready.put(Frame(np.ascontiguousarray(img), n, time.time(),
                                             received_at=time.monotonic(), codec="jpeg"))
        except ProtocolError as err:  # a part without a sane Content-Length: the stream is not MJPEG
            self.error = err
        finally:
            self.ready.close()

    def why_nothing(self) -> str | None:
        """The link's own reason when no frame arrived (port missing, connection refused), if it knows one."""
        return getattr(self.reader, "last_error", None)

    def summary(self) -> dict:
        a = self.assembler.stats
        lat = sorted(self.latencies)
        return {**self.stats, **{f"assembler_{k}": v for k, v in a.items()},
                **{f"fec_{k}": v for k, v in self.recovery.stats.items() if v},
                **({"outputs": {o.url: o.snapshot() for o in self.outputs}} if self.outputs else {}),
                "latency_ms_median": round(1000 * lat[len(lat) // 2], 1) if lat else None,
                **self.depacketizer.loss(self.stats["local_drops"])}

    def stop(self) -> None:
        """Make ``frames()`` return within 0.2 s (safe from a signal handler); ``close()`` then releases all."""
        self._closed = True

    def close(self) -> None:
        """Stop receiving; every output publishes what it holds and closes (an MCAP file is finished)."""
        self._closed = True
        if self.reader is not None:
            self.reader.close()
        resp = getattr(self, "_resp", None)
        if resp is not None:
            try:
                resp.close()
            except Exception:  # noqa: BLE001 -- closing a response another thread reads may raise; it is closed
                pass
        if self._pump is not None:
            self._pump.join(2.0)
        self.ready.close()
        for o in self.outputs:
            o.close()
