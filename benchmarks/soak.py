"""Soak: `edgesr serve` (synthetic source) to UDP + serial (pty link) + HTTP sinks for a long time; RSS at start
and end, fps stability, drops.   python benchmarks/soak.py --minutes 30
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesr.linksim import PtyLink, free_port  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=float, default=15)
    a = ap.parse_args()
    link = PtyLink(bitrate=57600).start()
    udp, http, health = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    w, h = a.size.split("x")
    cfg = Path(tempfile.mkdtemp()) / "soak.toml"
    cfg.write_text(f"""status_every = 30
[source]
url = "synthetic"
width = {w}
height = {h}
fps = {a.fps}
[[sink]]
url = "udp://127.0.0.1:{udp}"
tile = 128
[[sink]]
url = "serial://{link.tx}?baud=57600"
topology = "receiver"
codec = "webp"
fps = 2
quality = 50
[[sink]]
url = "http://127.0.0.1:{http}"
[health]
listen = "127.0.0.1:{health}"
""")
    rx = subprocess.Popen([sys.executable, "-m", "edgesr", "receive", f"serial://{link.rx}?baud=57600",
                           "--no-upscale", "--timeout", str(a.minutes * 60 + 60)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    d = subprocess.Popen([sys.executable, "-m", "edgesr", "serve", "--config", str(cfg)], stderr=subprocess.DEVNULL)
    time.sleep(20)
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.minutes * 60:
        st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{health}/state", timeout=5).read())
        samples.append({"t": round(time.monotonic() - t0), "rss_mb": round(rss_mb(d.pid), 1), "fps": st["fps"],
                        "captured": st["captured"], "capture_drops": st["capture_drops"],
                        "sink_drops": {k: v["drops"] for k, v in st["sinks"].items()}})
        time.sleep(15)
    d.send_signal(signal.SIGTERM)
    d.wait(10)
    rx.send_signal(signal.SIGINT)
    out = rx.communicate(timeout=20)[0]
    link.close()
    fps = [s["fps"] for s in samples]
    res = {"minutes": a.minutes, "rss_start_mb": samples[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
           "rss_growth_mb": round(samples[-1]["rss_mb"] - samples[0]["rss_mb"], 1),
           "fps_median": sorted(fps)[len(fps) // 2], "fps_min": min(fps), "fps_max": max(fps),
           "last": samples[-1], "serial_receiver": out.strip().splitlines()[-1] if out.strip() else None,
           "exit_code": d.returncode}
    print(json.dumps(res))
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps({"summary": res, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
