"""The health endpoint of `edgesr serve`: /healthz, /metrics (Prometheus text format) and /state (JSON)."""
from __future__ import annotations

import json
import time

from .httpserver import Handler, Server, listen_addr, reply


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
    metric("frames_sent_total", "counter", "Frames sent per sink",
           [({"sink": u}, v["frames_sent"]) for u, v in s["sinks"].items()])
    metric("bytes_sent_total", "counter", "Bytes sent per sink",
           [({"sink": u}, v["bytes_sent"]) for u, v in s["sinks"].items()])
    metric("packets_sent_total", "counter", "Packets sent per sink",
           [({"sink": u}, v["packets_sent"]) for u, v in s["sinks"].items()])
    packet_sinks = [(u, v) for u, v in s["sinks"].items() if "refresh_requests" in v]  # MJPEG has no back channel
    metric("refresh_requests_total", "counter", "Robots' refresh requests (the back channel) per sink",
           [({"sink": u}, v["refresh_requests"]) for u, v in packet_sinks])
    metric("refreshes_total", "counter", "IDRs sent because a robot asked", [({"sink": u}, v["refreshes"])
                                                                          for u, v in packet_sinks])
    metric("camera_reconnects_total", "counter", "Source failures followed by a reconnect attempt",
           [({}, s["camera_reconnects"])])
    metric("fps", "gauge", "Pipeline frame rate (EWMA)", [({}, s["fps"])])
    links = [(u, v["link"]) for u, v in s["sinks"].items() if "link" in v]
    if links:
        metric("link_mode", "gauge", "Measured link mode in use (1 for the chosen mode; lr modes: SR at the robot)",
               [({"sink": u, "mode": m}, int(v["mode"] == m)) for u, v in links for m in v["db"]])
        metric("link_measured_db", "gauge", "PSNR-Y at the robot measured on the device, per mode",
               [({"sink": u, "mode": m}, db) for u, v in links for m, db in v["db"].items() if db is not None])
    if "model" in s:
        metric("sr_fraction", "gauge", "Share of tiles the model ran on, last frame (adaptive tiles; 1 = all)",
               [({"model": s["model"]}, s["sr_fraction"])])
    if "ladder_rung" in s:
        metric("ladder_rung", "gauge", "Current ladder rung (0 = best model)",
               [({"model": s["model"]}, s["ladder_rung"])])
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


def start_health_server(listen: str, pipe) -> Server:
    """/healthz (200 while frames flow, else 503), /metrics (Prometheus), /state (JSON) on ``listen``."""

    class HealthHandler(Handler):
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

    return Server(listen_addr(listen), HealthHandler, f"health.listen {listen}", max_clients=16).start()
