"""Temporal coding inside edgesr's protocol: H.264 access units as protocol packets (codec "h264").

On a static camera most of a frame repeats; H.264's temporal prediction spends the link on what changed, which is
why it beat intra-only tiles by 3-6 dB at radio bitrates (docs/link-studies.md). Here it is a mode of
edgesr's own stream, so it gets the protocol's CRC/HMAC, limits, FEC and the robot-side upscaling.

Device (``H264Stream``): libx264 through PyAV (the ``video`` extra), no B-frames and no lookahead (one frame in, one
access unit out), CBR-like VBV at the link's budget, and periodic intra refresh instead of keyframes: a column of
intra blocks sweeps the picture every ``refresh_s`` (10 s: at 57.6 kbit/s a 4 s sweep cost 1.3 dB on the shared
video, and with FEC across frames a 6 s sweep lost 0.45 dB at 5 % loss against 10 s), so a thin link sees no
keyframe spikes, a loss FEC cannot rebuild heals within ``refresh_s`` and a robot that joins mid-stream gets a
picture after one sweep (SPS/PPS repeat at each sweep); a robot that can talk back asks for an IDR instead
(``edgesr.backchannel``).
Where FFmpeg has the V4L2 memory-to-memory encoder (Raspberry Pi 4's hardware H.264), ``encoder="auto"`` uses it.

Robot (``H264Decoder``): FFmpeg's decoder, limited to ``Limits.max_frame_pixels`` (``max_pixels``) before it
allocates; the decoded size must match the packet header. A frame with packets missing (after FEC) is decoded
from the slices that arrived (the rest concealed) and marked partial; errors fade as the refresh sweeps by.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import ConfigError, ProtocolError
from .extras import need
from .protocol import FLAG_LR, H264, Packet, encode_packet, payload_room

log = logging.getLogger("edgesr.video")
REFRESH_S = 10.0  # intra refresh period (s): see the module text
LINK_SHARE = 0.94  # of the link's bit/s an H.264 stream plans to fill (see stream_bitrate)
FEC_PACKET = 700  # bytes: H.264 packet size where the sink sends parity (see packet_size)
SLOW_PIXEL_RATE = 2_000_000  # pixels/s up to which x264 runs preset "slow" (see pick_preset)


def _av():
    return need("av", "H.264 (PyAV)")


def available() -> bool:
    """Whether this machine can carry H.264 (PyAV importable)."""
    try:
        _av()
        return True
    except ConfigError:
        return False


def stream_bitrate(link_bps: float, mtu: int, key: bytes | None = None, fec: float = 0.0, fps: float = 10.0) -> float:
    """What an H.264 stream may spend (bit/s) on a ``link_bps`` link at ``fps`` in packets of ``mtu``: LINK_SHARE
    (94 %) of it (x264's VBV lets the first seconds run over; the pacer runs at 97 %: at 95 % the stream and its
    parity took 104 % of 115.2 kbit/s over the first 13 s at 5 fps), less each frame's packet headers and the
    parity that ``fec`` adds (edgesr.fec.parity_ratio: 36-49 % of the data at ``fec`` = 0.25, as the Protector
    rebuilds whole packets and repeats the block's packet list), less one packet per refresh sweep."""
    import math

    from .fec import block_frames, parity_ratio

    frame = link_bps * LINK_SHARE / 8 / fps  # bytes per frame on the link
    if fec > 0:
        budget = frame - mtu / (REFRESH_S * fps)
        span = block_frames(fps)
        ratio = parity_ratio(fec, budget / (1 + fec), mtu, span)  # it depends on the frame size it protects:
        ratio = max(ratio, parity_ratio(fec, budget / (1 + ratio), mtu, span))  # the larger of two estimates
        frame = budget / (1 + ratio)
    k = max(1, math.ceil(frame / mtu))
    return max(frame - k * (mtu - payload_room(mtu, key)), 64) * 8 * fps


def packet_size(mtu: int, fec: float, frame_bytes: float | None = None) -> int:
    """Packet size for H.264 units: the link's ``mtu``, but at most FEC_PACKET bytes where the sink sends parity
    and a frame (``frame_bytes`` of link budget) does not fit one packet. A lost small packet costs one small slice:
    H.264 HR at 57.6 kbit/s, 5 % loss, 16 loss draws: 2 fps 37.9 dB at 700-byte packets, 36.3 at 1200; 5 fps 36.0
    and 35.9 (1200: one draw broke to 10.9 dB). Where a frame fits one packet, more packets only mean more losses
    (the link loses packets, not bytes): 19.2 kbit/s, 2 fps: 32.9 dB at 1200, 31.3 at 700 (measured with parity
    sized by the mean packet, before it rebuilt the longest)."""
    return min(mtu, FEC_PACKET) if fec > 0 and (frame_bytes is None or frame_bytes > mtu) else mtu


def pick_preset(width: int, height: int, fps: float) -> str:
    """x264's preset for a stream: "slow" up to SLOW_PIXEL_RATE (a thin link carries few frames, so each may take
    more effort: +1.0 dB PSNR-Y at 19.2 kbit/s 2 and 5 fps, +0.55 at 57.6 kbit/s 5 fps, +0.34 at 115.2 kbit/s 2 fps
    on the shared clip, at the same kbit/s; 768x432: 15-32 ms a frame against 7-12 on one EPYC core), else
    "veryfast"."""
    return "slow" if width * height * fps <= SLOW_PIXEL_RATE else "veryfast"


def _pick_encoder(av, want: str) -> str:
    if want != "auto":
        return want
    if "h264_v4l2m2m" in av.codecs_available and Path("/dev/video11").exists():  # Pi 4's bcm2835-codec encoder
        return "h264_v4l2m2m"
    return "libx264"


class H264Stream:
    """One H.264 stream of frames of one size. ``encode(rgb, t_ms)`` -> the access unit (bytes).
    ``local=True`` also decodes every unit on the device, so ``recon`` is exactly what a robot shows on a clean
    link (the mode chooser measures with it)."""

    def __init__(self, width: int, height: int, fps: float, bitrate: float, refresh_s: float = 10.0,
                 encoder: str = "auto", preset: str = "auto", local: bool = False, mtu: int = 1200):
        av = _av()
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ConfigError(f"H.264 needs an even frame size of at least 16x16, got {width}x{height}")
        self.size, self.fps = (width, height), fps
        self.name = _pick_encoder(av, encoder)
        self.preset = preset = pick_preset(width, height, fps) if preset == "auto" else preset
        try:
            ctx = self._open(av, self.name, width, height, fps, bitrate, refresh_s, preset, mtu)
        except av.error.FFmpegError as e:
            if self.name == "libx264":
                raise ConfigError(f"cannot open the H.264 encoder: {e}") from None
            log.warning("H.264 encoder %s did not open (%s); using libx264", self.name, e)
            self.name = "libx264"
            ctx = self._open(av, self.name, width, height, fps, bitrate, refresh_s, preset, mtu)
        self.ctx, self.frames, self.force, self.key = ctx, 0, False, False
        self.decoder = H264Decoder(width * height) if local else None
        self.recon: np.ndarray | None = None

    @staticmethod
    def _open(av, name, width, height, fps, bitrate, refresh_s, preset, mtu):
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, 1000)
        ctx.framerate = Fraction(fps).limit_denominator(1000)
        ctx.thread_count = 1  # slices by size only (a slice per packet), and the sink has one thread
        period = max(1, int(round(refresh_s * fps)))
        if name == "libx264":
            # constant quality capped by a 1 s VBV at the budget: on a thin link the cap rules (CBR-like, the
            # budget used to ~90 %), on a wide one the stream stops at crf 10 instead of padding
            kbps = max(1, int(round(bitrate / 1000)))  # x264 takes whole kbit/s: 11.6 -> 12, not 11
            # tune psnr: no adaptive quantisation or psy-rd, which spend bits on perceived texture, not on fidelity
            # (a robot's detector wants the scene as it is): +1.0 / +0.9 / +1.5 dB PSNR-Y at 115.2 kbit/s 2 fps,
            # 57.6 kbit/s 5 fps, 19.2 kbit/s 2 fps on the shared clip, at the same kbit/s
            ctx.options = {"preset": preset, "tune": "psnr,zerolatency",
                           "x264-params": f"crf=10:vbv-maxrate={kbps}:vbv-bufsize={kbps}:keyint={period}:"
                                          f"min-keyint={period}:scenecut=0:intra-refresh=1:repeat-headers=1:"
                                          f"nal-hrd=none:rc-lookahead=0:bframes=0:slice-max-size={max(200, mtu - 80)}"}
        else:  # a hardware encoder: periodic keyframes, no slice control (long units are fragmented)
            ctx.bit_rate, ctx.gop_size, ctx.max_b_frames = int(bitrate), period, 0
            ctx.options = {"repeat_sequence_header": "1"}
        ctx.open()
        return ctx

    def key_next(self) -> None:
        """Make the next unit self-contained (IDR with SPS/PPS): on a mode switch the robot's decoder has no
        reference of this stream."""
        self.force = True

    def encode(self, rgb: np.ndarray, t_ms: int | None = None) -> bytes:
        av = _av()
        h, w = rgb.shape[:2]
        if (w, h) != self.size:
            raise ConfigError(f"H.264 stream is {self.size[0]}x{self.size[1]}, frame is {w}x{h}")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts = int(t_ms if t_ms is not None else round(self.frames * 1000 / self.fps))
        if self.force:
            vf.pict_type = av.video.frame.PictureType.I
            self.force = False
        packets = self.ctx.encode(vf)
        self.key = any(p.is_keyframe for p in packets)  # IDR or refresh start (SPS/PPS): worth protecting
        au = b"".join(bytes(p) for p in packets)
        self.frames += 1
        if self.decoder is not None and au:
            self.recon = self.decoder.decode(au, (w, h))
        return au


