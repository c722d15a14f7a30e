"""edgesr.extras: one line naming the extra that installs a missing optional dependency, wherever it is needed."""
from __future__ import annotations

import sys

import pytest

from edgesr.errors import ConfigError
from edgesr.extras import have, need


@pytest.mark.parametrize("module,extra", [("av", "video"), ("zfec", "fec"), ("reedsolo", "fec"), ("zenoh", "robot")])
def test_a_missing_module_names_its_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as where it is not installed
    with pytest.raises(ConfigError, match=rf'the {extra} extra: pip install "edgesr\[{extra}\]" \(missing {module}\)'):
        need(module, "feature")
    assert not have(module)


def test_config_says_which_key_needs_it(monkeypatch, tmp_path):
    from edgesr import config

    monkeypatch.setitem(sys.modules, "zfec", None)
    with pytest.raises(ConfigError, match=r"sink\[0\]\.fec: FEC \(fec = \.\.\.\) needs the fec extra"):
        config.load(None, {"sink": [{"url": "udp://127.0.0.1:5600", "fec": 0.25}]})
    assert have("json") and need("json", "x").dumps([]) == "[]"
