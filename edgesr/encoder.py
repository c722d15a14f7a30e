"""What goes on the link, as packets: the stream encoder behind every packet transport (udp, tcp, serial).

One ``StreamEncoder`` a sink. ``packets(frame)`` turns a pipeline frame into protocol packets in one of three ways,
chosen by ``topology`` and ``codec``: independent tiles (JPEG/WebP/PNG, optionally only the tiles that changed:
``edgesr.replenish``), an H.264 access unit (``edgesr.video``), or whichever of those the mode chooser measured
best for this link (topology 'measured': ``edgesr.modechoice``). Rate control (``edgesr.ratecontrol``) fits
quality to the link budget, FEC (``edgesr.fec``) adds parity, and robots' refresh requests
(``edgesr.backchannel``) make the next H.264 unit an IDR. Transports only move the bytes.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .backchannel import RefreshPolicy
from .errors import ConfigError
from .protocol import encode_frame, seq_diff
from .ratecontrol import RateController
from .video import encode_unit

TOPOLOGIES = ("source", "receiver", "measured")


class StreamEncoder:
    """``topology`` 'source' sends the upscaled frame, 'receiver' the LR frame for the robot to upscale, 'measured'
    the camera frame as it is or its 1/scale downscale for SR at the robot, whichever measured better with
    ``measure_with`` (an upscaler) among ``modes`` (needs a ``bitrate``). ``overhead``: link bytes per packet byte
    (serial with rs=: Reed-Solomon)."""

    def __init__(self, topology: str = "source", codec: str = "jpeg", quality: int = 80, tile: int = 64,
                 key: bytes | None = None, bitrate: float = 0, fps: float = 10.0, mtu: int = 1200, stream: int = 0,
                 replenish: float = 0.0, refresh: int = 2, fec: float = 0.0, feedback: bool = True,
                 overhead: float = 1.0, measure_with=None, modes: tuple[str, ...] = ("hr", "lr")):
        if topology not in TOPOLOGIES:
            raise ConfigError(f"topology must be 'source', 'receiver' or 'measured', not {topology!r}")
        self.topology, self.codec, self.quality, self.tile = topology, codec, quality, tile
        self.key, self.mtu, self.stream, self.fps, self.fec, self.overhead = key, mtu, stream, fps, fec, overhead
        # H.264 (codec h264, or among the measured modes) keeps its own VBV under the budget: pace at 97 %
        margin = 0.97 if codec == "h264" or topology == "measured" else 0.9
        self.rate = RateController(bitrate, fps, quality, max_packet=mtu, margin=margin) if bitrate else None
        self.video: Any = None  # codec "h264": the H.264 stream (edgesr.video), made on the first frame
        self.protector: Any = None  # parity (edgesr.fec.Protector), made on the first frame
        self.last_unit: int | None = None  # the last H.264 unit's seq
        self.refresh = RefreshPolicy(stream, key, obey=feedback)
        self.replenisher = None
        if replenish > 0:  # conditional replenishment (edgesr.replenish): changed tiles + `refresh` stale ones
            from .replenish import Replenisher
            self.replenisher = Replenisher(tile, replenish, refresh)
        self.chooser = None
        if topology == "measured":
            if self.rate is None or measure_with is None:
                raise ConfigError("topology 'measured' needs a bitrate and an upscaler to measure with")
            self.chooser = self._chooser(measure_with, modes)

    def _chooser(self, upscaler, modes):
        """The mode chooser (tiles in this codec; H.264 after headers and this stream's FEC share)."""
        from .modechoice import LOSSY_VIDEO_HYSTERESIS_DB, VIDEO_HYSTERESIS_DB, ModeChooser
        from .video import REFRESH_S

        budget = self.rate.frame_budget / (1 + self.fec) / self.overhead
        return ModeChooser(upscaler, budget, codec=self.codec, tile=self.tile, mtu=self.mtu, modes=modes,
                           fps=self.fps, video_bitrate=self.video_bitrate(), refresh_s=REFRESH_S,
                           video_mtu=self.video_mtu,
                           video_hysteresis_db=LOSSY_VIDEO_HYSTERESIS_DB if self.fec else VIDEO_HYSTERESIS_DB)

    @property
    def needs_sr(self) -> bool:
        """The one place that decides whether this stream carries the upscaled frame or the LR one."""
        return self.topology == "source"

    def image_of(self, f) -> np.ndarray:
        return f.sr if self.needs_sr and f.sr is not None else f.lr

    def packets(self, f) -> list[bytes]:
        """The protocol packets of pipeline frame ``f`` (an ``OutFrame``), parity included."""
        img = self.image_of(f)
        q = self.rate.quality if self.rate else self.quality
        lr = img is f.lr and f.scale > 1
        unit, key = None, False
        if self.chooser is not None:
            n = self.chooser.stats["measurements"]
            mode = self.chooser.choose(f.lr, now=f.timestamp_us / 1e6)
            if self.chooser.stats["measurements"] != n and mode in self.chooser.quality and self.rate is not None:
                self.rate.quality = q = self.chooser.quality[mode]  # what fitted the budget just now
            lr, img = mode.endswith("lr"), self.chooser.image(f.lr, mode)
            unit = self.chooser.units.get(mode)  # H.264 modes: the chooser encodes every frame (shadow streams)
            key = unit is not None and self.chooser.video[mode].key
        elif self.codec == "h264":
            from .video import REFRESH_S, H264Stream

            img = img[:img.shape[0] // 2 * 2, :img.shape[1] // 2 * 2]
            if self.video is None or self.video.size != (img.shape[1], img.shape[0]):  # the budget: once a stream
                self.video = H264Stream(img.shape[1], img.shape[0], fps=self.fps, bitrate=self.video_bitrate(),
                                        mtu=self.video_mtu, refresh_s=REFRESH_S)
            unit = self.video.encode(img, f.timestamp_us // 1000)
            key = self.video.key
        if unit is not None:
            gap = seq_diff(f.seq, self.last_unit) if self.last_unit is not None else 0
            pk = encode_unit(unit, (img.shape[1], img.shape[0]), f.seq, f.timestamp_us, stream=self.stream,
                             key=self.key, mtu=self.video_mtu, scale=f.scale if lr else 1, lr=lr, gap=gap)
        else:
            tiles = self.replenisher.select(img) if self.replenisher else None
            pk = encode_frame(img, f.seq, f.timestamp_us, stream=self.stream, tile=self.tile, codec=self.codec,
                              quality=q, key=self.key, mtu=self.mtu, scale=f.scale if lr else 1, lr=lr, tiles=tiles)
            if self.replenisher:
                self.replenisher.sent(img, tiles)
            if self.rate:
                self.rate.update(sum(map(len, pk)))
        self.last_unit = f.seq if unit is not None else None  # H.264: the previous unit's seq (a robot's gap check)
        if self.fec:  # parity across this frame's packets, or across a few frames on a thin link
            if self.protector is None:
                from .fec import Protector, block_frames
                self.protector = Protector(self.fec, max_frames=block_frames(self.fps))
            pk = pk + self.protector.add(pk, key=key, alone=unit is None)  # key: only ever set for H.264 units
        return pk

    def state(self) -> dict:
        """Counters for /state and /metrics: the back channel's, and the chosen mode's measurements."""
        return {**self.refresh.stats, **({"link": self.chooser.state()} if self.chooser else {})}

    def on_request(self, raw: bytes, now: float | None = None) -> None:
        """Bytes a robot sent back (edgesr.backchannel): an IDR next if the refresh policy says so."""
        now = time.monotonic() if now is None else now
        if self.refresh.on_request(raw, now, self.link_frame_bytes, self.last_unit):
            self.key_next()

    def key_next(self) -> None:
        """Make the next H.264 unit an IDR: a robot asked, or a new receiver is here (TCP knows; UDP and serial
        learn it from a request), so it gets a picture at once instead of after the next refresh sweep."""
        if self.video is not None:
            self.video.key_next()
        if self.chooser is not None and self.chooser.mode in self.chooser.video:
            self.chooser.video[self.chooser.mode].key_next()

    def video_bitrate(self) -> float:
        """What an H.264 encoder may spend (bit/s); unbudgeted links: 4 Mbit/s."""
        from .video import stream_bitrate

        if not self.rate:
            return 4e6
        return stream_bitrate(self.rate.bitrate / self.overhead, self.video_mtu, self.key, self.fec, self.fps)

    @property
    def video_mtu(self) -> int:
        """Packet size of H.264 units (smaller than ``mtu`` with FEC: edgesr.video.packet_size)."""
        from .video import packet_size

        return packet_size(self.mtu, self.fec, self.link_frame_bytes)

    @property
    def link_frame_bytes(self) -> float | None:
        """Link bytes a frame on a budgeted link (None: unbudgeted)."""
        return self.rate.bitrate / self.overhead / 8 / self.fps if self.rate else None
