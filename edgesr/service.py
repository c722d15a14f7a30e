"""Running `edgesr serve`: build the pipeline from a config, talk to systemd, serve health and metrics.

sd_notify is the plain datagram protocol (no dependency): READY=1 after the first frame, WATCHDOG=1 at half of
$WATCHDOG_USEC only while the pipeline heartbeat is fresh (a stuck camera or engine stops the pings and systemd
restarts us), STATUS= with fps/latency/drops, STOPPING=1 on shutdown. Without $NOTIFY_SOCKET it does nothing.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from .config import ServeConfig

log = logging.getLogger("edgesr.service")


def sd_notify(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def wait_for_devices(cfg: ServeConfig) -> None:
    """Paths named in the config (/dev devices, a video file or image folder) must exist within ``device_wait``
    seconds (USB enumerates late at boot, a disk mounts late); otherwise ConfigError naming the key.
    Devices and files that vanish later are reconnected, not fatal."""
    from pathlib import Path

    from .config import SOURCE_KEYWORDS
    from .errors import ConfigError

    wanted = {}
    if cfg.source.url not in SOURCE_KEYWORDS and not cfg.source.url.isdigit():
        wanted["source.url"] = cfg.source.url
    for i, k in enumerate(cfg.sinks):
        if k.endpoint.scheme == "serial" and k.endpoint.host.startswith("/dev/"):
            wanted[f"sink[{i}].url"] = k.endpoint.host
    t_end = time.monotonic() + cfg.device_wait
    while True:
        missing = {k: v for k, v in wanted.items() if not Path(v).exists()}
        if not missing:
            return
        if time.monotonic() >= t_end:
            key, v = next(iter(missing.items()))
            what = "device" if v.startswith("/dev/") else "file or folder"
            raise ConfigError(f"{key}: {v}: no such {what} (waited {cfg.device_wait:g} s; unplugged, or wrong path?)")
        time.sleep(0.2)


def build(cfg: ServeConfig):
    """Engine (or ladder) + source + sinks + pipeline from a loaded config: assembly only, no decisions."""
    from .pipeline import Pipeline
    from .sources import open_source
    from .transports import open_sink

    engine: Any = None  # an Engine, or a Ladder of them
    if any(k.resolved_topology == "source" for k in cfg.sinks):
        m = cfg.model
        if m.ladder:
            from .ladder import from_config
            engine = from_config(m, (cfg.source.width, cfg.source.height), cfg.source.fps)
        else:
            from .engine import Engine
            engine = Engine(m.name or None, backend=m.backend, threads=m.threads or None, scale=m.scale,
                            texture_threshold=m.texture_threshold, texture_tile=m.texture_tile, dtype=m.dtype,
                            size=(cfg.source.width, cfg.source.height) if cfg.source.width else (320, 240))
        if engine.warning:
            log.warning(engine.warning)
    sinks = [open_sink(k.endpoint, topology=k.resolved_topology, codec=k.codec, quality=k.quality, tile=k.tile,
                       key=k.key, bitrate=k.bitrate, fps=k.fps, stream=k.stream, replenish=k.replenish,
                       refresh=k.refresh, fec=k.fec, feedback=k.feedback, **({"mtu": k.mtu} if k.mtu else {}),
                       **(_measuring(cfg.model, k.codec) if k.resolved_topology == "measured" else {}))
             for k in cfg.sinks]
    src = cfg.source
    size = (src.width, src.height) if src.width else None  # None: the source's own size
    source = open_source(src.url, size, src.fps or None, src.loop)
    return Pipeline(source, engine, sinks, size, cfg.model.scale, fit=src.fit)


def _measuring(m, codec: str) -> dict:
    """A measured sink's own engine (measuring runs on the sink's thread) and the modes it chooses among."""
    from .engine import Engine

    return {"measure_with": Engine(m.name or None, backend=m.backend, threads=1, scale=m.scale),
            "modes": candidate_modes(codec)}


def candidate_modes(codec: str) -> tuple[str, ...]:
    """What topology 'measured' chooses among: tiles in ``codec`` and, where PyAV is installed, H.264 (both at
    camera size and at 1/scale for SR at the robot); ``codec = "h264"``: H.264 only."""
    from .video import available

    if codec == "h264":
        return ("h264_hr", "h264_lr")
    if available():
        return ("hr", "lr", "h264_hr", "h264_lr")
    log.info("topology 'measured' without H.264 (PyAV not installed: pip install \"edgesr[video]\")")
    return ("hr", "lr")


def run(cfg: ServeConfig, duration: float | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``duration`` seconds); returns the exit code."""
    from .health import start_health_server

    wait_for_devices(cfg)
    pipe = build(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    health = start_health_server(cfg.health.listen, pipe) if cfg.health.listen else None
    try:
        pipe.start()
    except BaseException:
        if health is not None:
            health.stop()
        raise
    log.info("serving %s -> %s", pipe.source.name, ", ".join(s.url for s in pipe.sinks))
    wd_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    wd_every = wd_usec / 2e6 if wd_usec else None
    t0 = time.monotonic()
    next_status = next_wd = t0
    ready = False
    while not stop.is_set():
        now = time.monotonic()
        if duration is not None and now - t0 >= duration:
            break
        if pipe.finished.is_set():
            log.info("source finished")
            break
        if not ready and pipe.first_frame.is_set():
            ready = True
            sd_notify("READY=1")
            log.info("first frame produced; ready")
        if wd_every and now >= next_wd:
            if pipe.alive(max_age=max(3.0, 2 * wd_every)):
                sd_notify("WATCHDOG=1")
            next_wd = now + wd_every
        if now >= next_status:
            s = pipe.snapshot()
            drops = s["capture_drops"] + sum(v["drops"] for v in s["sinks"].values())
            lat = max((v["latency_ms"] for v in s["sinks"].values()), default=0)
            model = f"{s['model']} {s['engine_ms']:.1f} ms" if "model" in s else "no SR on the device (LR sinks)"
            status = (f"{s['fps']:.1f} fps, {model}, latency {lat:.0f} ms, drops {drops}"
                      + ("" if s["source_ok"] else ", SOURCE DOWN"))
            sd_notify(f"STATUS={status}")
            log.info(status)
            next_status = now + cfg.status_every
        stop.wait(0.05)
    sd_notify("STOPPING=1")
    pipe.stop(timeout=1.5)
    if health is not None:
        health.stop()
    log.info("stopped: %s", json.dumps({k: v for k, v in pipe.snapshot().items() if k != "sinks"}))
    return 0
