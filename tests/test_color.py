"""Luminance models (edgesr.color + Engine): RGB in and out for the user, Y through the network."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgesr.color import luma, with_chroma
from edgesr.engine import Engine
from edgesr.errors import ModelError

from conftest import FIX


def _by_hand(path, y_lr: np.ndarray) -> np.ndarray:
    """The .tflite run directly on a Y plane: float [0,1] in, rounded uint8 out."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(i["index"], [1, *y_lr.shape[:2], 1])
    it.allocate_tensors()
    it.set_tensor(i["index"], (y_lr[None].astype(np.float32) / 255.0))
    it.invoke()
    return np.clip(np.round(it.get_tensor(o["index"])[0] * 255.0), 0, 255).astype(np.uint8)


def test_y_model_output_is_the_network_on_y_and_resized_chroma(photo):
    frame = np.ascontiguousarray(photo[300:360, 150:220])  # a colourful crop (chroma std 34 levels)
    eng = Engine(FIX / "tiny_x2_y_float32.tflite")
    assert eng.channels == 1 and eng.describe()["color"] == "y"
    out = eng.upscale(frame)
    assert out.shape == (120, 140, 3) and out.dtype == np.uint8
    y_net = _by_hand(FIX / "tiny_x2_y_float32.tflite", luma(frame))
    ycc = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)
    # Y of the output = the network's Y (up to the YCrCb -> RGB -> YCrCb round trip of 8-bit values)
    assert np.abs(ycc[:, :, 0].astype(int) - y_net[:, :, 0]).max() <= 2
    assert np.abs(ycc[:, :, 0].astype(int) - y_net[:, :, 0]).mean() < 0.6
    assert np.array_equal(out, with_chroma(y_net, frame))


def test_chroma_is_the_bilinear_resize():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # chroma that changes every pixel
    y = rng.integers(16, 236, (60, 80, 1), dtype=np.uint8)
    ycc = cv2.cvtColor(with_chroma(y, lr), cv2.COLOR_RGB2YCrCb).astype(int)
    want = cv2.resize(cv2.cvtColor(lr, cv2.COLOR_RGB2YCrCb), (80, 60), interpolation=cv2.INTER_LINEAR).astype(int)
    nearest = cv2.resize(cv2.cvtColor(lr, cv2.COLOR_RGB2YCrCb), (80, 60), interpolation=cv2.INTER_NEAREST)
    # medians: RGB saturation clips some of the random (Y, chroma) pairs, which no resize explains
    assert np.median(np.abs(ycc[..., 1:] - want[..., 1:])) <= 1
    assert np.median(np.abs(ycc[..., 1:] - nearest[..., 1:])) > 5
    assert np.median(np.abs(ycc[..., 0] - y[..., 0])) <= 1


@pytest.mark.parametrize("size", [(61, 45), (100, 130)])
def test_y_tiles_equal_whole(photo, size):
    frame = np.ascontiguousarray(photo[:size[0], :size[1]])
    whole = Engine(FIX / "tiny_x2_y_float32.tflite").upscale(frame)
    tiled = Engine(FIX / "tiny_x2_y_float32_tile.tflite").upscale(frame)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_y_model_adaptive_tiles(photo):
    frame = np.ascontiguousarray(photo[:240, :320])
    eng = Engine(FIX / "tiny_x2_y_float32.tflite", texture_threshold=10.0, texture_tile=24)
    out = eng.upscale(frame)
    assert out.shape == (480, 640, 3) and 0.2 < eng.last_sr_fraction < 0.8
    full = Engine(FIX / "tiny_x2_y_float32.tflite").upscale(frame)
    same = np.mean(np.all(out == full, axis=2))  # textured tiles come from the model, flat ones from bicubic
    assert 0.3 < same < 0.9


def test_card_color_must_match_the_model(tmp_path):
    import json
    import shutil

    for ext in ("tflite", "json"):
        shutil.copy(FIX / f"tiny_x2_y_float32.{ext}", tmp_path / f"m.{ext}")
    card = json.loads((tmp_path / "m.json").read_text())
    card["color"] = "rgb"
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="card says color 'rgb', the model takes 1 channel"):
        Engine(tmp_path / "m.tflite")
    card["color"] = "yuv"
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match='color must be "rgb" or "y"'):
        Engine(tmp_path / "m.tflite")
