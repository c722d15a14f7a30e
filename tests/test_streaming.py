"""Streaming over real transports on loopback: UDP, TCP, serial (pty pairs), HTTP MJPEG; real processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from edgesr.engine import Engine
from edgesr.linksim import PtyLink, free_port
from edgesr.pipeline import Pipeline
from edgesr.receiver import Receiver
from edgesr.sources import SyntheticSource
from edgesr.transports import open_sink

from conftest import FIX

MODEL = FIX / "tiny_x2_float32.tflite"



def serve(sinks, size=(96, 64), fps=20.0):
    return Pipeline(SyntheticSource(size, fps), Engine(MODEL, threads=1), sinks, size).start()


def take(rx, n, timeout=15.0):
    out, t_end = [], time.monotonic() + timeout
    for f in rx.frames(timeout=timeout):
        out.append(f)
        if len(out) >= n or time.monotonic() > t_end:
            break
    return out


def test_udp_sr_at_source_and_garbage(tmp_path):
    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=False)
    pipe = serve([open_sink(f"udp://127.0.0.1:{port}", tile=32)])
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(50):
            junk.sendto(os.urandom(np.random.randint(1, 1500)), ("127.0.0.1", port))
        frames = take(rx, 5)
    finally:
        pipe.stop()
        rx.close()
        junk.close()
    assert len(frames) == 5
    assert all(f.image.shape == (128, 192, 3) and not f.lr for f in frames)
    assert all(f.image.std() > 10 for f in frames)  # real picture content, not black fill
    assert rx.stats["bad_packets"] >= 40 and [f.seq for f in frames] == sorted(f.seq for f in frames)


def test_udp_sr_at_receiver_with_hmac(tmp_path):
    port = free_port()
    key = b"0123456789abcdef"
    rx = Receiver(f"udp://127.0.0.1:{port}", key=key, upscale=True, model=str(MODEL))
    pipe = serve([open_sink(f"udp://127.0.0.1:{port}", topology="receiver", key=key)])
    forged = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        from edgesr.protocol import encode_frame
        for p in encode_frame(np.zeros((64, 96, 3), np.uint8), 999999, 0, key=b"wrong-key-wrong!"):
            forged.sendto(p, ("127.0.0.1", port))
        frames = take(rx, 3)
    finally:
        pipe.stop()
        rx.close()
        forged.close()
    assert len(frames) == 3 and all(f.image.shape == (128, 192, 3) for f in frames)
    assert rx.stats["upscaled"] == 3 and rx.stats["auth_failures"] >= 1
    assert pipe.stats["upscaled"] == 0  # nothing upscaled at the source


def test_tcp_many_clients_kill_and_reconnect():
    port = free_port(socket.SOCK_STREAM)
    pipe = serve([open_sink(f"tcp://127.0.0.1:{port}")])
    try:
        a, b = Receiver(f"tcp://127.0.0.1:{port}"), Receiver(f"tcp://127.0.0.1:{port}")
        assert len(take(a, 2)) == 2 and len(take(b, 2)) == 2
        a.close()  # a client dies; the other keeps getting frames
        assert len(take(b, 3)) == 3
        c = Receiver(f"tcp://127.0.0.1:{port}")  # a restarted receiver
        assert len(take(c, 2)) == 2
        c.close()
        b.close()
    finally:
        pipe.stop()
    assert pipe.sinks[0].stats["client_drops"] >= 1


@pytest.mark.slow
def test_tcp_receiver_waits_for_server_and_reconnects():
    port = free_port(socket.SOCK_STREAM)
    rx = Receiver(f"tcp://127.0.0.1:{port}")
    got = []
    t = threading.Thread(target=lambda: got.extend(take(rx, 2, timeout=20)))
    t.start()
    time.sleep(0.8)  # receiver starts first and keeps retrying with backoff
    pipe = serve([open_sink(f"tcp://127.0.0.1:{port}")])
    t.join(25)
    pipe.stop()
    assert len(got) == 2
    pipe2 = serve([open_sink(f"tcp://127.0.0.1:{port}")])  # device restarted: the stream resumes by itself
    try:
        assert len(take(rx, 2, timeout=20)) == 2
    finally:
        pipe2.stop()
        rx.close()
    assert rx.reader.reconnects >= 1


@pytest.mark.slow
def test_serial_over_pty_with_corruption_and_loss():
    link = PtyLink(bitrate=0, corrupt=0.002, loss=0.05, seed=3).start()
    rx = Receiver(f"serial://{link.rx}?baud=115200", upscale=False)
    pipe = serve([open_sink(f"serial://{link.tx}?baud=115200", quality=60, tile=32)], fps=5)
    try:
        frames = take(rx, 4, timeout=30)
    finally:
        pipe.stop()
        rx.close()
        link.close()
    assert len(frames) == 4 and all(f.image.shape == (128, 192, 3) for f in frames)
    assert link.stats["corrupted"] > 0 and (rx.stats["bad_packets"] > 0 or rx.reader.deframer.errors > 0)


@pytest.mark.slow
def test_serial_pacing_never_exceeds_budget_over_2s():
    bitrate = 20000
    link = PtyLink(bitrate=0).start()
    sink = open_sink(f"serial://{link.tx}?baud=115200", bitrate=bitrate, fps=10, quality=90, tile=32).start()
    pipe = Pipeline(SyntheticSource((160, 120), 30), Engine(MODEL, threads=1), [sink], (160, 120)).start()
    time.sleep(6)
    pipe.stop()
    link.close()
    assert link.stats["bytes_in"] > 0.5 * bitrate / 8 * 5  # the link was actually used
    assert link.max_window_bytes(2.0) <= bitrate / 8 * 2
    assert sink.encoder.rate.quality < 90  # rate control stepped quality down to fit


@pytest.mark.slow
def test_serial_link_cut_and_restored():
    link = PtyLink(bitrate=0).start()
    rx = Receiver(f"serial://{link.rx}?baud=115200", upscale=False)
    pipe = serve([open_sink(f"serial://{link.tx}?baud=115200", tile=32)], fps=5)
    try:
        assert len(take(rx, 2, timeout=20)) == 2
        link.cut.set()
        time.sleep(1.0)
        link.cut.clear()
        assert len(take(rx, 2, timeout=20)) == 2
    finally:
        pipe.stop()
        rx.close()
        link.close()


def test_http_mjpeg_browser_page_snapshot_stream_and_opencv():
    import cv2

    port = free_port(socket.SOCK_STREAM)
    pipe = serve([open_sink(f"http://127.0.0.1:{port}")])
    base = f"http://127.0.0.1:{port}"
    try:
        page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert '<img src="/stream"' in page
        snap = urllib.request.urlopen(base + "/snapshot.jpg", timeout=5)
        assert snap.headers["Content-Type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(snap.read(), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (128, 192, 3)
        with urllib.request.urlopen(base + "/stream", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        rx = Receiver(base)
        assert len(take(rx, 3)) == 3
        rx.close()
        cap = cv2.VideoCapture(base + "/stream")
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (128, 192, 3)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/nope", timeout=5)
    finally:
        pipe.stop()


@pytest.mark.slow
def test_serve_process_sigterm_is_clean_and_tcp_frames_complete(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    p = subprocess.Popen([sys.executable, "-m", "edgesr", "serve", "--source", "synthetic", "--size", "96x64",
                          "--fps", "15", "--sink", f"tcp://127.0.0.1:{port}", "--model", str(MODEL), "--health", ""],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        rx = Receiver(f"tcp://127.0.0.1:{port}", upscale=False, latest_only=False)
        frames = take(rx, 3, timeout=30)
        assert len(frames) == 3
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=5)
        took = time.monotonic() - t0
        rest = list(rx.frames(timeout=1.0))
        rx.close()
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 0 and took < 2.0, p.stderr.read()
    assert all(not f.missing_tiles for f in frames + rest)  # nothing cut in half at the client
    assert rx.assembler.stats["partial"] == 0


def test_conditional_replenishment_sends_changed_tiles_only(photo):
    """A static scene with one moving patch: after the first frame only the changed tiles (+ the refresh) go out,
    and the robot's frames equal what a full send would give."""
    from edgesr.assembly import FrameAssembler
    from edgesr.encoder import StreamEncoder
    from edgesr.protocol import decode_packet
    from edgesr.transports.base import OutFrame

    base = np.ascontiguousarray(photo[:128, :192])
    sink = StreamEncoder(topology="receiver", codec="png", tile=64, replenish=4.0, refresh=1)
    asm = FrameAssembler()
    sent_tiles = []
    for k in range(4):
        img = base.copy()
        img[10:40, 10 + 20 * k:40 + 20 * k] = 0  # a moving black patch (the photo is bright there)
        pk = sink.packets(OutFrame(k + 1, 0, img, None, 1, 0.0))
        sent_tiles.append(len({decode_packet(p).tile_index for p in pk}))
        frames = [f for p in pk for f in asm.add(decode_packet(p))]
        assert len(frames) == 1 and frames[0].missing_tiles == []
        assert np.array_equal(frames[0].image, img)  # png: lossless, so the kept tiles are exactly right
    assert sent_tiles[0] == 6 and all(n <= 3 for n in sent_tiles[1:])  # 6 tiles; later: patch tiles + 1 refresh
