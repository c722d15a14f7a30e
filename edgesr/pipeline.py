"""capture -> upscale -> sinks, each stage its own thread, joined by latest-frame-wins slots.

A slow stage or sink drops frames (counted) instead of growing memory. Upscaling runs only if some sink sends
SR-at-source frames; SR-at-receiver sinks get the LR frame. A failing source is reopened with backoff while the
rest keeps running; ``heartbeat`` moves only while frames flow (the watchdog and /healthz read it).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from .backoff import Backoff
from .errors import ConfigError
from .slot import Slot
from .sources import EndOfSource, Source, SourceError, fit_frame
from .transports.base import OutFrame

log = logging.getLogger("edgesr.pipeline")


@dataclass
class Captured:
    image: np.ndarray
    seq: int
    timestamp_us: int
    captured_at: float


class Pipeline:
    """``engine`` is any Upscaler (or None when every sink sends LR frames); ``scale`` is what LR frames are
    marked with for the robot (default: the engine's)."""

    def __init__(self, source: Source, engine, sinks: list, size: tuple[int, int] | None = None,
                 scale: int | None = None, fit: str = "letterbox"):
        """``size`` (w, h): frames of another size are fitted to it (``fit``: edgesr.sources.fit_frame); None: the
        source's own size."""
        self.source, self.engine, self.sinks, self.size, self.fit = source, engine, list(sinks), size, fit
        self.scale = scale or (engine.scale if engine is not None else 1)
        self.need_sr = any(s.needs_sr for s in self.sinks)
        if self.need_sr and engine is None:
            raise ConfigError("a sink wants SR-at-source frames but no model is loaded")
        if engine is not None and engine.scale != self.scale:
            raise ConfigError(f"the model is x{engine.scale}, the pipeline x{self.scale}")
        self.slot = Slot()
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.heartbeat = 0.0            # last frame through the engine (frames flow: /healthz)
        self.beats = {"capture": 0.0, "upscale": 0.0}  # last loop iteration of each thread (alive: watchdog)
        self.first_frame = threading.Event()
        self.source_ok = True
        self.stats = {"captured": 0, "upscaled": 0, "capture_drops": 0, "camera_reconnects": 0,
                      "engine_ms": 0.0, "fps": 0.0}
        if engine is not None:
            self.stats.update(engine.state())
        self.engine_hist: list[float] = []  # recent engine latencies (ms), bounded
        self.threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                        threading.Thread(target=self._upscale, name="upscale", daemon=True)]

    def start(self) -> "Pipeline":
        """Open every sink (a port in use raises ConfigError after closing the ones already open), then run."""
        started = []
        try:
            for s in self.sinks:
                s.start()
                started.append(s)
        except BaseException:
            for s in started:
                s.close(0.5)
            raise
        for t in self.threads:
            t.start()
        return self

    def _capture(self) -> None:
        seq, backoff = 0, Backoff(0.1, 2.0)
        while not self.stop_event.is_set():
            self.beats["capture"] = time.monotonic()
            try:
                img = self.source.read()
            except SourceError as e:
                if self.source_ok:
                    log.warning("source %s failed: %s; reconnecting", self.source.name, e)
                self.source_ok = False
                self.stats["camera_reconnects"] += 1
                self.stop_event.wait(backoff.failed())
                continue
            except EndOfSource:
                log.info("source %s ended", self.source.name)
                break
            if not self.source_ok:
                log.info("source %s is back", self.source.name)
            self.source_ok = True
            backoff.reset()
            if seq == 0:
                self._describe(img)
            if self.size and (img.shape[1], img.shape[0]) != tuple(self.size):
                img = fit_frame(img, (self.size[0], self.size[1]), self.fit)
            self.slot.put(Captured(img, seq, time.time_ns() // 1000, time.monotonic()))
            self.stats["captured"] += 1
            seq = (seq + 1) & 0xFFFFFFFF
        self.slot.close()

    def _describe(self, img: np.ndarray) -> None:
        """Say once what the source really gives, and what is done to it."""
        h, w = img.shape[:2]
        rate = f" at {self.source.rate:g} fps" if self.source.rate else ""
        todo = ""
        if self.size and (w, h) != tuple(self.size):
            W, H = self.size
            todo = f", {self.fit if w * H != h * W else 'resized'} to {W}x{H}"
        log.info("source %s: %dx%d%s%s", self.source.name, w, h, rate, todo)

    def _upscale(self) -> None:
        t_last, ema = None, 0.0
        while True:
            self.beats["upscale"] = time.monotonic()
            c = self.slot.get(timeout=0.2)
            if c is None:
                if self.slot.closed or self.stop_event.is_set():
                    break
                continue
            sr = None
            if self.need_sr:
                t0 = time.perf_counter()
                sr = self.engine.upscale(c.image)
                ms = 1000 * (time.perf_counter() - t0)
                self.stats["engine_ms"] = round(ms, 2)
                self.stats.update(self.engine.state())
                self.engine_hist.append(ms)
                del self.engine_hist[:-512]
                self.stats["upscaled"] += 1
            out = OutFrame(c.seq, c.timestamp_us, c.image, sr, self.scale, c.captured_at)
            for s in self.sinks:
                s.submit(out)
            now = time.monotonic()
            if t_last is not None:
                ema = 0.9 * ema + 0.1 * (1.0 / max(now - t_last, 1e-6)) if ema else 1.0 / max(now - t_last, 1e-6)
                self.stats["fps"] = round(ema, 2)
            t_last = self.heartbeat = now
            self.first_frame.set()
        self.stats["capture_drops"] = self.slot.dropped
        self.finished.set()

    def alive(self, max_age: float = 3.0) -> bool:
        """Both loops turned recently. A camera that is unplugged keeps its loop turning (reconnecting with
        backoff <= 2 s); a read or an invoke that hangs does not -- that is what the systemd watchdog catches."""
        now = time.monotonic()
        return all(now - b < max_age for b in self.beats.values())

    def snapshot(self) -> dict:
        """Counters of every stage and sink, for STATUS=, /metrics and /state."""
        self.stats["capture_drops"] = self.slot.dropped
        return {**self.stats, "source": self.source.name, "source_ok": self.source_ok,
                "heartbeat_age_s": round(time.monotonic() - self.heartbeat, 3) if self.heartbeat else None,
                "sinks": {s.url: s.state() for s in self.sinks}}

    def stop(self, timeout: float = 1.5) -> None:
        """Stop capture, let frames in flight finish, close sinks (in-flight TCP/serial frames complete)."""
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)
        deadline = time.monotonic() + timeout
        for s in self.sinks:
            s.close(max(0.1, deadline - time.monotonic()))
        self.source.close()
