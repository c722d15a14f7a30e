"""Fit a stream to a link budget (bits/s): pace writes and steer JPEG quality toward a per-frame byte target.

Pacing is a token bucket refilled at ``margin * bitrate`` with room for one packet, so any window of T seconds
carries at most ``margin * bitrate * T + one packet`` -- under budget over 2 s for packets up to (1-margin)*2 s
of budget. When even the lowest quality does not fit the frame rate, the sink simply takes fewer frames
(latest-frame-wins upstream), so the frame rate falls instead of latency growing.
"""
from __future__ import annotations

import time

from .errors import ConfigError


class RateController:
    def __init__(self, bitrate: float, target_fps: float = 10.0, quality: int = 75, q_min: int = 10,
                 q_max: int = 92, margin: float = 0.9, max_packet: int = 1200):
        if bitrate <= 0:
            raise ConfigError("bitrate must be > 0 (use no controller for unlimited links)")
        self.bitrate = bitrate
        self.rate = bitrate * margin / 8.0  # bytes per second
        self.target_fps, self.quality, self.q_min, self.q_max = target_fps, quality, q_min, q_max
        self.capacity = float(max_packet)
        self.tokens = self.capacity
        self.t = time.monotonic()

    @property
    def frame_budget(self) -> float:
        """Bytes one frame may use to keep ``target_fps``."""
        return self.rate / self.target_fps

    def update(self, frame_bytes: int) -> None:
        """After encoding a frame: move quality toward the per-frame byte budget (5% dead band: no flapping)."""
        ratio = frame_bytes / self.frame_budget
        if ratio > 1.05:
            self.quality = max(self.q_min, int(self.quality - max(1, 10 * (ratio - 1))))
        elif ratio < 0.8:
            self.quality = min(self.q_max, self.quality + 2)

    def wait(self, nbytes: int, sleep=time.sleep, stop=None) -> bool:
        """Block this sink's thread until ``nbytes`` may go out. False if ``stop`` got set meanwhile."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= nbytes or (nbytes > self.capacity and self.tokens >= self.capacity):
                self.tokens -= nbytes
                return True
            if stop is not None and stop.is_set():
                return False
            sleep(min(0.05, (min(nbytes, self.capacity) - self.tokens) / self.rate))


def fit_quality(img, budget: float, codec: str = "webp", tile: int = 64, mtu: int = 1200, q_max: int = 95,
                seq: int = 0, **encode_kw):
    """(quality, packets) of the highest quality whose packets fit ``budget`` bytes (binary search, ~7 encodes),
    or None when even quality 1 does not fit (or a tile would need more than 255 fragments)."""
    from .protocol import encode_frame

    lo, hi, best = 1, q_max, None
    while lo <= hi:
        q = (lo + hi) // 2
        try:
            pk = encode_frame(img, seq, 0, tile=tile, codec=codec, quality=q, mtu=mtu, **encode_kw)
        except ConfigError:
            pk = None
        if pk is not None and sum(map(len, pk)) <= budget:
            best, lo = (q, pk), q + 1
        else:
            hi = q - 1
    return best
