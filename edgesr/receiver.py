"""Robot side: ``for frame in Receiver(url, key=..., upscale=True): frame.image, frame.seq, ...``."""
from __future__ import annotations

import logging
import time

import numpy as np

from .assembly import Frame, FrameAssembler, Limits
from .backchannel import encode_request
from .errors import EdgeSRError, ProtocolError
from .fec import Recovery, is_parity
from .protocol import AuthError, decode_packet
from .transports import open_reader, parse_url

log = logging.getLogger("edgesr.receiver")


class Receiver:
    """Packets from udp/tcp/serial (or JPEGs from an http MJPEG stream) -> frames, optionally upscaled here
    (SR at receiver) with ``model`` or the shipped default of the frame's scale."""

    def __init__(self, url: str, key: bytes | None = None, upscale: bool = True, model: str | None = None,
                 backend: str = "auto", threads: int | None = None, max_age: float = 0.5, latest_only: bool = True,
                 limits: Limits | None = None, fec_wait: float = 5.0, feedback: bool = True):
        self.url, self.key, self.upscale, self.model = url, key, upscale, model
        self.backend, self.threads, self.max_age = backend, threads, max_age
        self.latest_only = latest_only  # a robot wants the newest frame: skip superseded ones, never queue
        # feedback: where the link carries bytes back (udp, serial), ask the device for an IDR when an H.264 unit is
        # lost for good (the picture would show the error until the refresh sweep heals it)
        self.feedback = feedback
        self.endpoint = parse_url(url)
        self.scheme = self.endpoint.scheme
        self.reader = None if self.scheme == "http" else open_reader(self.endpoint)
        self.limits = limits or Limits()
        self.recovery = Recovery(max_bytes=self.limits.max_frame_bytes)  # parity packets (edgesr.fec), if sent
        # fec_wait: how long an H.264 unit with a lost packet waits for parity (its twin shows frames meanwhile);
        # 0: units decode as they come, concealing (a rebuilt packet of a frame already shown is then late)
        self.assembler = FrameAssembler(limits=self.limits, recovery=self.recovery if fec_wait > 0 else None,
                                        hold_s=fec_wait)
        self.engines: dict = {}  # (scale, codec) -> Engine
        self.stats = {"packets": 0, "bytes": 0, "bad_packets": 0, "auth_failures": 0, "frames": 0, "upscaled": 0,
                      "skipped": 0, "upscale_errors": 0, "refresh_requests": 0}
        self.latencies: list[float] = []
        self.outputs: list = []  # edgesr.outputs: ROS 2, Foxglove, MCAP (each with its own slot and thread)
        self._closed = False

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
                                                         scale=scale)
        eng = self.engines[(scale, codec)]
        if eng.scale != scale:
            raise EdgeSRError(f"the model is x{eng.scale}, the frame asks for x{scale}")
        return eng

    def _finish(self, f: Frame) -> Frame:
        if f.lr and f.scale > 1 and self.upscale:
            try:
                f.image = self._engine(f.scale, f.codec).upscale(f.image)
                f.lr = False
                self.stats["upscaled"] += 1
            except EdgeSRError as e:  # e.g. no model for this scale: deliver the LR frame, say so once
                if not self.stats["upscale_errors"]:
                    log.warning("%s: cannot upscale x%d frames (%s); delivering them as received", self.url,
                                f.scale, e)
                self.stats["upscale_errors"] += 1
        self.stats["frames"] += 1
        for o in self.outputs:
            o.submit(f)
        self.latencies.append(time.time() - f.timestamp)
        del self.latencies[:-1000]
        return f

    def frames(self, timeout: float | None = None):
        """Yield frames; stop after ``timeout`` seconds without one (None: forever)."""
        if self.scheme == "http":
            yield from self._mjpeg(timeout)
            return
        last = time.monotonic()
        while not self._closed:
            got = []
            for i, raw in enumerate(self.reader.read(0.2)):
                self.stats["packets"] += 1
                self.stats["bytes"] += len(raw)
                if is_parity(raw):
                    for data in self.recovery.parity(raw):
                        got += self._packet(data)
                    continue
                bad = self.stats["bad_packets"] + self.stats["auth_failures"]
                got += self._packet(raw)
                if bad == self.stats["bad_packets"] + self.stats["auth_failures"] and hasattr(self.reader, "trust"):
                    self.reader.trust(i)  # requests go back to where valid packets come from
            got += self.assembler.expire(time.monotonic(), self.max_age)
            if self.feedback and hasattr(self.reader, "send_back"):
                for stream, seq in self.assembler.broken.due(time.monotonic()):
                    self.reader.send_back(encode_request(stream, seq, self.key))
                    self.stats["refresh_requests"] += 1
            if self.latest_only and len(got) > 1:
                self.stats["skipped"] += len(got) - 1
                got = got[-1:]
            for f in got:
                last = time.monotonic()
                yield self._finish(f)
            if timeout is not None and time.monotonic() - last > timeout:
                return

    __iter__ = frames

    def _packet(self, raw: bytes) -> list[Frame]:
        try:
            p = decode_packet(raw, self.key)
        except AuthError:
            self.stats["auth_failures"] += 1
            return []
        except ProtocolError:
            self.stats["bad_packets"] += 1
            return []
        self.recovery.data(raw)
        frames = self.assembler.add(p, time.monotonic())
        if self.assembler.stats["no_decoder"] and not self.stats.get("no_h264"):  # H.264 arrives, and this
            log.warning("%s: %s", self.url, self.assembler.last_error)              # robot cannot decode it
            self.stats["no_h264"] = 1
        return frames

    def _mjpeg(self, timeout):
        import urllib.request

        from .codec import decode, image_size
        from .transports.http_mjpeg import MultipartParser

        e = self.endpoint
        url = f"http://{e.host}:{e.port}/stream"
        try:
            resp = urllib.request.urlopen(url, timeout=timeout or 10)
        except OSError as err:
            raise ProtocolError(f"{url}: cannot open the MJPEG stream ({getattr(err, 'reason', err)})") from None
        parser, n = MultipartParser(), 0
        with resp:
            while not self._closed:
                try:
                    data = resp.read1(1 << 16)
                except OSError:  # the server stopped answering for `timeout` seconds
                    return
                if not data:
                    return
                for jpeg in parser.feed(data):
                    w, h = image_size(jpeg) or (0, 0)
                    if not 0 < w * h <= self.limits.max_frame_pixels or max(w, h) > self.limits.max_side:
                        self.stats["bad_packets"] += 1  # no header, or over the limits: never decoded
                        continue
                    try:
                        img = decode(jpeg)
                    except ProtocolError:
                        self.stats["bad_packets"] += 1
                        continue
                    n += 1
                    yield self._finish(Frame(np.ascontiguousarray(img), n, time.time(), received_at=time.monotonic(),
                                             codec="jpeg"))

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
                **self._loss()}

    def _loss(self) -> dict:
        """Packet loss seen here (before FEC rebuilt any) and the sink ``fec`` it calls for (at the link bytes a
        frame that arrive)."""
        from .fec import parity_share

        a = self.assembler.stats
        expected = a["packets_expected"] + a["units_lost"]  # H.264 units lost whole: a packet each
        got = a["packets_received"] - self.recovery.stats.get("recovered", 0)
        if not expected:
            return {}
        loss = round(max(0.0, 1 - got / expected), 4)
        frame_bytes = self.stats["bytes"] / max(1, a["frames"])
        return {"packet_loss": loss, "suggested_fec": round(parity_share(loss, frame_bytes), 2)}

    def close(self) -> None:
        self._closed = True
        if self.reader is not None:
            self.reader.close()
        for o in self.outputs:
            o.close()