def stream_for(current: "H264Stream | None", img: np.ndarray, **kw) -> "H264Stream":
    """``current`` if it encodes frames of ``img``'s size, else a new stream (``kw``: H264Stream's options)."""
    h, w = img.shape[:2]
    return current if current is not None and current.size == (w, h) else H264Stream(w, h, **kw)


class H264Decoder:
    """Access units -> RGB frames, with FFmpeg's allocation bounded by ``max_pixels`` (declared picture size)."""

    def __init__(self, max_pixels: int):
        av = _av()
        self.ctx = av.CodecContext.create("h264", "r")
        self.ctx.thread_count = 1  # frame threading would delay output by a frame per thread
        # FFmpeg counts coded pixels (sides rounded up to 16-pixel macroblocks): allow that much over the limit
        self.ctx.options = {"max_pixels": str(int(max_pixels) + 16 * 2 * 8192)}
        self.pictures = 0

    def decode(self, au: bytes, size: tuple[int, int]) -> np.ndarray | None:
        """The picture of ``au`` (w, h must equal ``size``), None while the decoder has no picture yet (joined
        mid-stream: until the next refresh sweep). ProtocolError for a unit that does not decode or a wrong size."""
        av = _av()
        try:
            frames = self.ctx.decode(av.Packet(au))
        except (av.error.FFmpegError, ValueError) as e:  # also while waiting for SPS/PPS after joining
            raise ProtocolError(f"H.264 unit does not decode: {e}") from None
        if not frames:
            return None
        f = frames[-1]
        if (f.width, f.height) != tuple(size):
            raise ProtocolError(f"H.264 picture is {f.width}x{f.height}, packet says {size[0]}x{size[1]}")
        self.pictures += 1
        return f.to_ndarray(format="rgb24")


