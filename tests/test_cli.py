"""`edgesr` CLI as real processes: happy paths and one-line errors with exit code 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgesr.imageio import read_rgb, write_rgb

from conftest import FIX, ROOT, run_cli

SAMPLE = ROOT / "edgesr" / "samples" / "nature_160x120.png"


def edgesr(*args, **kw):
    return run_cli("edgesr", *map(str, args), **kw)


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_upscale_image(tmp_path):
    out = tmp_path / "x.png"
    r = edgesr("upscale", SAMPLE, out, "--model", FIX / "tiny_x2_int8_tile.tflite", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert read_rgb(out).shape == (240, 320, 3)


def test_upscale_folder(tmp_path, photo):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", photo[:40, :50])
    write_rgb(src / "b.jpg", photo[:30, :20])
    (src / "notes.txt").write_text("not an image")
    r = edgesr("upscale", src, tmp_path / "out", "--model", FIX / "tiny_x2_float32.tflite")
    assert r.returncode == 0, r.stderr
    assert read_rgb(tmp_path / "out" / "a.png").shape == (80, 100, 3)
    assert read_rgb(tmp_path / "out" / "b.png").shape == (60, 40, 3)


def test_upscale_video_keeps_fps_and_frames(tmp_path, photo):
    import cv2

    src = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (48, 32))
    for i in range(7):
        w.write(np.ascontiguousarray(photo[i:i + 32, i:i + 48, ::-1]))
    w.release()
    out = tmp_path / "out.avi"
    r = edgesr("upscale", src, out, "--model", FIX / "tiny_x2_float32.tflite")
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        assert f.shape == (64, 96, 3)
        n += 1
    assert n == 7


@pytest.mark.slow
def test_models_info_bench():
    r = edgesr("info", FIX / "tiny_x2_int8_tile.tflite", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["inputs"][0]["dtype"] == "uint8" and d["inputs"][0]["shape"] == [1, 20, 24, 3]
    assert "CONV_2D" in d["ops"] and d["card"]["scale"] == 2 and d["edgetpu_compiled"] is False
    r = edgesr("bench", "--model", FIX / "tiny_x2_int8_tile.tflite", "--input-size", "64x48", "--seconds", "0.5",
               "--json")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    for k in ("model", "backend", "threads", "input_size", "output_size", "ms_median", "ms_p90", "fps_median",
              "bicubic_ms_median", "peak_rss_mb"):
        assert k in b
    assert b["output_size"] == "128x96" and b["ms_p90"] >= b["ms_median"] > 0 and b["frames"] >= 5
    r = edgesr("models", "--json")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list)


@pytest.mark.slow
def test_errors_are_one_line(tmp_path):
    model = FIX / "tiny_x2_float32.tflite"
    assert_one_line_error(edgesr("upscale", tmp_path / "nope.png", tmp_path / "o.png", "--model", model),
                          "nope.png", "no such file")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert_one_line_error(edgesr("upscale", bad, tmp_path / "o.png", "--model", model), "not a readable image")
    assert_one_line_error(edgesr("upscale", SAMPLE, tmp_path / "o.png", "--model", tmp_path / "m.tflite"),
                          "no such model")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x01" * 64)
    assert_one_line_error(edgesr("upscale", SAMPLE, tmp_path / "o.png", "--model", junk), "no model card")
    assert_one_line_error(edgesr("upscale", SAMPLE, tmp_path / "o.png", "--model", junk, "--scale", "2"),
                          "not a valid TFLite model")
    assert_one_line_error(edgesr("upscale", SAMPLE, tmp_path / "missing_dir" / "o.png", "--model", model),
                          "does not exist")
    assert_one_line_error(edgesr("upscale", SAMPLE, tmp_path / "o.xyz", "--model", model), "cannot encode")
    vid = tmp_path / "v.mp4"
    vid.write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    assert_one_line_error(edgesr("upscale", vid, tmp_path / "o.mp4", "--model", model), "cannot decode video")
    assert_one_line_error(edgesr("info", junk), "not a valid TFLite model")
    r = edgesr("upscale", SAMPLE, tmp_path / "o.png", "--model", FIX / "tiny_x2_edgetpu.tflite", "--backend", "edgetpu")
    assert_one_line_error(r, "Edge TPU unavailable", "libedgetpu")
    # nothing half-written is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "junk.tflite", "v.mp4"]


def test_unwritable_output(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = edgesr("upscale", SAMPLE, ro / "o.png", "--model", FIX / "tiny_x2_float32.tflite")
    ro.chmod(0o700)
    import os
    if os.geteuid() == 0:  # root ignores directory permissions; the path is then writable
        assert r.returncode == 0
    else:
        assert_one_line_error(r, "not writable")


def test_readme_first_command_default_model_beats_bicubic(tmp_path):
    """`edgesr upscale` with no --model uses the shipped real-time x4 model (int8, or its float32 twin where that
    is faster: edgesr.twins); on the shipped sample it
    must be clearly better than MATLAB bicubic against the 640x480 original."""
    from edgesr.metrics import imresize, psnr_y

    out = tmp_path / "x4.png"
    r = edgesr("upscale", SAMPLE, out)
    assert r.returncode == 0, r.stderr
    assert "efdn_w16b2_x4_int8" in r.stderr or "efdn_w16b2_x4_float32" in r.stderr  # or its faster exact twin
    hr = read_rgb(ROOT / "edgesr" / "samples" / "nature_640x480.png")
    sr = read_rgb(out)
    gain = psnr_y(sr, hr, 4) - psnr_y(imresize(read_rgb(SAMPLE), 4), hr, 4)
    assert gain > 0.5, gain


def test_models_lists_shipped_defaults():
    r = edgesr("models", "--json")
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert rows["efdn_w16b2_x4_int8"]["default"] and rows["srgan_w16b1_x2_int8"]["default"]
    assert not rows["srgan_w16b1_x4_int8"]["default"]
    assert rows["efdn_w16b2_x4_int8"]["set5_psnr_y"] > rows["srgan_w16b1_x4_int8"]["set5_psnr_y"] > 29.5


@pytest.mark.slow
def test_upscale_texture_threshold(tmp_path):
    """--texture-threshold is wired through: 255 leaves no tile textured enough (pure OpenCV bicubic), 0 runs the
    model everywhere, and a middle value gives something between."""
    import cv2

    src = ROOT / "edgesr" / "samples" / "nature_160x120.png"
    outs = {}
    for thr in ("0", "12", "255"):
        r = edgesr("upscale", src, tmp_path / f"t{thr}.png", "--texture-threshold", thr)
        assert r.returncode == 0, r.stderr
        outs[thr] = read_rgb(tmp_path / f"t{thr}.png")
    lr = read_rgb(src)
    np.testing.assert_array_equal(outs["255"], cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC))
    assert not np.array_equal(outs["0"], outs["255"])
    assert not np.array_equal(outs["12"], outs["0"]) and not np.array_equal(outs["12"], outs["255"])
    r = edgesr("upscale", src, tmp_path / "x.png", "--texture-threshold", "-1")
    assert r.returncode == 2 and "--texture-threshold" in r.stderr and "Traceback" not in r.stderr


def test_serve_help_and_the_config_agree_on_topologies():
    import re

    from click.testing import CliRunner

    from edgesr.cli import main
    from edgesr.config import SinkConfig, resolve_topology
    from edgesr.encoder import TOPOLOGIES

    text = " ".join(CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output.split())
    choices = re.search(r"--topology \[([a-z|]+)\]", text).group(1).split("|")
    assert choices == ["auto", *TOPOLOGIES]
    for url, bitrate in (("serial:///dev/ttyUSB0", 0), ("udp://10.0.0.2:5600", 57600), ("udp://10.0.0.2:5600", 0)):
        resolved = resolve_topology(SinkConfig(url=url, topology="auto", bitrate=bitrate))
        link = "serial" if url.startswith("serial") else "--bitrate" if bitrate else "otherwise"
        said = re.search(r"auto: (\w+) for serial and --bitrate links, (\w+) otherwise", text)
        assert said.group(1 if link != "otherwise" else 2) == resolved
