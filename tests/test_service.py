"""End to end: a real `edgesr serve` under a fake systemd (NOTIFY_SOCKET owned by the test)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgesr.linksim import PtyLink, free_port

from conftest import FIX

MODEL = FIX / "tiny_x2_float32.tflite"



@pytest.mark.slow
def test_serve_under_systemd_notify(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)
    udp, health, http = free_port(), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    link = PtyLink(bitrate=0).start()
    cfg = tmp_path / "edgesr.toml"
    cfg.write_text(f"""
status_every = 0.5
[source]
url = "synthetic"
width = 96
height = 64
fps = 10
[model]
name = "{MODEL}"
threads = 1
[[sink]]
url = "udp://127.0.0.1:{udp}"
[[sink]]
url = "serial://{link.tx}?baud=115200"
topology = "receiver"
tile = 32
[[sink]]
url = "http://127.0.0.1:{http}"
[health]
listen = "127.0.0.1:{health}"
""")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    rx_udp = subprocess.Popen([sys.executable, "-m", "edgesr", "receive", f"udp://127.0.0.1:{udp}", "--count", "3",
                               "--out", str(tmp_path / "udp")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    rx_ser = subprocess.Popen([sys.executable, "-m", "edgesr", "receive", f"serial://{link.rx}?baud=115200",
                               "--count", "2", "--no-upscale", "--out", str(tmp_path / "ser")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    daemon = subprocess.Popen([sys.executable, "-m", "edgesr", "serve", "--config", str(cfg)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    msgs = []
    try:
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and not ({"READY=1", "WATCHDOG=1"} <= set(msgs)
                                                and any(m.startswith("STATUS=") for m in msgs)):
            try:
                msgs.append(notify.recv(4096).decode())
            except TimeoutError:
                pass
        assert "READY=1" in msgs and "WATCHDOG=1" in msgs, msgs
        assert any(m.startswith("STATUS=") and "fps" in m for m in msgs)
        base = f"http://127.0.0.1:{health}"
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert "edgesr_frames_captured_total" in metrics and 'edgesr_engine_latency_ms_bucket{le="+Inf"}' in metrics
        state = json.loads(urllib.request.urlopen(base + "/state", timeout=5).read())
        assert state["source_ok"] and len(state["sinks"]) == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/stream", timeout=5) as r:
            assert r.readline().startswith(b"--edgesrframe")
        out_udp = rx_udp.communicate(timeout=30)
        out_ser = rx_ser.communicate(timeout=30)
        assert rx_udp.returncode == 0, out_udp
        assert rx_ser.returncode == 0, out_ser
        assert len(list((tmp_path / "udp").glob("*.png"))) == 3 and len(list((tmp_path / "ser").glob("*.png"))) == 2
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=5)
        assert rc == 0 and time.monotonic() - t0 < 2.0
        try:
            while True:
                msgs.append(notify.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in msgs
    finally:
        for p in (daemon, rx_udp, rx_ser):
            if p.poll() is None:
                p.kill()
        link.close()
        notify.close()


@pytest.mark.slow
def test_camera_disappears_and_returns(tmp_path):
    """File source deleted mid-stream: reconnect with backoff, /healthz 503, loop stays alive (watchdog),
    and /healthz is 200 again within 3 s of the source coming back."""
    import shutil

    from edgesr.engine import Engine
    from edgesr.health import start_health_server
    from edgesr.imageio import write_rgb
    from edgesr.pipeline import Pipeline
    from edgesr.sources import ImageFolderSource
    from edgesr.transports import open_sink

    cam = tmp_path / "cam"
    cam.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_rgb(cam / f"{i}.png", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    port = free_port(socket.SOCK_STREAM)
    pipe = Pipeline(ImageFolderSource(cam, True, 20), Engine(MODEL, threads=1),
                    [open_sink(f"udp://127.0.0.1:{free_port()}")]).start()
    server = start_health_server(f"127.0.0.1:{port}", pipe)

    def status():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status
        except urllib.error.HTTPError as e:
            return e.code

    def wait_for(code, seconds):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            if status() == code:
                return time.monotonic()
            time.sleep(0.05)
        return None

    try:
        assert wait_for(200, 10)
        shutil.move(str(cam), str(tmp_path / "unplugged"))
        assert wait_for(503, 5), "healthz did not report the lost source"
        time.sleep(1.5)
        assert pipe.alive() and pipe.stats["camera_reconnects"] >= 2
        shutil.move(str(tmp_path / "unplugged"), str(cam))
        t_back = time.monotonic()
        t_ok = wait_for(200, 5)
        assert t_ok is not None and t_ok - t_back < 3.0
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert "edgesr_camera_reconnects_total" in metrics
    finally:
        server.shutdown()
        pipe.stop()
