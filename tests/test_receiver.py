"""edgesr.receiver: real time when the robot is slower than the stream, clean stops, the link's loss kept apart
from this machine's own drops."""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time

import pytest

from edgesr.engine import Engine
from edgesr.linksim import free_port
from edgesr.pipeline import Pipeline
from edgesr.receiver import Receiver
from edgesr.sources import SyntheticSource
from edgesr.transports import open_sink

from conftest import ROOT


@pytest.mark.slow
def test_a_slow_consumer_gets_the_newest_frame_and_no_backlog():
    """15 fps 320x240 SR at the source (1280x960 JPEG tiles over UDP loopback), a robot that takes 300 ms a frame.
    Before the receiver drained the socket in its own thread this gave a median latency of 3.8 s and a reported
    packet_loss of 0.31 on loopback."""
    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=False)
    pipe = Pipeline(SyntheticSource((320, 240), 15.0), Engine(threads=1), [open_sink(f"udp://127.0.0.1:{port}")],
                    (320, 240)).start()
    lat, t0 = [], time.monotonic()
    try:
        for f in rx.frames(timeout=10):
            lat.append(time.time() - f.timestamp)
            if time.monotonic() - t0 > 8:
                break
            time.sleep(0.3)  # the robot's work on this frame
    finally:
        pipe.stop()
        rx.close()
    s = rx.summary()
    assert len(lat) >= 10, s
    assert statistics.median(lat[3:]) <= 0.45, (lat, s)
    assert s["packet_loss"] == 0 and s["suggested_fec"] == 0, s
    assert s["skipped"] > 0  # the frames it had no time for: counted here, not as link loss


def _receive(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "edgesr", "receive", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)


@pytest.mark.slow
def test_sigterm_mid_stream_finishes_the_mcap_file(tmp_path):
    from mcap.reader import make_reader

    port = free_port()
    out = tmp_path / "run.mcap"
    pipe = Pipeline(SyntheticSource((96, 64), 10.0), None,
                    [open_sink(f"udp://127.0.0.1:{port}", topology="receiver")], (96, 64), scale=2).start()
    try:
        p = _receive([f"udp://127.0.0.1:{port}", "--record", str(out), "--no-upscale", "--timeout", "30"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not out.exists():
            time.sleep(0.2)  # the recorder is open (the writer buffers chunks: the size says little)
        time.sleep(4.0)  # ~40 frames at 10 fps are recorded
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        pipe.stop()
    assert p.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["frames"] >= 1
    with open(out, "rb") as f:
        msgs = list(make_reader(f).iter_messages())
    assert len(msgs) == summary["outputs"][f"mcap://{out}"]["published"] >= 1


@pytest.mark.slow
def test_interrupted_before_the_first_frame_says_so_and_exits_0():
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = _receive([f"udp://127.0.0.1:{free_port()}", "--timeout", "60"])
        time.sleep(3.0)  # started and listening
        t0 = time.monotonic()
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=30)
        assert p.returncode == 0 and time.monotonic() - t0 < 5, stderr
        assert f"stopped by {sig.name} before the first frame" in stderr
        assert json.loads(stdout.strip().splitlines()[-1])["frames"] == 0


@pytest.mark.slow
def test_a_radio_rehearsal_on_one_machine(tmp_path):
    """edgesr radio -> edgesr serve --sink DEVICE_END -> edgesr receive ROBOT_END, three real processes (the how-to
    in docs/howto.md); SIGTERM ends each with its summary."""
    radio = subprocess.Popen([sys.executable, "-m", "edgesr", "radio", "--bitrate", "115200", "--loss", "0.02"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    device_end = radio.stdout.readline().split()[-1]
    robot_end = radio.stdout.readline().split()[-1]
    assert device_end.startswith("serial:///dev/") and robot_end.startswith("serial:///dev/")
    serve = subprocess.Popen([sys.executable, "-m", "edgesr", "serve", "--source", "synthetic", "--size", "96x64",
                              "--fps", "4", "--sink", device_end, "--health", ""],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        rx = _receive([robot_end, "--count", "4", "--timeout", "60", "--out", str(tmp_path)])
        stdout, stderr = rx.communicate(timeout=120)
        assert rx.returncode == 0, stderr
        assert json.loads(stdout.strip().splitlines()[-1])["frames"] == 4 and len(list(tmp_path.glob("*.png"))) == 4
    finally:
        outs = {}
        for name, p in (("serve", serve), ("radio", radio)):
            p.send_signal(signal.SIGTERM)
            outs[name] = p.communicate(timeout=30)
    assert serve.returncode == 0 and radio.returncode == 0, outs
    assert json.loads(outs["radio"][0].strip().splitlines()[-1])["bytes_out"] > 0  # it carried the frames