def has_idr(unit: bytes) -> bool:
    """Whether an Annex B access unit carries an IDR slice (NAL type 5): a robot's picture is whole again."""
    i = unit.find(b"\x00\x00\x01")
    while 0 <= i < len(unit) - 3:
        if unit[i + 3] & 0x1F == 5:
            return True
        i = unit.find(b"\x00\x00\x01", i + 3)
    return False


# -- packets: an access unit as protocol packets (pure functions of bytes, like edgesr.protocol) -------------
def nal_chunks(unit: bytes, room: int) -> list[bytes]:
    """An Annex B access unit -> chunks of whole NAL units (start codes kept), each at most ``room`` bytes where a
    NAL allows it: the encoder's slices fit a packet, so a lost packet costs one slice."""
    starts = [i for i in range(len(unit) - 2) if unit[i] == 0 and unit[i + 1] == 0 and unit[i + 2] == 1]
    starts = [i - 1 if i and unit[i - 1] == 0 else i for i in starts] or [0]
    nals = [unit[a:b] for a, b in zip([0] + starts[1:], starts[1:] + [len(unit)]) if b > a]
    chunks: list[bytes] = []
    for nal in nals:
        if chunks and len(chunks[-1]) + len(nal) <= room:
            chunks[-1] += nal
        else:
            chunks.append(nal)
    return chunks or [b""]


def encode_unit(unit: bytes, size: tuple[int, int], seq: int, timestamp_us: int, *, stream: int = 0,
                key: bytes | None = None, mtu: int = 1200, scale: int = 1, lr: bool = False,
                gap: int = 0) -> list[bytes]:
    """One H.264 access unit of a ``size`` = (w, h) frame -> packets no larger than ``mtu`` bytes: "tile" i is
    the i-th chunk of whole NAL units (``nal_chunks``); a NAL longer than a packet is fragmented. ``gap``, in the
    tile's x field: how many frame numbers back the stream's previous unit was (0: none, or unknown), so a robot
    can tell a unit lost whole (which FEC may still rebuild) from a frame the device skipped."""
    room = payload_room(mtu, key)
    w, h = size
    chunks = [[c[k:k + room] for k in range(0, len(c), room)] or [b""] for c in nal_chunks(unit, room)]
    if len(chunks) > 4096 or max(map(len, chunks)) > 255:
        raise ConfigError(f"H.264 unit of {len(unit)} bytes needs too many packets; raise the mtu")
    gap = gap if 0 < gap <= 0xFFFF else 0
    return [encode_packet(Packet(stream, seq, timestamp_us, w, h, i, len(chunks), gap, 0, w, h, H264, scale, f,
                                 len(chunk), FLAG_LR if lr else 0, part, len(chunks)), key)
            for i, chunk in enumerate(chunks) for f, part in enumerate(chunk)]
