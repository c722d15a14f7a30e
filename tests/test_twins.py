"""edgesr.twins: the faster exact twin by measurement, cached per CPU, interpreter, files, threads and size."""
from __future__ import annotations

import json
import shutil

import pytest

from edgesr import twins
from edgesr.engine import Engine
from edgesr.errors import ModelError
from edgesr.modelcard import MODELS_DIR

PAIR = ("efdn_w16b2_x4_int8", "efdn_w16b2_x4_float32")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "twins.json"


@pytest.fixture()
def pair(tmp_path):
    for n in PAIR:
        for ext in ("tflite", "json"):
            shutil.copy(MODELS_DIR / f"{n}.{ext}", tmp_path / f"{n}.{ext}")
    return [tmp_path / f"{n}.tflite" for n in PAIR]


def test_a_forced_dtype_runs_that_twin(cache, pair):
    assert Engine(pair[0], dtype="float32", threads=1).card.dtype == "float32"
    assert Engine(pair[1], dtype="int8", threads=1).card.dtype == "int8"
    assert Engine(pair[0], dtype="as-is", threads=1).path == pair[0]
    assert not cache.exists()  # forcing measures nothing
    with pytest.raises(ModelError, match="has no float32 twin"):
        Engine("srgan_w32b3_x4_int8", dtype="float32")


def test_auto_measures_once_then_hits_the_cache(cache, pair, monkeypatch):
    calls = []
    real = twins.measure
    monkeypatch.setattr(twins, "measure", lambda *a, **k: calls.append(a) or real(*a, **k))
    e = Engine(pair[0], threads=1, size=(64, 48))
    t = e.twin_choice
    assert len(calls) == 1 and not t["cached"] and e.card.dtype == t["dtype"]
    ms = t["ms"]
    assert e.path.name == min(ms, key=ms.get) and t["ratio"] <= 1.0  # the faster one ran
    again = Engine(pair[1], threads=1, size=(64, 48))  # from either twin
    assert len(calls) == 1 and again.twin_choice["cached"] and again.path.name == e.path.name
    Engine(pair[0], threads=1, size=(80, 48))  # another size: measured
    assert len(calls) == 2 and len(json.loads(cache.read_text())) == 2


def test_a_changed_model_is_measured_again(cache, pair, monkeypatch):
    calls = []
    real = twins.measure
    monkeypatch.setattr(twins, "measure", lambda *a, **k: calls.append(a) or real(*a, **k))
    Engine(pair[0], threads=1, size=(64, 48))
    shutil.copy(MODELS_DIR / "srgan_w16b1_x4_float32.tflite", pair[1])  # new weights under the same name
    Engine(pair[0], threads=1, size=(64, 48))
    assert len(calls) == 2  # the files' contents are in the key: the stale entry is not used
    cache.write_text("{not json")
    Engine(pair[0], threads=1, size=(64, 48))  # a corrupt cache is measured again, not fatal
    assert len(calls) == 3


def test_a_twin_that_does_not_name_it_back_is_an_error(cache, pair):
    card = json.loads(pair[1].with_suffix(".json").read_text())
    card["twin"] = None
    pair[1].with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="does not name it back"):
        Engine(pair[0], threads=1)
