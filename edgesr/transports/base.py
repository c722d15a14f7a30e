"""The shared sink machinery: a latest-frame-wins slot, a sender thread, topology, codec and rate control."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..protocol import encode_frame, seq_diff, seq_newer
from ..video import encode_unit
from ..ratecontrol import RateController
from ..slot import Slot, consume

log = logging.getLogger("edgesr.transports")


@dataclass
class OutFrame:
    """What the pipeline hands to sinks: the upscaled frame (None if nobody needs it) and the LR frame."""
    seq: int
    timestamp_us: int
    lr: np.ndarray
    sr: np.ndarray | None
    scale: int
    captured_at: float  # time.monotonic() at capture, for latency


TOPOLOGIES = ("source", "receiver", "measured")


class Sink:
    """Base: ``submit()`` never blocks; a thread takes the newest frame and calls ``send(frame)``.
    ``topology`` 'source' sends the upscaled frame, 'receiver' the LR frame for the robot to upscale, 'measured'
    the camera frame as it is or its 1/scale downscale for SR at the robot, whichever ``chooser`` measured better
    (``edgesr.modechoice``)."""

    def __init__(self, url, topology: str = "source", codec: str = "jpeg", quality: int = 80, tile: int = 64,
                 key: bytes | None = None, bitrate: float = 0, fps: float = 10.0, mtu: int = 1200, stream: int = 0,
                 replenish: float = 0.0, refresh: int = 2, fec: float = 0.0, feedback: bool = True):
        if topology not in TOPOLOGIES:
            raise ConfigError(f"topology must be 'source', 'receiver' or 'measured', not {topology!r}")
        self.url = getattr(url, "url", url)  # an Endpoint, or a plain name for sinks outside transports/
        self.topology, self.codec, self.quality, self.tile = topology, codec, quality, tile
        self.key, self.mtu, self.stream = key, mtu, stream
        # H.264 (codec h264, or among the measured modes) keeps its own VBV under the budget: pace at 97 %
        margin = 0.97 if codec == "h264" or topology == "measured" else 0.9
        self.rate = RateController(bitrate, fps, quality, max_packet=mtu, margin=margin) if bitrate else None
        self.slot = Slot()
        self.stop = threading.Event()
        self.stats = {"frames_sent": 0, "packets_sent": 0, "bytes_sent": 0, "send_errors": 0, "latency_ms": 0.0,
                      "refresh_requests": 0, "refreshes": 0, "bad_requests": 0}  # the back channel: on_request
        self.fps, self.video = fps, None  # codec "h264": the H.264 stream (edgesr.video), made on the first frame
        self.overhead = 1.0  # link bytes per packet byte (serial with rs=: Reed-Solomon)
        self.thread = threading.Thread(target=self._loop, name=f"sink {self.url}", daemon=True)
        self.chooser = None  # set for topology 'measured' (service.build)
        self.fec, self.protector, self.last_unit = fec, None, None  # parity packets per data packet (edgesr.fec.Protector)
        self.replenisher, self.last_refresh = None, None  # (time, last unit before it) of the last requested IDR
        self.feedback = feedback  # obey robots' refresh requests (on_request)
        if replenish > 0:  # conditional replenishment (edgesr.replenish): changed tiles + `refresh` stale ones
            from ..replenish import Replenisher
            self.replenisher = Replenisher(tile, replenish, refresh)

    @property
    def needs_sr(self) -> bool:
        """The one place that decides whether this sink sends the upscaled frame or the LR one."""
        return self.topology == "source"

    def start(self) -> "Sink":
        if self.thread.is_alive():
            return self
        self.open()
        self.thread.start()
        return self

    def submit(self, frame: OutFrame) -> None:
        self.slot.put(frame)

    def image_of(self, f: OutFrame) -> np.ndarray:
        return f.sr if self.needs_sr and f.sr is not None else f.lr

    def packets(self, f: OutFrame) -> list[bytes]:
        img = self.image_of(f)
        q = self.rate.quality if self.rate else self.quality
        lr = img is f.lr and f.scale > 1
        unit, key = None, False
        if self.chooser is not None:
            n = self.chooser.stats["measurements"]
            mode = self.chooser.choose(f.lr, now=f.timestamp_us / 1e6)
            if self.chooser.stats["measurements"] != n and mode in self.chooser.quality:
                self.rate.quality = q = self.chooser.quality[mode]  # what fitted the budget just now
            lr, img = mode.endswith("lr"), self.chooser.image(f.lr, mode)
            unit = self.chooser.units.get(mode)  # H.264 modes: the chooser encodes every frame (shadow streams)
            key = unit is not None and self.chooser.video[mode].key
            self.stats.update(link=self.chooser.state())
        elif self.codec == "h264":
            from ..video import REFRESH_S, H264Stream

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
                from ..fec import Protector, block_frames
                self.protector = Protector(self.fec, max_frames=block_frames(self.fps))
            pk = pk + self.protector.add(pk, key=key, alone=unit is None)  # key: only ever set for H.264 units
        return pk

    def on_request(self, raw: bytes, now: float | None = None) -> None:
        """A robot's refresh request (edgesr.protocol.encode_request: it lost an H.264 unit for good): the next unit
        is an IDR, at most one every REFRESH_GAP_S and none for a unit lost before the last one (robots on one
        multicast stream share it), and only where a frame has REFRESH_MIN_FRAME link bytes or more (an IDR weighs
        several frames of a thinner link: it cost more than the loss healed)."""
        from ..errors import ProtocolError
        from ..protocol import decode_request
        from ..video import REFRESH_GAP_S, REFRESH_MIN_FRAME

        try:
            stream, seq = decode_request(raw, self.key)
        except ProtocolError:
            self.stats["bad_requests"] += 1
            return
        if stream != self.stream:
            return
        self.stats["refresh_requests"] += 1
        if not self.feedback:
            return
        now = time.monotonic() if now is None else now
        if self.link_frame_bytes is not None and self.link_frame_bytes < REFRESH_MIN_FRAME:
            return
        if self.last_refresh is not None and (now - self.last_refresh[0] < REFRESH_GAP_S
                                              or not seq_newer(seq, self.last_refresh[1])):
            return  # too soon, or broken before the last IDR (another robot's request, or its own, got it one)
        self.last_refresh = (now, self.last_unit if self.last_unit is not None else seq)
        self.stats["refreshes"] += 1
        self.key_next()

    def key_next(self) -> None:
        """A new receiver is here (TCP knows; UDP and serial do not): make the next H.264 unit an IDR, so it gets a
        picture at once instead of after the next refresh sweep."""
        if self.video is not None:
            self.video.key_next()
        if self.chooser is not None and self.chooser.mode in self.chooser.video:
            self.chooser.video[self.chooser.mode].key_next()

    def video_bitrate(self) -> float:
        """What an H.264 encoder may spend (bit/s); unbudgeted links: 4 Mbit/s."""
        from ..video import stream_bitrate

        if not self.rate:
            return 4e6
        return stream_bitrate(self.rate.bitrate / self.overhead, self.video_mtu, self.key, self.fec, self.fps)

    @property
    def video_mtu(self) -> int:
        """Packet size of H.264 units (smaller than ``mtu`` with FEC: edgesr.video.packet_size)."""
        from ..video import packet_size

        return packet_size(self.mtu, self.fec, self.link_frame_bytes)

    @property
    def link_frame_bytes(self) -> float | None:
        """Link bytes a frame on a budgeted link (None: unbudgeted)."""
        return self.rate.bitrate / self.overhead / 8 / self.fps if self.rate else None

    def _loop(self) -> None:
        consume(self.slot, self._send_one, self.stop)

    def _send_one(self, f: OutFrame) -> None:
        try:
            if self.send(f):
                self.stats["frames_sent"] += 1
                self.stats["latency_ms"] = round(1000 * (time.monotonic() - f.captured_at), 2)
        except Exception as e:  # noqa: BLE001 -- a sink must never take the daemon down; it reconnects or drops
            self.stats["send_errors"] += 1
            log.warning("%s: send failed: %s", self.url, e)
            time.sleep(0.2)

    def pace(self, nbytes: int) -> bool:
        return self.rate.wait(nbytes, stop=self.stop) if self.rate else not self.stop.is_set()

    def count(self, packet: bytes, nbytes: int | None = None) -> None:
        self.stats["packets_sent"] += 1
        self.stats["bytes_sent"] += len(packet) if nbytes is None else nbytes

    # subclasses
    def open(self) -> None:
        pass

    def send(self, f: OutFrame) -> bool:
        raise NotImplementedError

    def close(self, timeout: float = 1.5) -> None:
        self.stop.set()
        self.slot.close()
        if self.thread.is_alive():
            self.thread.join(timeout)
