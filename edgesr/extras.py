"""Optional dependencies: imported where they are used, with one line naming the extra that installs them."""
from __future__ import annotations

import importlib

from .errors import ConfigError

EXTRAS = {"av": "video", "zfec": "fec", "reedsolo": "fec"}  # the rest (zenoh, foxglove, mcap, rosbags): robot


def need(module: str, what: str):
    """Import ``module`` for ``what`` (a feature, e.g. 'H.264', 'ros2://'), or ConfigError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module.split(".")[0], "robot")
        raise ConfigError(f'{what} needs the {extra} extra: pip install "edgesr[{extra}]" (missing {module})') from None


def have(module: str) -> bool:
    """Whether ``module`` is importable here (no message)."""
    try:
        need(module, "")
        return True
    except ConfigError:
        return False
