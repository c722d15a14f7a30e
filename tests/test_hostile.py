"""Hostile input and the first run: every class of bad input gives one line on stderr and exit code 2 (or is
dropped and counted when it comes from the network), never a traceback, a hang or a silent kill."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesr.assembly import Limits
from edgesr.errors import ConfigError, ModelError, ProtocolError
from edgesr.imageio import read_rgb, write_rgb
from edgesr.linksim import free_port
from edgesr.protocol import FLAG_LR, Packet, decode_packet, encode_frame, encode_packet

from conftest import FIX, ROOT, run_cli

SAMPLE = ROOT / "edgesr" / "samples" / "nature_160x120.png"
TINY = FIX / "tiny_x2_float32.tflite"


def edgesr(*args, **kw):
    return run_cli("edgesr", *map(str, args), **kw)


def one_line_error(r, *needles):
    """Exit code 2 and exactly one line on stderr: no interpreter INFO line, no library chatter, no traceback."""
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# -- the first run ---------------------------------------------------------------------------------------------
def test_interpreter_is_quiet_unless_verbose(tmp_path):
    r = edgesr("upscale", SAMPLE, tmp_path / "a.png", "--model", TINY, "--threads", "1")
    assert r.returncode == 0 and "XNNPACK" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = edgesr("-v", "upscale", SAMPLE, tmp_path / "b.png", "--model", TINY, "--threads", "1")
    assert r.returncode == 0 and "XNNPACK" in r.stderr


# -- geometry from the network ---------------------------------------------------------------------------------
def test_huge_declared_frame_is_dropped_and_reception_goes_on(photo):
    """One valid-CRC packet declaring 65535x65535 (x4 LR): dropped and counted; the next real frame arrives."""
    from edgesr.receiver import Receiver

    port = free_port()
    rx = Receiver(f"udp://127.0.0.1:{port}", upscale=False)
    bomb = encode_packet(Packet(0, 1, 0, 65535, 65535, 0, 1, 0, 0, 64, 64, 1, 4, 0, 1, FLAG_LR, b"x" * 100))
    real = encode_frame(np.ascontiguousarray(photo[:64, :96]), 2, 0, tile=32)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in [bomb, *real]:
            s.sendto(p, ("127.0.0.1", port))
    try:
        frames = []
        for f in rx.frames(timeout=3):
            frames.append(f)
            break
    finally:
        rx.close()
    assert frames and frames[0].seq == 2 and frames[0].image.shape == (64, 96, 3)
    assert rx.assembler.stats["over_limit"] == 1


def test_tile_header_that_lies_is_not_decoded():
    """A tile whose image header declares a huge size never reaches the decoder (which would allocate it)."""
    from edgesr.codec import decode, encode

    png = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "png"))
    png[16:24] = (60000).to_bytes(4, "big") * 2
    with pytest.raises(ProtocolError, match="tile header says"):
        decode(bytes(png), (8, 8))


u16 = st.integers(0, 65535)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fw=u16, fh=u16, tc=u16, ti=u16, x=u16, y=u16, w=u16, h=u16, codec=st.integers(0, 255),
       scale=st.integers(0, 255), frag=st.integers(0, 255), nfrag=st.integers(0, 255), lr=st.booleans(),
       stream=u16, payload=st.sampled_from(["noise", "image", "header"]), keyed=st.booleans())
@pytest.mark.slow
def test_structure_aware_fuzz(fw, fh, tc, ti, x, y, w, h, codec, scale, frag, nfrag, lr, stream, payload, keyed):
    """Packets with a valid CRC and HMAC and arbitrary header fields: only ProtocolError, bounded memory."""
    from edgesr.assembly import FrameAssembler
    from edgesr.codec import encode

    img = encode(np.full((max(1, min(h, 64)), max(1, min(w, 64)), 3), 100, np.uint8), "jpeg", 80)
    body = {"noise": bytes(range(200)), "image": img, "header": img[:30] + b"\0" * 30}[payload]
    key = b"k" * 16 if keyed else None
    raw = encode_packet(Packet(stream, 5, 1, fw, fh, ti, tc, x, y, w, h, codec, scale, frag, nfrag,
                               FLAG_LR if lr else 0, body), key)
    limits = Limits()
    asm = FrameAssembler(limits=limits)
    try:
        p = decode_packet(raw, key)
    except ProtocolError:
        return
    for f in asm.add(p) + asm.expire(1e9, 0):
        assert f.image.shape[0] * f.image.shape[1] <= limits.max_frame_pixels
        if f.lr:
            assert f.image.size * f.scale ** 2 <= 3 * limits.max_output_pixels
    assert sum(u.nbytes for u in asm.pending.values()) <= limits.max_frame_bytes * limits.max_pending


# -- input size ------------------------------------------------------------------------------------------------
def test_big_input_runs_in_tiles_equal_to_whole_frame(photo):
    from edgesr.engine import Engine

    img = np.ascontiguousarray(photo[:150, :230])
    whole = Engine(TINY, threads=1).upscale(img)
    tiled = Engine(TINY, threads=1, whole_frame_max=50 * 50).upscale(img)  # forces the bounded-memory path
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_upscale_refuses_output_over_the_limit(tmp_path):
    r = edgesr("upscale", SAMPLE, tmp_path / "o.png", "--model", TINY, "--max-output-mp", "0.05")
    one_line_error(r, "over the limit of 0.05 MP", "--max-output-mp")
    assert not (tmp_path / "o.png").exists()


# -- ports -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["tcp", "http", "health"])
def test_port_in_use_is_one_line_exit_2(scheme):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        sink = f"{scheme}://127.0.0.1:{port}" if scheme != "health" else f"udp://127.0.0.1:{free_port()}"
        health = f"127.0.0.1:{port}" if scheme == "health" else ""
        r = edgesr("serve", "--sink", sink, "--model", TINY, "--threads", "1", "--health", health,
                   "--duration", "5", timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"127.0.0.1:{port}" in r.stderr.strip().splitlines()[-1] and "port in use" in r.stderr


def test_receive_port_in_use_and_health_on_sink_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        one_line_error(edgesr("receive", f"udp://127.0.0.1:{busy.getsockname()[1]}", "--timeout", "1"),
                       "port in use")
    port = free_port(socket.SOCK_STREAM)
    one_line_error(edgesr("serve", "--sink", f"http://127.0.0.1:{port}", "--health", f"127.0.0.1:{port}"),
                   f"TCP port {port}, already taken by health.listen")


# -- URL values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,needle", [
    ("udp://127.0.0.1:99999", "port must be 0..65535"),
    ("udp://127.0.0.1:5600?ttl=abc", "ttl must be an integer"),
    ("udp://127.0.0.1:5600?ttl=300", "ttl must be 0..255"),
    ("serial:///dev/ttyUSB0?baud=fast", "baud must be an integer"),
    ("serial:///dev/ttyUSB0?bauds=9600", "unknown parameter 'bauds'"),
    ("tcp://127.0.0.1:5600/path", "takes no path"),
    ("http://127.0.0.1:8080/elsewhere", "/stream"),
])
def test_bad_url_values(url, needle):
    one_line_error(edgesr("serve", "--sink", url, "--health", ""), needle)


# -- model cards -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit,needle", [
    ({"scale": 4}, "the model upscales x2"),
    ({"scale": 2.0}, "scale: expected int, got float"),
    ({"tile": "ab"}, "tile: expected list"),
    ({"tile": [9, 9]}, "card says tile [9, 9]"),
    ({"metrics": [1, 2]}, "metrics: expected table"),
])
def test_cards_checked_against_the_real_model(tmp_path, edit, needle):
    card = json.loads((FIX / "tiny_x2_float32.json").read_text())
    card.update(edit)
    shutil.copy(TINY, tmp_path / "m.tflite")
    (tmp_path / "m.json").write_text(json.dumps(card))
    one_line_error(edgesr("upscale", SAMPLE, tmp_path / "o.png", "--model", tmp_path / "m.tflite"), needle)
    from edgesr.engine import Engine
    with pytest.raises(ModelError):
        Engine(tmp_path / "m.tflite")


# -- corrupt images --------------------------------------------------------------------------------------------
def test_truncated_images_are_errors_and_a_folder_finishes(tmp_path):
    good = read_rgb(SAMPLE)
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", good)
    write_rgb(src / "c.jpg", good)
    (src / "b.jpg").write_bytes((src / "c.jpg").read_bytes()[:1500])   # truncated JPEG
    (src / "d.png").write_bytes((src / "a.png").read_bytes()[:3000])   # truncated PNG
    one_line_error(edgesr("upscale", src / "b.jpg", tmp_path / "b.png", "--model", TINY), "b.jpg: truncated")
    one_line_error(edgesr("upscale", src / "d.png", tmp_path / "d.png", "--model", TINY), "d.png: truncated")
    r = edgesr("upscale", src, tmp_path / "out", "--model", TINY)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]  # the others finished
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "b.jpg" in errors[0] and "d.png" in errors[1]


def test_folder_source_warns_once_per_bad_image(tmp_path, caplog):
    from edgesr.sources import ImageFolderSource

    write_rgb(tmp_path / "a.png", read_rgb(SAMPLE))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    src = ImageFolderSource(tmp_path, loop=True, fps=0)
    with caplog.at_level("WARNING"):
        frames = [src.read() for _ in range(40)]
    assert all(f.shape == (120, 160, 3) for f in frames)
    assert len([r for r in caplog.records if "b.png" in r.getMessage()]) == 1


# -- robot side ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_receive_reports_the_real_cause(tmp_path):
    r = edgesr("receive", f"tcp://127.0.0.1:{free_port(socket.SOCK_STREAM)}", "--timeout", "1")
    assert r.returncode == 1 and "cannot connect" in r.stderr and "Traceback" not in r.stderr
    r = edgesr("receive", "serial:///dev/ttyUSB_edgesr_missing", "--timeout", "1")
    assert r.returncode == 1 and "cannot open /dev/ttyUSB_edgesr_missing" in r.stderr


@pytest.mark.slow
def test_receive_fps_excludes_the_final_wait_and_accepts_the_stream_url():
    from edgesr.engine import Engine
    from edgesr.pipeline import Pipeline
    from edgesr.sources import SyntheticSource
    from edgesr.transports import open_sink

    port = free_port(socket.SOCK_STREAM)
    pipe = Pipeline(SyntheticSource((64, 48), 10), Engine(TINY, threads=1), [open_sink(f"http://127.0.0.1:{port}")],
                    (64, 48)).start()
    threading.Timer(3.0, pipe.stop).start()
    r = edgesr("receive", f"http://127.0.0.1:{port}/stream", "--timeout", "3", "--no-upscale", timeout=60)
    s = json.loads(r.stdout)
    assert s["frames"] >= 10 and s["fps"] > 6, (s, r.stderr)  # (n-1)/(t_last-t_first), not over the 3 s wait


@pytest.mark.slow
def test_http_sink_serves_many_clients_and_drops_stalled_ones(photo, caplog):
    from edgesr.engine import Engine
    from edgesr.pipeline import Pipeline
    from edgesr.sources import SyntheticSource
    from edgesr.transports import open_sink

    port = free_port(socket.SOCK_STREAM)
    sink = open_sink(f"http://127.0.0.1:{port}")
    sink.client_timeout = 1.0
    pipe = Pipeline(SyntheticSource((160, 120), 20), Engine(TINY, threads=1), [sink], (160, 120)).start()
    try:
        def snap(_):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/snapshot.jpg", timeout=20) as resp:
                return resp.status, len(resp.read())
        t0 = time.monotonic()
        with ThreadPoolExecutor(200) as ex:
            res = list(ex.map(snap, range(200)))
        assert all(code == 200 and n > 1000 for code, n in res) and time.monotonic() - t0 < 20
        stalled = socket.socket()  # asks for the stream, never reads
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        early = socket.create_connection(("127.0.0.1", port))  # leaves at once
        early.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        early.close()
        with caplog.at_level("INFO"):
            t_end = time.monotonic() + 15
            while time.monotonic() < t_end and sink.server.stats["client_errors"] < 2:
                time.sleep(0.2)
        stalled.close()
        assert sink.server.stats["client_errors"] >= 2  # the stalled one timed out, the early one left
        assert sink.stats["client_frames_skipped"] > 0
        assert not any("Traceback" in r.getMessage() or r.exc_info for r in caplog.records)
    finally:
        pipe.stop()


# -- small ones ------------------------------------------------------------------------------------------------
def test_key_file_is_relative_to_the_config(tmp_path, monkeypatch):
    from edgesr import config as C

    (tmp_path / "link.key").write_bytes(b"0123456789abcdef")
    (tmp_path / "e.toml").write_text("[[sink]]\nurl = 'udp://127.0.0.1:5600'\nkey_file = 'link.key'\n")
    monkeypatch.chdir(ROOT)
    assert C.load(tmp_path / "e.toml").sinks[0].key == b"0123456789abcdef"
    with pytest.raises(ConfigError, match="key_file"):
        C.load(tmp_path / "e.toml", {"sink": [{"url": "udp://127.0.0.1:5600", "key_file": "none.key"}]})


@pytest.mark.slow
def test_bench_takes_scale_for_cardless_models(tmp_path):
    shutil.copy(TINY, tmp_path / "m.tflite")
    r = edgesr("bench", "--model", tmp_path / "m.tflite", "--scale", "2", "--seconds", "0.5", "--threads", "1",
               "--input-size", "64x48", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output_size"] == "128x96"
    one_line_error(edgesr("bench", "--model", tmp_path / "m.tflite", "--scale", "4", "--seconds", "0.5"),
                   "card says scale 4, the model upscales x2")


def _huge_png(path, w: int, h: int) -> None:
    """A real, complete w x h black PNG written row by row (the test never holds the image)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    z, row, idat = zlib.compressobj(9), b"\x00" + bytes(w * 3), []
    for _ in range(h):
        idat.append(z.compress(row))
    idat.append(z.flush())
    ihdr = struct.pack("!IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))


@pytest.mark.slow
def test_a_huge_image_is_refused_from_its_header(tmp_path):
    """12000x12000: refused before decoding (it took 16 s and 1.09 GB RSS when decoded first)."""
    big = tmp_path / "big.png"
    _huge_png(big, 12000, 12000)
    code = ("import resource, sys, time\nfrom edgesr.cli import main\nimport cv2, numpy\n"
            f"sys.argv = ['edgesr', 'upscale', {str(big)!r}, {str(tmp_path / 'o.png')!r}]\n"
            "rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "r0, t = rss(), time.monotonic()\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, time.monotonic() - t, rss() - r0)\n")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    exit_code, seconds, rss_mb = r.stdout.split()
    assert exit_code == "2" and "12000x12000 is over" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert float(seconds) < 0.5 and float(rss_mb) < 100  # the refusal itself, after the imports
