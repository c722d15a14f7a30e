"""Pipeline fps/latency (capture -> SR -> encode -> UDP send) against the bare engine, in one run.

    python benchmarks/pipeline_overhead.py [--model M] [--size 320x240] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.engine import Engine  # noqa: E402
from edgesr.imageio import sample_frame  # noqa: E402
from edgesr.pipeline import Pipeline  # noqa: E402
from edgesr.sources import SyntheticSource  # noqa: E402
from edgesr.transports import open_sink  # noqa: E402


def engine_fps(model, size, seconds, threads):
    eng = Engine(model, threads=threads)
    f = sample_frame(size)
    out = np.empty((size[1] * eng.scale, size[0] * eng.scale, 3), np.uint8)
    for _ in range(3):
        eng.upscale(f, out=out)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        eng.upscale(f, out=out)
        n += 1
    return n / (time.perf_counter() - t0)


def pipeline_fps(model, size, seconds, threads, tile, quality):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = open_sink(f"udp://127.0.0.1:{port}", tile=tile, quality=quality)
    # the robot decodes on its own CPU: here the socket is only drained, so the device's cost is measured
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", port))
    drain.settimeout(0.5)
    got = []
    stop = threading.Event()

    def receive():
        while not stop.is_set():
            try:
                got.append(len(drain.recv(65535)))
            except OSError:
                pass

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    pipe = Pipeline(SyntheticSource(size, fps=0), Engine(model, threads=threads), [sink], size).start()
    time.sleep(2)
    up0, sent0, t0 = pipe.stats["upscaled"], sink.stats["frames_sent"], time.monotonic()
    lat = []
    while time.monotonic() - t0 < seconds:
        time.sleep(0.25)
        lat.append(sink.stats["latency_ms"])
    el = time.monotonic() - t0
    res = {"pipeline_upscaled_fps": (pipe.stats["upscaled"] - up0) / el,
           "pipeline_sent_fps": (sink.stats["frames_sent"] - sent0) / el,
           "capture_to_sent_ms_median": float(np.median(lat)), "sink_drops": sink.slot.dropped,
           "datagrams_received": len(got)}
    stop.set()
    pipe.stop()
    drain.close()
    return res


def encode_ms(model, size, tile, quality):
    """What one SR-at-source frame costs to encode (the work the pipeline adds to the engine's)."""
    from edgesr.protocol import encode_frame

    sr = Engine(model).upscale(sample_frame(size))
    ts = []
    for _ in range(10):
        t0 = time.perf_counter()
        encode_frame(sr, 1, 0, tile=tile, quality=quality)
        ts.append(time.perf_counter() - t0)
    return 1000 * float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--quality", type=int, default=80)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split("x"))
    e = engine_fps(a.model, size, a.seconds, a.threads)
    p = pipeline_fps(a.model, size, a.seconds, a.threads, a.tile, a.quality)
    p["encode_ms_per_sr_frame"] = encode_ms(a.model, size, a.tile, a.quality)
    print(json.dumps({"size": a.size, "engine_fps": round(e, 2), **{k: (round(v, 2) if isinstance(v, float) else v)
                                                                   for k, v in p.items()},
                      "overhead_pct": round(100 * (1 - p["pipeline_upscaled_fps"] / e), 1)}))


if __name__ == "__main__":
    main()
