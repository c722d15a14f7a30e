"""serve configuration: TOML validated into dataclasses, one-line errors naming the key, exit code 2."""
from __future__ import annotations

import pytest

from edgesr import config as C
from edgesr.errors import ConfigError

from conftest import ROOT, run_cli

GOOD = """
[source]
url = "synthetic"
width = 160
height = 120
fps = 15

[model]
name = "srgan_w16b1_x4_int8"
threads = 2

[[sink]]
url = "udp://127.0.0.1:5600"
bitrate = 250000

[[sink]]
url = "serial:///dev/ttyUSB0?baud=57600"
topology = "receiver"
"""


def write(tmp_path, text):
    p = tmp_path / "edgesr.toml"
    p.write_text(text)
    return p


def test_good_config(tmp_path):
    cfg = C.load(write(tmp_path, GOOD))
    assert cfg.source.width == 160 and cfg.source.fps == 15.0 and cfg.model.threads == 2
    assert [s.topology for s in cfg.sinks] == ["auto", "receiver"] and cfg.sinks[0].bitrate == 250000


@pytest.mark.parametrize("edit,needle", [
    (("width = 160", "widht = 160"), "source: unknown key 'widht'"),
    (("fps = 15", 'fps = "fast"'), "source.fps: expected float, got str"),
    (("threads = 2", "threads = true"), "model.threads: expected int, got bool"),
    (('topology = "receiver"', 'topology = "robot"'), "sink[1].topology must be 'auto', 'source' or"),
    (('url = "udp://127.0.0.1:5600"', 'url = "udp://nohostport"'), "expected udp://HOST:PORT"),
    (('url = "udp://127.0.0.1:5600"', 'url = "ftp://x:1"'), "unsupported scheme 'ftp'"),
    (("width = 160", "width = 8"), "source.width/height must be 16..4096"),
    (("[model]", "[modle]"), "unknown key 'modle'"),
    (("bitrate = 250000", "bitrate = -5"), "bitrate must be >= 0"),
    (("fps = 15", "fps = 15\nloop = 1"), "source.loop: expected bool"),
    (("[[sink]]", "[sinks]"), "unknown key 'sinks'"),
])
def test_bad_configs(tmp_path, edit, needle):
    with pytest.raises(ConfigError, match=None) as e:
        C.load(write(tmp_path, GOOD.replace(*edit, 1)))
    assert needle in str(e.value)


def test_not_toml_and_missing(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load(write(tmp_path, "[source\nurl=1"))
    with pytest.raises(ConfigError, match="no such config file"):
        C.load(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match=r"no \[\[sink\]\] configured"):
        C.load(write(tmp_path, "[source]\nurl = 'synthetic'\n"))


@pytest.mark.parametrize("args,needle", [
    (["--config", "CFG"], "unknown key 'qualty'"),
    (["--sink", "udp://127.0.0.1:5999", "--model", "nonexistent_model"], "no such model file or shipped model"),
    (["--config", "SRCCFG"], "source.url: /nonexistent/video.mp4: no such file or folder (waited 0.3 s"),
    (["--config", "DEVCFG"], "sink[0].url: /dev/ttyUSB_edgesr_missing: no such device (waited 0.3 s"),
])
def test_serve_cli_errors(tmp_path, args, needle):
    cfg = write(tmp_path, GOOD.replace("bitrate = 250000", "qualty = 3"))
    dev = tmp_path / "dev.toml"
    dev.write_text("device_wait = 0.3\n[source]\nurl = 'synthetic'\n[[sink]]\n"
                   "url = 'serial:///dev/ttyUSB_edgesr_missing?baud=57600'\n")
    src = tmp_path / "src.toml"  # a missing video file is treated like a missing camera: exit 2 after the wait
    src.write_text("device_wait = 0.3\n[source]\nurl = '/nonexistent/video.mp4'\n[[sink]]\nurl = 'udp://127.0.0.1:5999'\n")
    args = [str({"CFG": cfg, "DEVCFG": dev, "SRCCFG": src}[a]) if a in ("CFG", "DEVCFG", "SRCCFG") else a for a in args]
    r = run_cli("edgesr", "serve", *args, "--health", "", timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert needle in r.stderr.strip().splitlines()[-1]


def test_shipped_profiles_validate():
    profiles = sorted((ROOT / "firmware-configs").glob("*/edgesr.toml"))
    for p in profiles:
        C.load(p)
    assert {p.parent.name for p in profiles} >= {"raspberry-pi-4", "raspberry-pi-5", "coral-usb", "coral-pcie",
                                                "coral-devboard"}


@pytest.mark.parametrize("url,bitrate,expected", [("udp://h:1", 0, "source"), ("udp://h:1", 250000, "measured"),
                                                  ("serial:///dev/ttyUSB0", 0, "measured"),
                                                  ("http://0.0.0.0:8080", 100000, "source")])
def test_auto_topology_measures_on_budgeted_links(url, bitrate, expected):
    assert C.resolve_topology(C.SinkConfig(url=url, bitrate=bitrate)) == expected
    assert C.resolve_topology(C.SinkConfig(url=url, bitrate=bitrate, topology="source")) == "source"


def test_receiver_fec_wait(tmp_path):
    """[receiver] fec_wait reaches the robot's frame assembler; out of range is a one-line error."""
    from edgesr.linksim import free_port
    from edgesr.receiver import Receiver

    p = tmp_path / "robot.toml"
    p.write_text("[receiver]\nurl = 'udp://127.0.0.1:5600'\nfec_wait = 2\n")
    assert C.load_receiver(p).fec_wait == 2.0
    p.write_text("[receiver]\nfec_wait = 120\n")
    with pytest.raises(ConfigError, match="receiver.fec_wait must be 0..60 seconds, got 120"):
        C.load_receiver(p)
    for wait, waits in ((2.0, True), (0.0, False)):
        rx = Receiver(f"udp://127.0.0.1:{free_port()}", upscale=False, fec_wait=wait)
        try:
            assert rx.assembler.hold_s == wait and (rx.assembler.recovery is not None) == waits
        finally:
            rx.close()
