from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
SHARED = Path(os.environ.get("EDGESR_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def slow_steps(default: int) -> int:
    """Steps for @slow training tests: CI runs a bounded, reduced form (EDGESR_SLOW_STEPS)."""
    return int(os.environ.get("EDGESR_SLOW_STEPS", default))


@pytest.fixture(scope="session")
def set5() -> Path:
    p = DATA / "val" / "Set5"
    if not p.is_dir():
        pytest.fail(f"shared data missing at {p}: tests need ../shared/data (set EDGESR_SHARED)")
    return p


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo (Set14 'comic'-free: Set5 baby) as RGB uint8."""
    from edgesr.imageio import read_rgb
    return read_rgb(DATA / "val" / "Set5" / "baby.png")


def run_cli(*args, env=None, timeout=300):
    """Run a console entry point as a real process; returns CompletedProcess."""
    import subprocess
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=e)
