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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .config import ServeConfig, read_key
from .transports.http_mjpeg import reply

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
    """/dev paths named in the config must exist within ``device_wait`` seconds (USB enumerates late at boot);
    otherwise ConfigError naming the key. Devices that vanish later are reconnected, not fatal."""
    from pathlib import Path

    from .errors import ConfigError
    from .transports import parse_url

    wanted = {}
    if cfg.source.url.startswith("/dev/"):
        wanted["source.url"] = cfg.source.url
    for i, k in enumerate(cfg.sinks):
        scheme, dev, _, _ = parse_url(k.url)
        if scheme == "serial" and dev.startswith("/dev/"):
            wanted[f"sink[{i}].url"] = dev
    t_end = time.monotonic() + cfg.device_wait
    while True:
        missing = {k: v for k, v in wanted.items() if not Path(v).exists()}
        if not missing:
            return
        if time.monotonic() >= t_end:
            k, v = next(iter(missing.items()))
            raise ConfigError(f"{k}: {v}: no such device (waited {cfg.device_wait:g} s; unplugged, or wrong path?)")
        time.sleep(0.2)


def build(cfg: ServeConfig):
    """Engine + source + sinks + pipeline from a validated config."""
    from .config import resolve_topology
    from .engine import Engine
    from .pipeline import Pipeline
    from .sources import open_source
    from .transports import open_sink

    for k in cfg.sinks:
        k.topology = resolve_topology(k)
    engine = None
    if any(s.topology == "source" for s in cfg.sinks):
        m = cfg.model
        if m.ladder:
            from .ladder import from_config
            engine = from_config(m, (cfg.source.width, cfg.source.height), cfg.source.fps)
        else:
            engine = Engine(m.name or None, backend=m.backend, threads=m.threads or None, scale=m.scale,
                            texture_threshold=m.texture_threshold, texture_tile=m.texture_tile)
        if engine.warning:
            log.warning(engine.warning)
    sinks = []
    for k in cfg.sinks:
        opts = dict(topology=k.topology, codec=k.codec, quality=k.quality, tile=k.tile, key=read_key(k.key_file),
                    bitrate=k.bitrate, fps=k.fps, stream=k.stream)
        if k.mtu:
            opts["mtu"] = k.mtu
        sinks.append(open_sink(k.url, **opts))
    src = cfg.source
    source = open_source(src.url, (src.width, src.height), src.fps, src.loop)
    pipe = Pipeline(source, engine, sinks, (src.width, src.height))
    if engine is not None:
        pipe.scale = engine.scale
    else:
        pipe.scale = cfg.model.scale
    return pipe


def prometheus(pipe, extra: dict) -> str:
    """Prometheus text format of the pipeline's counters."""
    s = pipe.snapshot()
    lines = []

    def metric(name, kind, help_, samples):
        lines.append(f"# HELP edgesr_{name} {help_}")
        lines.append(f"# TYPE edgesr_{name} {kind}")
        for labels, v in samples:
            lab = ",".join(f'{k}="{v2}"' for k, v2 in labels.items())
            lines.append(f"edgesr_{name}{{{lab}}} {v}" if lab else f"edgesr_{name} {v}")

    metric("frames_captured_total", "counter", "Frames read from the source", [({}, s["captured"])])
    metric("frames_upscaled_total", "counter", "Frames upscaled by the engine", [({}, s["upscaled"])])
    metric("frames_dropped_total", "counter", "Frames dropped by latest-frame-wins hand-offs",
           [({"stage": "capture"}, s["capture_drops"])] +
           [({"stage": "sink", "sink": u}, v["drops"]) for u, v in s["sinks"].items()])
    metric("frames_sent_total", "counter", "Frames sent per sink", [({"sink": u}, v["frames_sent"]) for u, v in s["sinks"].items()])
    metric("bytes_sent_total", "counter", "Bytes sent per sink", [({"sink": u}, v["bytes_sent"]) for u, v in s["sinks"].items()])
    metric("packets_sent_total", "counter", "Packets sent per sink", [({"sink": u}, v["packets_sent"]) for u, v in s["sinks"].items()])
    metric("camera_reconnects_total", "counter", "Source failures followed by a reconnect attempt",
           [({}, s["camera_reconnects"])])
    metric("fps", "gauge", "Pipeline frame rate (EWMA)", [({}, s["fps"])])
    if "model" in s:
        metric("sr_fraction", "gauge", "Share of tiles the model ran on, last frame (adaptive tiles; 1 = all)",
               [({"model": s["model"]}, s["sr_fraction"])])
    if "ladder_rung" in s:
        metric("ladder_rung", "gauge", "Current ladder rung (0 = best model)", [({"model": s["model"]}, s["ladder_rung"])])
        metric("ladder_switches_total", "counter", "Ladder moves up or down", [({}, s["ladder_switches"])])
    buckets = [5, 10, 20, 35, 50, 75, 100, 200, 500, float("inf")]
    hist = list(pipe.engine_hist)
    cum = [sum(1 for v in hist if v <= b) for b in buckets]
    lines.append("# HELP edgesr_engine_latency_ms Engine latency per frame (recent frames)")
    lines.append("# TYPE edgesr_engine_latency_ms histogram")
    for b, c in zip(buckets, cum):
        lines.append(f'edgesr_engine_latency_ms_bucket{{le="{"+Inf" if b == float("inf") else b}"}} {c}')
    lines.append(f"edgesr_engine_latency_ms_sum {round(sum(hist), 3)}")
    lines.append(f"edgesr_engine_latency_ms_count {len(hist)}")
    for k, v in extra.items():
        metric(k, "counter", k.replace("_", " "), [({}, v)])
    return "\n".join(lines) + "\n"


def healthy(pipe, max_age: float = 3.0) -> bool:
    return bool(pipe.heartbeat) and time.monotonic() - pipe.heartbeat < max_age and pipe.source_ok


def start_health_server(listen: str, pipe):
    host, port = listen.rsplit(":", 1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/healthz":
                ok = healthy(pipe)
                body, code, ctype = (b"ok\n" if ok else b"no frames\n"), (200 if ok else 503), "text/plain"
            elif path == "/metrics":
                body, code, ctype = prometheus(pipe, {}).encode(), 200, "text/plain; version=0.0.4"
            elif path == "/state":
                body, code, ctype = json.dumps(pipe.snapshot()).encode(), 200, "application/json"
            else:
                body, code, ctype = b"not found\n", 404, "text/plain"
            reply(self, code, ctype, body)

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="health").start()
    return server


def run(cfg: ServeConfig, duration: float | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``duration`` seconds); returns the exit code."""
    wait_for_devices(cfg)
    pipe = build(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    health = start_health_server(cfg.health.listen, pipe) if cfg.health.listen else None
    pipe.start()
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
            status = (f"{s['fps']:.1f} fps, {s.get('model', 'no model')} {s['engine_ms']:.1f} ms, latency {lat:.0f} ms, drops {drops}"
                      + ("" if s["source_ok"] else ", SOURCE DOWN"))
            sd_notify(f"STATUS={status}")
            log.info(status)
            next_status = now + cfg.status_every
        stop.wait(0.05)
    sd_notify("STOPPING=1")
    pipe.stop(timeout=1.5)
    if health is not None:
        health.shutdown()
        health.server_close()
    log.info("stopped: %s", json.dumps({k: v for k, v in pipe.snapshot().items() if k != "sinks"}))
    return 0
