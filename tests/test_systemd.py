"""The unit file is valid and hardened (systemd-analyze verify and security --offline)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

UNIT = ROOT / "systemd" / "edgesr.service"


def analyze():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze missing: .ci/run must install systemd")
        pytest.skip("systemd-analyze not installed")
    return exe


def test_unit_verifies(tmp_path):
    exe = analyze()
    edgesr = Path(sys.executable).with_name("edgesr")
    unit = tmp_path / "edgesr.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgesr/venv/bin/edgesr", str(edgesr)))
    r = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if "edgesr.service" in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_unit_exposure_at_most_2():
    exe = analyze()
    r = subprocess.run([exe, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for edgesr.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_has_the_contract():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "RestartPreventExitStatus=2", "DynamicUser=yes", "DevicePolicy=closed",
                 "ProtectSystem=strict", "ConfigurationDirectory=edgesr", "StateDirectory=edgesr"):
        assert line in text


def test_unit_starts_without_a_coral():
    """Only groups a plain Raspberry Pi OS image has; DeviceAllow names device classes or device nodes, never a
    folder (systemd rejects those); the Coral PCIe group comes from a drop-in."""
    text = UNIT.read_text()
    groups = next(line for line in text.splitlines() if line.startswith("SupplementaryGroups=")).split("=", 1)[1]
    assert set(groups.split()) <= {"video", "dialout", "plugdev", "render", "gpio", "i2c", "spi"}
    for line in text.splitlines():
        if line.startswith("DeviceAllow="):
            what = line.split("=", 1)[1].split()[0]
            assert what.startswith(("char-", "block-")) or (what.startswith("/dev/") and not Path(what).is_dir())
    dropin = ROOT / "firmware-configs" / "coral-pcie" / "apex.conf"
    assert "SupplementaryGroups=apex" in dropin.read_text()
