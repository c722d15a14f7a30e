"""Runtime engine on real .tflite fixtures through the real interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from edgesr.engine import Engine
from edgesr.errors import BackendError, InputError, ModelError
from edgesr.tiling import Tiler, spans

from conftest import FIX


def crop(photo, h, w):
    return np.ascontiguousarray(photo[:h, :w])


@pytest.mark.parametrize("length,tile,margin", [(100, 20, 4), (20, 20, 4), (21, 20, 4), (257, 24, 5), (47, 16, 3)])
def test_spans_cover_each_pixel_once(length, tile, margin):
    seen = np.zeros(length, int)
    for s in spans(length, tile, margin):
        assert 0 <= s.src and s.src + tile <= max(length, tile)
        assert s.src <= s.lo < s.hi <= s.src + tile
        # interior only: context of `margin` px wherever the tile edge is inside the frame
        assert s.lo == 0 or s.lo - s.src >= margin
        assert s.hi == length or s.src + tile - s.hi >= margin
        seen[s.lo:s.hi] += 1
    assert (seen == 1).all()


def test_tile_too_small_for_margin():
    with pytest.raises(InputError, match="too small"):
        Tiler((100, 100), (8, 8), 4, 2)


@pytest.mark.parametrize("size", [(333, 257), (61, 45), (20, 24), (13, 9)])
def test_tiled_equals_whole_frame(photo, size):
    """Fixed 20x24 tiles stitched == the same weights run on the whole frame (dynamic shape)."""
    h, w = size
    frame = crop(photo, h, w)
    whole = Engine(FIX / "tiny_x2_float32.tflite").upscale(frame)
    tiled_eng = Engine(FIX / "tiny_x2_float32_tile.tflite")
    tiled = tiled_eng.upscale(frame)
    assert tiled.shape == (2 * h, 2 * w, 3) == whole.shape
    if h >= 20 and w >= 24:  # frames smaller than one tile are padded, so only their size is exact
        assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert tiled_eng.tile == (20, 24) and not tiled_eng.dynamic


def test_batched_tiles_match_single(photo):
    frame = crop(photo, 100, 130)
    b4 = Engine(FIX / "tiny_x2_float32_tile_b4.tflite")
    assert b4.batch == 4
    assert np.array_equal(b4.upscale(frame), Engine(FIX / "tiny_x2_float32_tile.tflite").upscale(frame))


@pytest.mark.parametrize("name,dtype,tol", [("tiny_x2_float16", "float32", 2), ("tiny_x2_int8_tile", "uint8", 6),
                                            ("tiny_x2_int8io_tile", "int8", 6)])
def test_io_dtypes_agree_with_float(photo, name, dtype, tol):
    frame = crop(photo, 64, 72)
    ref = Engine(FIX / "tiny_x2_float32.tflite").upscale(frame).astype(int)
    eng = Engine(FIX / f"{name}.tflite")
    assert eng.in_dtype == np.dtype(dtype)
    out = eng.upscale(frame).astype(int)
    # quantization error stays small on average; the model is far from identity/bicubic
    assert np.abs(out - ref).mean() < tol
    bic = np.repeat(np.repeat(frame, 2, 0), 2, 1).astype(int)
    assert np.abs(out - bic).mean() > 0.5


def test_out_buffer_is_reused_and_checked(photo):
    eng = Engine(FIX / "tiny_x2_int8_tile.tflite")
    frame = crop(photo, 50, 60)
    buf = np.zeros((100, 120, 3), np.uint8)
    assert eng.upscale(frame, out=buf) is buf
    with pytest.raises(InputError, match="out buffer"):
        eng.upscale(frame, out=np.zeros((10, 10, 3), np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), "frame"])
def test_bad_frames(bad):
    with pytest.raises(InputError, match="HxWx3 uint8"):
        Engine(FIX / "tiny_x2_float32.tflite").upscale(bad)


def test_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no such model"):
        Engine(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="no model card"):
        Engine(junk)
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        Engine(junk, scale=2)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        Engine(junk)
    (tmp_path / "junk.json").write_text('{"name": "x", "scale": 5}')
    with pytest.raises(ModelError, match="scale must be"):
        Engine(junk)
    (tmp_path / "junk.json").write_text('{"name": "x", "scale": 2, "colour": "RGB"}')
    with pytest.raises(ModelError, match="unknown key .colour."):
        Engine(junk)


def test_edgetpu_missing_falls_back_to_cpu_twin(photo):
    eng = Engine(FIX / "tiny_x2_edgetpu.tflite", backend="auto")
    assert eng.backend == "cpu" and eng.path.name == "tiny_x2_int8_tile.tflite"
    assert "libedgetpu" in eng.warning and "falling back" in eng.warning
    assert eng.upscale(crop(photo, 30, 40)).shape == (60, 80, 3)


def test_edgetpu_backend_forced_gives_clear_error():
    with pytest.raises(BackendError, match="Edge TPU unavailable: libedgetpu"):
        Engine(FIX / "tiny_x2_edgetpu.tflite", backend="edgetpu")
    with pytest.raises(BackendError, match="not compiled for the Edge TPU"):
        Engine(FIX / "tiny_x2_int8_tile.tflite", backend="edgetpu")
    with pytest.raises(BackendError, match="cannot run on the CPU"):
        Engine(FIX / "tiny_x2_edgetpu.tflite", backend="cpu")


def test_thread_count_and_describe():
    eng = Engine(FIX / "tiny_x2_float32.tflite", threads=1)
    d = eng.describe()
    assert d["threads"] == 1 and d["interpreter"] == "ai-edge-litert" and d["scale"] == 2


def test_frame_sizes_that_alternate_keep_their_own_tiles(photo):
    """Frames too big to run whole, of sizes whose tiles differ, one after another (a robot with two streams, or
    sizes from the network): each size gets its own tile buffer; the result does not depend on the order (a shared
    buffer once crashed here, found by benchmarks/fuzz_protocol.py)."""
    eng = Engine(None, threads=1, whole_frame_max=1000)
    a, b = np.ascontiguousarray(photo[:60, :90]), np.ascontiguousarray(photo[:40, :70])
    first = eng.upscale(a).copy()
    eng.upscale(b)
    assert np.array_equal(eng.upscale(a), first)
    for k in range(12):  # many sizes: the plans kept stay bounded
        eng.upscale(np.ascontiguousarray(photo[:40 + k, :70]))
    assert len(eng._tilers) <= 8
