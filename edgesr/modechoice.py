"""`topology = "auto"` on a link with a bit budget: choose what to send by measurement, not by a rule.

The device has the camera frame (HR). Every ``every_s`` seconds, and on a scene change, it scores each mode at the
robot (PSNR-Y against the HR frame, the LR ones upscaled with the device's own model) within the link's budget:

- ``hr`` / ``lr``: intra-only tiles of the frame itself / of its 1/scale downscale, encoded once at the highest
  quality that fits the per-frame budget;
- ``h264_hr`` / ``h264_lr``: H.264 streams (``edgesr.video``) of both. Their quality depends on the frames before,
  so both run on every frame (the unsent one as a shadow, decoded on the device): the score is exactly what the
  robot would show on a clean link. A switch to an H.264 mode starts with a self-contained (IDR) unit.

Scores are smoothed over measurements (the mean of the last two: an H.264 picture's quality swings ~1 dB with the
refresh sweep). It switches only when another mode is ``hysteresis_db`` better (or the current one does not fit),
``video_hysteresis_db`` when the switch involves an H.264 mode (entering one costs an IDR unit; 3 dB on a link
that loses packets, LOSSY_VIDEO_HYSTERESIS_DB).
The link study found that the best mode depends on content, frame rate and bitrate together
(docs/link-studies.md: the link study on video), which is why it is measured.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from .assembly import FrameAssembler
from .metrics import psnr_y
from .protocol import decode_packet
from .ratecontrol import fit_quality


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR frame the robot will get: INTER_AREA downscale by ``scale`` (any input size)."""
    h, w = hr.shape[:2]
    return cv2.resize(hr, (max(1, w // scale), max(1, h // scale)), interpolation=cv2.INTER_AREA)


def delivered(packets) -> np.ndarray:
    asm = FrameAssembler()
    return [f for p in packets for f in asm.add(decode_packet(p))][0].image


MODES = ("hr", "lr", "h264_hr", "h264_lr")
# an H.264 stream is scored SETTLE_S seconds and SETTLE_FRAMES units after its IDR: its picture is still building
# up before (19.2 kbit/s, 2 fps, 5 % loss: scored after 2 s, `auto` left H.264 HR for LR + SR while HR was still
# rising and came back through another IDR: 31.1 dB; after 5 s / 10 frames 33.1)
SETTLE_S, SETTLE_FRAMES = 5.0, 10
# On a link that loses packets (the sink sends parity) entering an H.264 mode needs 3 dB, not 1: its IDR is the unit
# a loss hurts most and the picture builds up again. 19.2 kbit/s, 2 fps, 5 % loss, three 13 s segments of the
# shared clip, 5 draws: with 1 dB `auto` went to LR + SR at a scene change and made 33.17 / 31.75 / 31.18 dB (one
# draw showed 16 dB for 8 s after a loss in the new stream); with 3 dB it stayed on H.264 HR: 32.85 / 33.22 / 32.68.
VIDEO_HYSTERESIS_DB, LOSSY_VIDEO_HYSTERESIS_DB = 1.0, 3.0


class ModeChooser:
    def __init__(self, upscaler, budget_bytes: float, codec: str = "webp", tile: int = 64, mtu: int = 1200,
                 every_s: float = 5.0, hysteresis_db: float = 0.3, video_hysteresis_db: float = VIDEO_HYSTERESIS_DB,
                 scene_change: float = 12.0,
                 modes=("hr", "lr"), fps: float = 2.0, video_bitrate: float = 0.0, refresh_s: float = 10.0,
                 video_mtu: int | None = None):
        """``budget_bytes``: one frame's share of the link (tiles); ``video_bitrate``: what the H.264 streams
        may spend (bit/s, after headers and FEC), in packets of ``video_mtu``; ``modes``: the candidates, a
        subset of MODES."""
        self.video_mtu = video_mtu or mtu
        self.up, self.scale = upscaler, upscaler.scale
        self.budget, self.codec, self.tile, self.mtu = budget_bytes, codec, tile, mtu
        self.every_s, self.hysteresis_db, self.scene_change = every_s, hysteresis_db, scene_change
        self.video_hysteresis_db = video_hysteresis_db
        self.modes, self.fps, self.video_bitrate, self.refresh_s = tuple(modes), fps, video_bitrate, refresh_s
        # with H.264 candidates, H.264 HR is sent from the first frame (its IDR: the robot has pictures at once);
        # the first measurement comes after it settled (SETTLE_S) and moves away from it like any other
        self.mode = None if any(m.startswith("h264") for m in self.modes) else "lr" if "lr" in self.modes \
            else self.modes[-1]
        self.db: dict[str, float | None] = {m: None for m in self.modes}
        self.last_t: float | None = None
        self.thumb: np.ndarray | None = None
        self.fresh = False
        self.video: dict = {}   # mode -> H264Stream (made on the first frame)
        self.units: dict = {}   # mode -> this frame's H.264 unit
        self.start_t: float = 0.0  # first frame's time (set by the first choose()); then when a new stream started
        self.started = False
        self.pending: str | None = None  # an H.264 mode to enter at the next frame
        self.quality: dict = {}  # tile mode -> the quality that fitted the budget at the last measurement
        self.stats = {"measurements": 0, "switches": 0, "measure_ms": 0.0, "video_ms": 0.0}

    def _thumb(self, hr: np.ndarray) -> np.ndarray:
        return cv2.resize(cv2.cvtColor(hr, cv2.COLOR_RGB2GRAY), (32, 18),
                          interpolation=cv2.INTER_AREA).astype(np.float32)

    def due(self, hr: np.ndarray, now: float) -> bool:
        if self.video and now - self.start_t < max(SETTLE_S, SETTLE_FRAMES / self.fps):
            return False  # after an IDR an H.264 picture builds up for seconds: not scored while it does
        if self.last_t is None or now - self.last_t >= self.every_s:
            return True
        self.fresh = self.thumb is not None and \
            float(np.mean(np.abs(self._thumb(hr) - self.thumb))) > self.scene_change
        return self.fresh  # a new scene: its scores replace the old ones instead of averaging with them

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
        for m, st in self.video.items():  # this frame as the robot would show it
            out[m] = None if st.recon is None else \
                round(psnr_y(st.recon if m == "h264_hr" else self.up.upscale(st.recon), hr, s), 3)
        return out

    def image(self, hr: np.ndarray, mode: str) -> np.ndarray:
        """What ``mode`` sends of camera frame ``hr``."""
        hr = self._crop(hr)
        return downscale(hr, self.scale) if mode.endswith("lr") else hr

    def _encode(self, hr: np.ndarray, now: float) -> None:
        """Feed this frame to every H.264 stream (each decoded on the device: ``recon``)."""
        from .video import stream_for

        t0 = time.perf_counter()
        for m in (m for m in self.modes if m.startswith("h264")):
            img = self.image(hr, m)
            st = self.video[m] = stream_for(self.video.get(m), img, fps=self.fps, bitrate=self.video_bitrate,
                                            local=True, mtu=self.video_mtu, refresh_s=self.refresh_s)
            self.units[m] = st.encode(img, int(now * 1000))
        self.stats["video_ms"] = round(1000 * (time.perf_counter() - t0), 1)

    def choose(self, hr: np.ndarray, now: float | None = None) -> str | None:
        """The mode for this frame, one of ``modes`` (measuring first when due); H.264 units in ``units``.
        Entering an H.264 mode takes effect at the next frame, whose unit is an IDR."""
        now = time.monotonic() if now is None else now
        if not self.started:
            self.started, self.start_t = True, now
            if self.mode is None:  # H.264 HR: with x264 tuned for fidelity the video study measured it best
                self.mode = "h264_hr" if "h264_hr" in self.modes else "h264_lr"  # in every cell of the clip
        if self.pending:
            self.mode, self.pending = self.pending, None
        self._encode(hr, now)
        if self.due(hr, now):
            t0 = time.perf_counter()
            new = self.measure(hr)
            self.db = {m: v if v is None or self.db.get(m) is None or self.fresh else round((v + self.db[m]) / 2, 3)
                       for m, v in new.items()}
            self.fresh = False
            self.stats["measure_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            self.stats["measurements"] += 1
            self.last_t, self.thumb = now, self._thumb(hr)
            scored = [(db, m) for m, db in self.db.items() if db is not None]
            cur = self.db.get(self.mode) if self.mode is not None else None
            if scored:
                db, best = max(scored)
                margin = self.video_hysteresis_db if "h264" in best + str(self.mode) else self.hysteresis_db
                if best != self.mode and (cur is None or db > cur + margin):
                    self.stats["switches"] += self.mode is not None
                    if best in self.video:
                        self.video[best].key_next()
                        self.pending, self.start_t = best, now  # the new stream settles before the next score
                    else:
                        self.mode = best
        return self.mode

    def state(self) -> dict:
        return {"mode": self.mode, "db": dict(self.db), **self.stats}
