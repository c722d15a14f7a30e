"""Adaptive tiles: the model runs on textured tiles only, bicubic elsewhere, a ramp between (real interpreter)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgesr.adaptive import interiors, texture_scores
from edgesr.engine import Engine
from edgesr.errors import InputError
from edgesr.tiling import Tiler

from conftest import FIX


@pytest.fixture
def half_flat(photo):
    """Real texture in the lower third, a flat wall (one colour) above it: 120x160."""
    f = np.ascontiguousarray(cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA))
    f[:80] = (118, 140, 150)
    return f


def test_scores_flat_zero_textured_high(half_flat):
    tiler = Tiler(half_flat.shape[:2], (40, 40), 4, 2)
    rects = interiors(tiler)
    sc = texture_scores(half_flat, rects)
    flat = [i for i, (y0, y1, _, _) in enumerate(rects) if y1 < 79]
    textured = [i for i, (y0, _, _, _) in enumerate(rects) if y0 > 81]
    assert flat and textured
    assert sc[flat].max() == 0
    assert sc[textured].min() > 2.0


@pytest.mark.parametrize("model", ["tiny_x2_float32.tflite", "tiny_x2_float32_tile_b4.tflite"])
def test_adaptive_regions(half_flat, model):
    """SR where textured (== the full model output), bicubic far from texture, and in between a blend that stays
    between the two (no seam can be brighter or darker than both neighbours' methods)."""
    eng = Engine(FIX / model, texture_tile=32)  # dynamic model: 32 + context per tile (fixed model: its own tile)
    full = eng.upscale(half_flat).copy()
    s = eng.scale
    bic = cv2.resize(half_flat, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    eng.texture_threshold = 1.0
    out = eng.upscale(half_flat)
    assert 0 < eng.last_sr_fraction < 1
    band = eng.card.margin
    # far from any texture (>= band + 1 LR rows above the first textured interior): exactly bicubic
    tiler = eng._tiler(*half_flat.shape[:2])
    top = min(y0 for (y0, _, _, _), sc in zip(interiors(tiler), texture_scores(half_flat, interiors(tiler)))
              if sc > 1.0)
    assert top >= band + 1
    np.testing.assert_array_equal(out[:(top - band - 1) * s], bic[:(top - band - 1) * s])
    # the textured lower part equals the full model (tile context == whole-frame context)
    low = np.abs(out[84 * s:].astype(int) - full[84 * s:])
    assert low.max() <= 1
    # the ramp: every pixel is within [min, max] of (SR, bicubic), +-1 level of rounding
    lo, hi = np.minimum(full, bic).astype(int) - 1, np.maximum(full, bic).astype(int) + 1
    assert ((out >= lo) & (out <= hi)).all()
    ramp = out[(top - band) * s:top * s].astype(int)
    assert np.abs(ramp - bic[(top - band) * s:top * s]).max() > 0  # the band is blended, not a hard cut


def test_threshold_zero_is_off_and_all_textured_equals_full(photo):
    f = np.ascontiguousarray(photo[200:296, 200:328])
    for model in ("tiny_x2_float32.tflite", "tiny_x2_float32_tile_b4.tflite"):
        eng = Engine(FIX / model, texture_tile=16)
        full = eng.upscale(f).copy()
        eng.texture_threshold = 1e-6  # every tile of a real photo has some gradient
        np.testing.assert_allclose(eng.upscale(f), full, atol=1)
        assert eng.last_sr_fraction == 1.0


def test_flat_frame_is_pure_bicubic():
    f = np.full((48, 64, 3), 90, np.uint8)
    eng = Engine(FIX / "tiny_x2_int8_tile.tflite", texture_threshold=0.5)
    out = eng.upscale(f)
    assert eng.last_sr_fraction == 0.0 and eng.last_invoke_s == 0.0
    np.testing.assert_array_equal(out, cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))


def test_bad_settings():
    with pytest.raises(InputError):
        Engine(FIX / "tiny_x2_float32.tflite", texture_threshold=-1)
    with pytest.raises(InputError):
        Engine(FIX / "tiny_x2_float32.tflite", texture_tile=2)
