"""Run a TFLite SR model on RGB uint8 frames: backend choice, quantization, tiling (the per-frame work).

Backends: ``cpu`` (XNNPACK, N threads) and ``edgetpu`` (see ``edgesr.interpreter``); ``auto`` takes the Edge TPU
for Edge TPU-compiled models and falls back to the card's CPU twin with a warning when the accelerator is missing.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from .color import luma, with_chroma
from .errors import BackendError, InputError, ModelError
from .interpreter import BACKENDS, allocate_quietly, interpreter_api, is_edgetpu_model, open_interpreter
from .modelcard import ModelCard, load_card, resolve_model
from .tiling import Tiler
from .upscaler import check_frame

log = logging.getLogger("edgesr.engine")
ADAPTIVE_BATCH = 1  # tiles per invoke for a dynamic-shape model in adaptive mode (XNNPACK: batch 1 wastes nothing)
WHOLE_FRAME_MAX = 640 * 480  # LR pixels a dynamic model runs in one call; larger frames go in tiles (bounded memory)
BIG_TILE = 256               # LR tile interior for those frames


class Engine:
    """Upscales RGB uint8 frames with one model. Not thread-safe: one engine per thread."""

    def __init__(self, model: str | os.PathLike | None = None, backend: str = "auto", threads: int | None = None,
                 scale: int | None = None, texture_threshold: float = 0.0, texture_tile: int = 64,
                 whole_frame_max: int = WHOLE_FRAME_MAX, dtype: str = "auto", size: tuple[int, int] = (320, 240)):
        """``dtype``: 'auto' runs the faster of the model and its exact twin on this CPU (edgesr.twins: measured
        once at ``size`` (w, h), cached), 'int8' / 'float32' that twin, 'as-is' the file given."""
        if backend not in BACKENDS:
            raise BackendError(f"backend must be {', '.join(BACKENDS)}, not {backend!r}")
        path = resolve_model(None if model is None else str(model), scale or 4)
        self.threads = threads or os.cpu_count() or 1
        self.twin_choice: dict | None = None  # what edgesr.twins decided (dtype, measured ms, ratio), if a twin
        if backend != "edgetpu" and not is_edgetpu_model(path):
            from .twins import choose
            path, self.twin_choice = choose(path, dtype, self.threads, size)
        card = load_card(path)
        if card is None:
            if scale is None:
                raise ModelError(f"{path}: no model card ({path.with_suffix('.json').name}); pass --scale")
            card = ModelCard(name=path.stem, scale=scale)
        self.card: ModelCard = card
        self.interpreter_name = interpreter_api()[0]
        self.warning: str | None = None
        compiled = is_edgetpu_model(path)
        if backend == "edgetpu" and not compiled:
            raise BackendError(f"{path.name} is not compiled for the Edge TPU; run edgesr-convert compile, "
                               "or use --backend cpu")
        if compiled and backend in ("auto", "edgetpu"):
            try:
                self.interpreter = open_interpreter(path, edgetpu=True)
                self.backend = "edgetpu"
            except BackendError as e:
                twin = self.card.cpu_twin and path.with_name(self.card.cpu_twin)
                if backend == "edgetpu" or not twin or not twin.exists():
                    raise
                self.warning = f"{e}; falling back to the CPU model {twin.name}"
                log.warning(self.warning)
                path, self.card = twin, load_card(twin) or self.card
                compiled = False
        if compiled and backend == "cpu":
            raise BackendError(f"{path.name} is Edge TPU-compiled and cannot run on the CPU; use its CPU twin "
                               f"{self.card.cpu_twin or '(none named in the card)'}")
        if not compiled:
            self.interpreter = open_interpreter(path, self.threads)
            self.backend = "cpu"
        self.path = Path(path)
        self.scale = self.card.scale
        self._setup_io()
        if texture_threshold < 0 or not 8 <= texture_tile <= 1024:
            raise InputError("texture_threshold must be >= 0 and texture_tile 8..1024")
        self.texture_threshold = float(texture_threshold)  # > 0: adaptive tiles (edgesr.adaptive)
        self.texture_tile = int(texture_tile)               # LR tile interior for dynamic-shape models
        self.whole_frame_max = int(whole_frame_max)         # interpreter memory grows ~0.5 kB per LR pixel
        self.last_sr_fraction = 1.0                         # share of tiles the model ran on, last frame

    def _setup_io(self) -> None:
        it = self.interpreter
        if len(it.get_input_details()) != 1 or len(it.get_output_details()) != 1:
            raise ModelError(f"{self.path.name}: expected one input and one output tensor")
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        sig = list(i.get("shape_signature", i["shape"]))
        if len(sig) != 4 or sig[-1] not in (1, 3):
            raise ModelError(f"{self.path.name}: input shape {sig} is not [batch, h, w, 3] (RGB) "
                             "or [batch, h, w, 1] (Y)")
        self.channels = int(sig[-1])  # 1: a luminance model (edgesr.color); frames stay RGB for the caller
        self.dynamic = sig[1] < 0 or sig[2] < 0
        self.batch = max(int(i["shape"][0]), 1)
        self.tile = None if self.dynamic else (int(i["shape"][1]), int(i["shape"][2]))
        self._check_card(it, i, o)
        self.in_dtype, self.out_dtype = np.dtype(i["dtype"]), np.dtype(o["dtype"])
        self._in_index, self._out_index = i["index"], o["index"]
        self._in_lut = self._out_lut = None
        if self.in_dtype.kind in "iu":
            s, z = i["quantization"]
            vals = np.clip(np.round(np.arange(256) / 255.0 / s + z), np.iinfo(self.in_dtype).min,
                           np.iinfo(self.in_dtype).max)
            identity = self.in_dtype == np.uint8 and np.array_equal(vals, np.arange(256))
            self._in_lut = None if identity else vals.astype(self.in_dtype)
            self._in_identity = identity
        if self.out_dtype.kind in "iu":
            s, z = o["quantization"]
            info = np.iinfo(self.out_dtype)
            q = np.arange(info.min, info.max + 1)
            lut = np.clip(np.round((q - z) * s * 255.0), 0, 255).astype(np.uint8)
            # index by the raw byte: for int8, byte b holds value b - 256 when b >= 128
            self._out_lut = np.ascontiguousarray(np.roll(lut, info.min))
        self._in_scale = np.float32(1.0 / 255.0)
        self._tilers: dict = {}
        self._tile_buf: np.ndarray | None = None
        self._y_buf: np.ndarray | None = None  # Y models: the HR luminance buffer (_y_out)
        self._tiles_it: tuple | None = None
        self._shape: tuple[int, int] | None = None
        self.last_invoke_s = 0.0  # interpreter time of the last upscale() (bench splits Python vs model time)

    def _check_card(self, it, i, o) -> None:
        """The card must describe the model it sits beside: tile shape and scale from the real tensors."""
        name, c = self.path.name, self.card
        if c.tile is not None and tuple(c.tile) != self.tile:
            raise ModelError(f"{name}: card says tile {c.tile}, the model's input is "
                             f"{'dynamic' if self.dynamic else list(self.tile or ())}; fix the card's \"tile\"")
        if c.color != self.color:
            raise ModelError(f"{name}: card says color {c.color!r}, the model takes {self.channels} channel(s); "
                             "fix the card's \"color\"")
        h, w = self.tile or (16, 16)
        if self.dynamic:  # the real output shape: some ops (TRANSPOSE_CONV) know it only after an invoke
            it.resize_tensor_input(i["index"], [1, h, w, self.channels], strict=False)
            it.allocate_tensors()
            it.tensor(i["index"])()[...] = 0
            it.invoke()
            out = list(it.tensor(o["index"])().shape)
        else:
            out = [int(v) for v in o["shape"]]
        if len(out) != 4 or out[-1] != self.channels or out[1] % h or out[2] % w or out[1] // h != out[2] // w:
            raise ModelError(f"{name}: output shape {out} is not an integer upscale of input {h}x{w}x{self.channels}")
        if out[1] // h != c.scale:
            raise ModelError(f"{name}: card says scale {c.scale}, the model upscales x{out[1] // h}; "
                             "fix the card's \"scale\"")

    # -- per-frame path ---------------------------------------------------------------------------------
    def _to_input(self, src: np.ndarray, dst: np.ndarray) -> None:
        if self.in_dtype.kind == "f":
            np.multiply(src, self._in_scale, out=dst, dtype=dst.dtype, casting="unsafe")
        elif self._in_lut is None:
            dst[...] = src
        else:
            cv2.LUT(src, self._in_lut.view(np.uint8), dst=dst.view(np.uint8))

    def _from_output(self, src: np.ndarray, dst: np.ndarray) -> None:
        if self._out_lut is not None:  # one SIMD pass: raw byte -> pixel (int8 is read as its bit pattern)
            cv2.LUT(src.view(np.uint8), self._out_lut, dst=dst)
        else:  # one pass: 255*x, rounded, saturated to 0..255 (measured 3x faster than clamp + convert)
            cv2.addWeighted(src, 255.0, src, 0.0, 0.0, dst=dst, dtype=cv2.CV_8U)

    def _run_whole(self, frame: np.ndarray, out: np.ndarray) -> None:
        h, w = frame.shape[:2]
        it = self.interpreter
        if self._shape != (h, w):
            it.resize_tensor_input(self._in_index, [1, h, w, self.channels], strict=False)
            it.allocate_tensors()
            self._shape = (h, w)
        self._to_input(frame, it.tensor(self._in_index)()[0])
        t0 = time.perf_counter()
        it.invoke()
        self.last_invoke_s = time.perf_counter() - t0
        self._from_output(it.tensor(self._out_index)()[0], out)

    def _tiler(self, h: int, w: int, interior: int | None = None) -> Tiler:
        """Tiles for this frame size: the model's fixed tile, or ``interior`` (default texture_tile) + context."""
        m = self.card.margin
        tile = self.tile or ((interior or self.texture_tile) + 2 * m,) * 2
        tiler = self._tilers.pop((h, w, tile), None) or Tiler((h, w), tile, m, self.scale)
        self._tilers[(h, w, tile)] = tiler  # newest last; a few sizes kept (frame sizes come from the network)
        while len(self._tilers) > 8:
            self._tilers.pop(next(iter(self._tilers)))
        return tiler

    def _tile_interpreter(self, tile_hw):
        """The fixed-tile interpreter. A dynamic-shape model gets a second interpreter resized to
        [ADAPTIVE_BATCH, *tile] for adaptive tiles, so whole-frame runs keep theirs (no re-planning per frame)."""
        if not self.dynamic:
            return self.interpreter, self.batch
        if self._tiles_it is None or self._tiles_it[1] != tile_hw:
            it = open_interpreter(self.path, self.threads, allocate=False)
            it.resize_tensor_input(self._in_index, [ADAPTIVE_BATCH, *tile_hw, self.channels], strict=False)
            allocate_quietly(it, self.path)  # allocated once, at the tile shape
            self._tiles_it = (it, tile_hw)
        return self._tiles_it[0], ADAPTIVE_BATCH

    def _run_tiles(self, padded: np.ndarray, tiler: Tiler, indices, place) -> None:
        """Run the tiles ``indices`` in batches; ``place(tile_hr, i)`` receives each HR tile."""
        self.last_invoke_s = 0.0
        it, batch = self._tile_interpreter(tiler.tile_hw)
        shape = (tiler.tile_hw[0] * self.scale, tiler.tile_hw[1] * self.scale, self.channels)
        if self._tile_buf is None or self._tile_buf.shape != shape:  # one HR tile buffer, of this tiler's tile
            self._tile_buf = np.empty(shape, np.uint8)
        tile_hr = self._tile_buf
        for b0 in range(0, len(indices), batch):
            idx = indices[b0:b0 + batch]
            inp = it.tensor(self._in_index)()
            for j, i in enumerate(idx):
                self._to_input(tiler.crop(padded, i), inp[j])
            del inp
            t0 = time.perf_counter()
            it.invoke()
            self.last_invoke_s += time.perf_counter() - t0
            res = it.tensor(self._out_index)()
            for j, i in enumerate(idx):
                self._from_output(res[j], tile_hr)
                place(tile_hr, i)
            del res

    def _run_adaptive(self, frame: np.ndarray, out: np.ndarray) -> None:
        """Bicubic everywhere, then the model on textured tiles only, blended in (see edgesr.adaptive)."""
        from .adaptive import Blender, interiors, texture_scores

        h, w = frame.shape[:2]
        tiler = self._tiler(h, w)
        chosen = np.flatnonzero(texture_scores(frame, interiors(tiler)) > self.texture_threshold).tolist()
        if self.channels == 1:  # the rest runs on Y; with_chroma (in upscale) adds the colour
            frame, out = luma(frame), self._y_out(out)
        self.last_sr_fraction = len(chosen) / len(tiler)
        if self.dynamic and len(chosen) * np.prod(tiler.tile_hw) >= h * w and h * w <= self.whole_frame_max:
            self._run_whole(frame, out)  # so much texture that tiles would cost more than the whole frame
            return
        cv2.resize(frame, (w * self.scale, h * self.scale), dst=out, interpolation=cv2.INTER_CUBIC)
        self.last_invoke_s = 0.0
        if chosen:
            blender = Blender(tiler, chosen, self.card.margin)
            self._run_tiles(tiler.pad(frame), tiler, chosen, lambda t, i: blender.place(out, t, i))

    @property
    def color(self) -> str:
        """'y' for a luminance model, 'rgb' otherwise (what its card must say)."""
        return "y" if self.channels == 1 else "rgb"

    def _y_out(self, out: np.ndarray) -> np.ndarray:
        """The HR luminance buffer of a Y model (one per output size)."""
        shape = (*out.shape[:2], 1)
        if self._y_buf is None or self._y_buf.shape != shape:
            self._y_buf = np.empty(shape, np.uint8)
        return self._y_buf

    def upscale(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 HxWx3 -> RGB uint8 (sH)x(sW)x3. Pass ``out`` to reuse a buffer (no allocation).
        A Y model super-resolves luminance; chroma is resized (``edgesr.color.with_chroma``)."""
        out = check_frame(frame, self.scale, out)
        if self.card.color_order == "BGR":
            frame = frame[:, :, ::-1]
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        self.last_sr_fraction = 1.0
        if self.texture_threshold > 0:
            self._run_adaptive(frame, out)
        else:
            src, dst = (luma(frame), self._y_out(out)) if self.channels == 1 else (frame, out)
            if self.dynamic and h * w <= self.whole_frame_max:
                self._run_whole(src, dst)
            else:  # fixed-shape model, or a frame too big to run whole: tiles into the preallocated output
                tiler = self._tiler(h, w, max(8, min(BIG_TILE, min(h, w) - 2 * self.card.margin)))
                self._run_tiles(tiler.pad(src), tiler, range(len(tiler)), lambda t, i: tiler.place(dst, t, i))
        if self._y_buf is not None and self.channels == 1:
            with_chroma(self._y_buf, frame, out)
        if self.card.color_order == "BGR":
            out[...] = out[:, :, ::-1]
        return out

    def state(self) -> dict:
        """What ran on the last frame (pipeline /state and /metrics)."""
        return {"model": self.card.name, "sr_fraction": round(self.last_sr_fraction, 3)}

    def describe(self) -> dict:
        return {"model": self.path.name, "backend": self.backend, "twin_choice": self.twin_choice,
                "interpreter": self.interpreter_name,
                "threads": self.threads, "scale": self.scale, "tile": list(self.tile) if self.tile else None,
                "batch": self.batch, "color": self.color,
                "texture_threshold": self.texture_threshold, "input_dtype": str(self.in_dtype),
                "output_dtype": str(self.out_dtype)}
