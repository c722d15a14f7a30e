"""Texture-adaptive upscaling: the model runs only on tiles with texture; flat tiles (floor, wall, sky) get
OpenCV bicubic, and a ramp of ``band`` LR pixels blends model output into bicubic where the two meet.

A tile's score is the mean absolute luma gradient of its LR interior (3x3 Sobel, in 8-bit levels per pixel),
read from one integral image. Tiles whose score exceeds the threshold are SR tiles. The ramp weight of a pixel
falls linearly with its distance from the nearest SR interior (1 inside, 0 at ``band + 1`` px); the model's
output there is still inside its tile (``band <= margin``), so the blend has real model pixels on both sides.
"""
from __future__ import annotations

import cv2
import numpy as np

from .tiling import Tiler


def interiors(tiler: Tiler) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) LR rectangle each tile writes, clipped to the frame."""
    h, w = tiler.frame_hw
    return [(y.lo, min(y.hi, h), x.lo, min(x.hi, w)) for y, x in tiler.tiles]


def texture_scores(frame: np.ndarray, rects) -> np.ndarray:
    """Mean |d/dx| + |d/dy| of the luma over each rectangle (8-bit levels per pixel)."""
    gray = frame[:, :, 0] if frame.shape[2] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    gx, gy = cv2.spatialGradient(gray)  # 3x3 Sobel: 8x a unit step, scaled back below
    energy = cv2.add(cv2.convertScaleAbs(gx, alpha=0.125), cv2.convertScaleAbs(gy, alpha=0.125))
    ii = cv2.integral(energy, sdepth=cv2.CV_32S).astype(np.int64)
    r = np.array(rects, np.int64).reshape(-1, 4)
    y0, y1, x0, x1 = r.T
    sums = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    return (sums / np.maximum((y1 - y0) * (x1 - x0), 1)).astype(np.float32)


class Blender:
    """Places SR tile outputs into a bicubic frame: interiors copied, ``band`` px around them ramped."""

    def __init__(self, tiler: Tiler, chosen, band: int):
        self.tiler, self.band, self.s = tiler, band, tiler.scale
        self.rects = interiors(tiler)
        h, w = tiler.frame_hw
        inside = np.zeros((h, w), np.uint8)
        for i in chosen:
            y0, y1, x0, x1 = self.rects[i]
            inside[y0:y1, x0:x1] = 1
        dist = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        # the ramp; 0 inside other SR interiors, which their own tile places
        self.weight = np.clip(1.0 - dist / (band + 1), 0.0, 1.0).astype(np.float32) * (1 - inside)

    def place(self, out: np.ndarray, tile_out: np.ndarray, i: int) -> None:
        t = self.tiler
        t.place(out, tile_out, i)
        if self.band <= 0:
            return
        y0, y1, x0, x1 = self.rects[i]
        ty, tx = t.tiles[i][0].src, t.tiles[i][1].src
        th, tw = t.tile_hw
        h, w = t.frame_hw
        ey0, ey1 = max(y0 - self.band, ty, 0), min(y1 + self.band, ty + th, h)
        ex0, ex1 = max(x0 - self.band, tx, 0), min(x1 + self.band, tx + tw, w)
        s = self.s
        for ry0, ry1 in ((ey0, y0), (y0, y1), (y1, ey1)):
            for rx0, rx1 in ((ex0, x0), (x0, x1), (x1, ex1)):
                if ry0 >= ry1 or rx0 >= rx1 or (ry0 == y0 and rx0 == x0):
                    continue  # empty strip, or the interior itself
                wl = self.weight[ry0:ry1, rx0:rx1]
                if not wl.any():
                    continue
                whr = cv2.resize(wl, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
                dst = out[ry0 * s:ry1 * s, rx0 * s:rx1 * s]
                src = tile_out[(ry0 - ty) * s:(ry1 - ty) * s, (rx0 - tx) * s:(rx1 - tx) * s]
                dst[...] = cv2.blendLinear(src, dst, whr, 1.0 - whr).reshape(dst.shape)  # 1-channel (Y) too
