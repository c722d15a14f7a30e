"""`topology = "auto"` on a link with a bit budget: choose what to send by measurement, not by a rule.

The device has the camera frame (HR). Every ``every_s`` seconds, and on a scene change, it encodes the frame both
ways within the link's per-frame budget -- the frame itself (``hr``) and its 1/scale downscale (``lr``) that the
robot will super-resolve -- decodes both, upscales the LR one with its own model, and compares both with the HR
frame (PSNR-Y). It switches only when the other mode is ``hysteresis_db`` better (or the current one does not fit).
The link study found that the best mode depends on content, frame rate and bitrate together (README, the link
study on video), which is why it is measured.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from .metrics import psnr_y
from .protocol import FrameAssembler, decode_packet
from .ratecontrol import fit_quality


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR frame the robot will get: INTER_AREA downscale by ``scale`` (any input size)."""
    h, w = hr.shape[:2]
    return cv2.resize(hr, (max(1, w // scale), max(1, h // scale)), interpolation=cv2.INTER_AREA)


def delivered(packets) -> np.ndarray:
    asm = FrameAssembler()
    return [f for p in packets for f in asm.add(decode_packet(p))][0].image


class ModeChooser:
    def __init__(self, upscaler, budget_bytes: float, codec: str = "webp", tile: int = 64, mtu: int = 1200,
                 every_s: float = 5.0, hysteresis_db: float = 0.3, scene_change: float = 12.0):
        self.up, self.scale = upscaler, upscaler.scale
        self.budget, self.codec, self.tile, self.mtu = budget_bytes, codec, tile, mtu
        self.every_s, self.hysteresis_db, self.scene_change = every_s, hysteresis_db, scene_change
        self.mode, self.db, self.last_t, self.thumb = "lr", {"hr": None, "lr": None}, None, None
        self.stats = {"measurements": 0, "switches": 0, "measure_ms": 0.0}

    def _thumb(self, hr: np.ndarray) -> np.ndarray:
        return cv2.resize(cv2.cvtColor(hr, cv2.COLOR_RGB2GRAY), (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)

    def due(self, hr: np.ndarray, now: float) -> bool:
        if self.last_t is None or now - self.last_t >= self.every_s:
            return True
        return float(np.mean(np.abs(self._thumb(hr) - self.thumb))) > self.scene_change

    def measure(self, hr: np.ndarray) -> dict:
        """PSNR-Y at the robot of each mode within the budget (None: does not fit)."""
        s = self.scale
        h, w = (hr.shape[0] // s) * s, (hr.shape[1] // s) * s
        hr = np.ascontiguousarray(hr[:h, :w])
        out = {}
        fit = fit_quality(hr, self.budget, self.codec, self.tile * s, self.mtu)
        out["hr"] = round(psnr_y(delivered(fit[1]), hr, s), 3) if fit else None
        lr = downscale(hr, s)
        fit = fit_quality(lr, self.budget, self.codec, self.tile, self.mtu, scale=s, lr=True)
        out["lr"] = round(psnr_y(self.up.upscale(delivered(fit[1])), hr, s), 3) if fit else None
        return out

    def choose(self, hr: np.ndarray, now: float | None = None) -> str:
        """'hr' or 'lr' for this frame (measuring first when due)."""
        now = time.monotonic() if now is None else now
        if self.due(hr, now):
            t0 = time.perf_counter()
            self.db = self.measure(hr)
            self.stats["measure_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            self.stats["measurements"] += 1
            self.last_t, self.thumb = now, self._thumb(hr)
            other = "hr" if self.mode == "lr" else "lr"
            cur, alt = self.db[self.mode], self.db[other]
            if alt is not None and (cur is None or alt > cur + self.hysteresis_db):
                self.mode = other
                self.stats["switches"] += 1
        return self.mode

    def state(self) -> dict:
        return {"mode": self.mode, "hr_db": self.db["hr"], "lr_sr_db": self.db["lr"], **self.stats}
