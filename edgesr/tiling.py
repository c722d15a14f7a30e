"""Fixed-shape tiles with overlap and seam-free stitching (the Edge TPU needs static shapes).

Tiles step by ``tile - 2*margin``; each contributes only its interior (``margin`` LR pixels of context are
dropped on every side that is inside the frame). Tiles at the frame edge sit flush with it, so the model's own
zero padding there is the same as in a whole-frame run and the stitched result equals the whole-frame output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Span:
    src: int      # first input row/col of the tile
    lo: int       # first row/col of the frame this tile writes
    hi: int       # one past the last


def spans(length: int, tile: int, margin: int) -> list[Span]:
    """1-D tile placement covering ``length`` (>= tile) with interiors that abut exactly."""
    if tile <= 2 * margin:
        raise InputError(f"tile {tile} is too small for a context margin of {margin} px on each side")
    if length <= tile:
        return [Span(0, 0, length)]
    step = tile - 2 * margin
    starts = list(range(0, length - tile, step)) + [length - tile]
    out, covered = [], 0
    for s in starts:
        hi = s + tile if s + tile == length else s + tile - margin
        if hi > covered:
            out.append(Span(s, covered, hi))
            covered = hi
    return out


class Tiler:
    """Plans tiles for one frame size and stitches tile outputs into a preallocated HR frame."""

    def __init__(self, frame_hw: tuple[int, int], tile_hw: tuple[int, int], margin: int, scale: int):
        self.frame_hw, self.tile_hw, self.scale = tuple(frame_hw), tuple(tile_hw), scale
        h, w = frame_hw
        th, tw = tile_hw
        # frames smaller than a tile are padded (edge replicate) up to the tile size
        self.padded_hw = (max(h, th), max(w, tw))
        ys, xs = spans(self.padded_hw[0], th, margin), spans(self.padded_hw[1], tw, margin)
        self.tiles = [(y, x) for y in ys for x in xs]

    def __len__(self) -> int:
        return len(self.tiles)

    def pad(self, frame: np.ndarray) -> np.ndarray:
        h, w = self.frame_hw
        ph, pw = self.padded_hw
        if (ph, pw) == (h, w):
            return frame
        return np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")

    def crop(self, frame: np.ndarray, i: int) -> np.ndarray:
        y, x = self.tiles[i]
        th, tw = self.tile_hw
        return frame[y.src:y.src + th, x.src:x.src + tw]

    def place(self, out: np.ndarray, tile_out: np.ndarray, i: int) -> None:
        """Copy tile ``i``'s interior from its HR output into ``out`` (HR frame, unpadded size)."""
        y, x = self.tiles[i]
        s = self.scale
        h, w = self.frame_hw
        lo_y, hi_y, lo_x, hi_x = y.lo, min(y.hi, h), x.lo, min(x.hi, w)
        if lo_y >= hi_y or lo_x >= hi_x:
            return
        out[lo_y * s:hi_y * s, lo_x * s:hi_x * s] = tile_out[(lo_y - y.src) * s:(hi_y - y.src) * s,
                                                              (lo_x - x.src) * s:(hi_x - x.src) * s]
