"""edgesr.modelcard: a card with a key missing or of the wrong type is one line and exit 2 from every command."""
from __future__ import annotations

import json
import shutil
from dataclasses import fields

import pytest
from click.testing import CliRunner

from edgesr.cli import main
from edgesr.imageio import sample_frame, write_rgb
from edgesr.modelcard import MODELS_DIR, ModelCard

WRONG = {int: "four", float: "x", str: 7, bool: "yes", list: "abc", dict: 3}


def _model(tmp_path, card: dict):
    shutil.copy(MODELS_DIR / "efdn_w16b2_x4_int8.tflite", tmp_path / "m.tflite")
    (tmp_path / "m.json").write_text(json.dumps(card))
    return tmp_path / "m.tflite"


def _upscale(tmp_path, model):
    img = tmp_path / "in.png"
    if not img.exists():
        write_rgb(img, sample_frame((40, 32)))
    return CliRunner().invoke(main, ["upscale", str(img), str(tmp_path / "out.png"), "--model", str(model)])


def _one_line_or_ok(r):
    assert r.exit_code in (0, 2), r.output
    assert "Traceback" not in r.output and (r.exit_code == 0 or r.output.count("\n") == 1), r.output


@pytest.mark.parametrize("key", [f.name for f in fields(ModelCard)])
def test_each_key_dropped_or_of_the_wrong_type(tmp_path, key):
    card = json.loads((MODELS_DIR / "efdn_w16b2_x4_int8.json").read_text())
    dropped = {k: v for k, v in card.items() if k != key}
    r = _upscale(tmp_path, _model(tmp_path, dropped))
    _one_line_or_ok(r)
    if key in ("name", "scale"):
        assert r.exit_code == 2 and f"missing key '{key}'" in r.output
    hint = {f.name: f.type for f in fields(ModelCard)}[key]
    base = next((t for t in WRONG if t.__name__ in str(hint)), None)
    if base is None:
        return
    r = _upscale(tmp_path, _model(tmp_path, {**card, key: WRONG[base]}))
    assert r.exit_code == 2 and "Traceback" not in r.output and r.output.count("\n") == 1, r.output
    assert key in r.output


def test_serve_says_the_same_in_one_line(tmp_path):
    card = json.loads((MODELS_DIR / "efdn_w16b2_x4_int8.json").read_text())
    card.pop("name")
    model = _model(tmp_path, card)
    r = CliRunner().invoke(main, ["serve", "--source", "synthetic", "--model", str(model), "--sink",
                                  "udp://127.0.0.1:5999", "--duration", "1"])
    assert r.exit_code == 2 and "missing key 'name'" in r.output and r.output.count("\n") == 1, r.output
