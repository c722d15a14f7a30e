"""`topology = "auto"` on a link with a bit budget: choose what to send by measurement, not by a rule.

The device has the camera frame (HR). Every ``every_s`` seconds, and on a scene change, it scores each mode at the
robot (PSNR-Y against the HR frame, the LR ones upscaled with the device's own model) within the link's budget:

- ``hr`` / ``lr``: intra-only tiles of the frame itself / of its 1/scale downscale, encoded once at the highest
  quality that fits the per-frame budget;
- ``h264_hr`` / ``h264_lr``: H.264 streams (``edgesr.video``) of both. Their quality depends on the frames before,
  so both run on every frame (the unsent one as a shadow, decoded on the device): the score is exactly what the
  robot would show on a clean link. A switch to an H.264 mode starts with a self-contained (IDR) unit.

It switches only when another mode is ``hysteresis_db`` better (or the current one does not fit).
The link study found that the best mode depends on content, frame rate and bitrate together (README, the link
study on video), which is why it is measured.
"""
from __future__ import annotations

import collections
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


MODES = ("hr", "lr", "h264_hr", "h264_lr")


class ModeChooser:
    def __init__(self, upscaler, budget_bytes: float, codec: str = "webp", tile: int = 64, mtu: int = 1200,
                 every_s: float = 5.0, hysteresis_db: float = 0.3, scene_change: float = 12.0,
                 modes=("hr", "lr"), fps: float = 2.0, video_bitrate: float = 0.0):
        """``budget_bytes``: one frame's share of the link (tiles); ``video_bitrate``: what the H.264 streams
        may spend (bit/s, after headers and FEC); ``modes``: the candidates, a subset of MODES."""
        self.up, self.scale = upscaler, upscaler.scale
        self.budget, self.codec, self.tile, self.mtu = budget_bytes, codec, tile, mtu
        self.every_s, self.hysteresis_db, self.scene_change = every_s, hysteresis_db, scene_change
        self.modes, self.fps, self.video_bitrate = tuple(modes), fps, video_bitrate
        self.mode = "lr" if "lr" in self.modes else self.modes[-1]
        self.db, self.last_t, self.thumb = {m: None for m in self.modes}, None, None
        self.video: dict = {}   # mode -> H264Stream (made on the first frame)
        self.units: dict = {}   # mode -> this frame's H.264 unit
        self.previous = None    # the HR frame the streams' pictures show
        self.history = collections.deque(maxlen=4096)  # the mode of each recent frame
        self.quality: dict = {}  # tile mode -> the quality that fitted the budget at the last measurement
        self.stats = {"measurements": 0, "switches": 0, "measure_ms": 0.0, "video_ms": 0.0}

    def _thumb(self, hr: np.ndarray) -> np.ndarray:
        return cv2.resize(cv2.cvtColor(hr, cv2.COLOR_RGB2GRAY), (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)

    def due(self, hr: np.ndarray, now: float) -> bool:
        if self.last_t is None or now - self.last_t >= self.every_s:
            return True
        if now - self.last_t >= 1.0 and any(self.db.get(m) is None and st.recon is not None
                                            for m, st in self.video.items()):
            return True  # an H.264 stream has its first pictures: score it without waiting `every_s`
        return float(np.mean(np.abs(self._thumb(hr) - self.thumb))) > self.scene_change

    def _crop(self, hr: np.ndarray) -> np.ndarray:
        m = 2 * self.scale  # LR and HR both even (H.264)
        return np.ascontiguousarray(hr[:hr.shape[0] // m * m, :hr.shape[1] // m * m])

    def measure(self, hr: np.ndarray) -> dict:
        """PSNR-Y at the robot of each mode within the budget (None: does not fit)."""
        s, hr = self.scale, self._crop(hr)
        out = {}
        if "hr" in self.modes:
            fit = fit_quality(hr, self.budget, self.codec, self.tile * s, self.mtu)
            out["hr"] = round(psnr_y(delivered(fit[1]), hr, s), 3) if fit else None
            self.quality["hr"] = fit[0] if fit else 1
        if "lr" in self.modes:
            fit = fit_quality(downscale(hr, s), self.budget, self.codec, self.tile, self.mtu, scale=s, lr=True)
            out["lr"] = round(psnr_y(self.up.upscale(delivered(fit[1])), hr, s), 3) if fit else None
            self.quality["lr"] = fit[0] if fit else 1
        for m, st in self.video.items():  # the picture of the previous frame, against that frame
            pic = st.recon
            if pic is not None and self.previous is not None:
                out[m] = round(psnr_y(pic if m == "h264_hr" else self.up.upscale(pic), self.previous, s), 3)
            else:
                out[m] = None
        return out

    def image(self, hr: np.ndarray, mode: str) -> np.ndarray:
        """What ``mode`` sends of camera frame ``hr``."""
        hr = self._crop(hr)
        return downscale(hr, self.scale) if mode.endswith("lr") else hr

    def _encode(self, hr: np.ndarray, now: float, switched: bool) -> None:
        """Feed this frame to every H.264 stream; the chosen one starts with an IDR unit after a switch."""
        from .video import H264Stream

        t0 = time.perf_counter()
        hr = self._crop(hr)
        for m in (m for m in self.modes if m.startswith("h264")):
            img = self.image(hr, m)
            st = self.video.get(m)
            if st is None or st.size != (img.shape[1], img.shape[0]):
                st = self.video[m] = H264Stream(img.shape[1], img.shape[0], self.fps, self.video_bitrate, local=True)
                st.key_next()
            if switched and m == self.mode:
                st.key_next()
            self.units[m] = st.encode(img, int(now * 1000))
        self.previous = hr
        self.stats["video_ms"] = round(1000 * (time.perf_counter() - t0), 1)

    def choose(self, hr: np.ndarray, now: float | None = None) -> str:
        """The mode for this frame, one of ``modes`` (measuring first when due); H.264 units in ``units``."""
        now = time.monotonic() if now is None else now
        switched = False
        if self.due(hr, now):
            t0 = time.perf_counter()
            self.db = self.measure(hr)
            self.stats["measure_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            self.stats["measurements"] += 1
            self.last_t, self.thumb = now, self._thumb(hr)
            scored = [(db, m) for m, db in self.db.items() if db is not None]
            cur = self.db.get(self.mode)
            if scored:
                db, best = max(scored)
                if best != self.mode and (cur is None or db > cur + self.hysteresis_db):
                    self.mode, switched = best, True
                    self.stats["switches"] += 1
        self._encode(hr, now, switched)
        self.history.append(self.mode)
        return self.mode

    def state(self) -> dict:
        return {"mode": self.mode, "db": dict(self.db), **self.stats}


def attach(sink, upscaler, modes) -> ModeChooser:
    """Give a budgeted sink of topology 'measured' its chooser (tiles in the sink's codec; H.264 after headers and
    the sink's FEC share)."""
    sink.chooser = ModeChooser(upscaler, sink.rate.frame_budget / (1 + sink.fec), codec=sink.codec, tile=sink.tile,
                               mtu=sink.mtu, modes=modes, fps=sink.fps, video_bitrate=sink.video_bitrate())
    return sink.chooser
