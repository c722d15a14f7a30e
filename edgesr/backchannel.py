"""The back channel: a robot whose H.264 picture is broken asks the device for a self-contained unit (an IDR).

Why: a robot's decoder that goes on without an H.264 unit (lost whole, or slices missing after FEC gave up) or has
no picture yet shows the error until the intra-refresh sweep passes (``video.REFRESH_S``, 10 s). Measured on the
shared clip (benchmarks/thin_lossy.py, H.264 HR, no parity, 5 % loss, 16 draws): 19.2 kbit/s 2 fps (1200 link
bytes a frame) 34.16 dB with requests against 29.87 without; at 5 fps (480 bytes a frame) obeying every request
gave 31.39 against 33.69: there an IDR weighs 3-4 frames, so the device ignores requests under REFRESH_MIN_FRAME.

The pieces, all here:
- the request (``encode_request`` / ``decode_request``): 14 bytes, magic "ER" | version | flags | stream | seq |
  CRC32, + a 16-byte HMAC tag with the link's key (the wire spec: docs/protocol.md);
- the robot's policy (``BrokenPictures``): which streams are broken as of which unit, a request each ``every``
  seconds until a whole IDR arrives, none after ``give_up`` seconds (the sweep healed it);
- the device's policy (``RefreshPolicy``): an IDR next, at most one every REFRESH_GAP_S, none for a robot broken
  before the last requested IDR (robots on one multicast stream share it), none under REFRESH_MIN_FRAME;
- the transport hooks: a robot-side reader with ``send_back(raw)`` (udp: to the source of the stream's valid
  packets; serial: framed like the stream) and a device-side sink that hands what comes back to
  ``StreamEncoder.on_request`` (udp: polled before each frame; serial: read before each frame, COBS-deframed).
  The I/O stays in the transports (bytes in, bytes out); the decisions are here.
"""
from __future__ import annotations

import hmac
import struct
import zlib
from dataclasses import dataclass, field

from .errors import ProtocolError
from .protocol import CRC, FLAG_AUTH, TAG_LEN, VERSION, AuthError, _tag, seq_newer

REQUEST = struct.Struct("!2sBBHI")  # magic "ER" | version | flags | stream id | newest seq it is broken at
REQUEST_MAGIC = b"ER"
REFRESH_MIN_FRAME = 600  # link bytes a frame under which the device ignores refresh requests (module text)
REFRESH_GAP_S = 1.0  # at most one requested IDR a second, whatever robots ask (or a forger with the key)


def encode_request(stream: int, seq: int, key: bytes | None = None) -> bytes:
    """A refresh request: the robot's picture of ``stream`` is broken as of H.264 unit ``seq`` (it lost a unit for
    good): 14 bytes, 30 with a key."""
    body = REQUEST.pack(REQUEST_MAGIC, VERSION, FLAG_AUTH if key else 0, stream & 0xFFFF, seq & 0xFFFFFFFF)
    body += CRC.pack(zlib.crc32(body))
    return body + _tag(key, body) if key else body


def decode_request(data: bytes, key: bytes | None = None) -> tuple[int, int]:
    """(stream, seq) of a refresh request; ProtocolError (AuthError: tag) for anything else."""
    data = bytes(data)
    n = REQUEST.size + CRC.size
    if len(data) not in (n, n + TAG_LEN) or data[:2] != REQUEST_MAGIC:
        raise ProtocolError("not a refresh request")
    magic, version, flags, stream, seq = REQUEST.unpack_from(data)
    if version != VERSION or len(data) != n + (TAG_LEN if flags & FLAG_AUTH else 0):
        raise ProtocolError("bad refresh request")
    if CRC.unpack_from(data, REQUEST.size)[0] != zlib.crc32(data[:REQUEST.size]):
        raise ProtocolError("CRC mismatch")
    if key is not None and not (flags & FLAG_AUTH and hmac.compare_digest(data[n:], _tag(key, data[:n]))):
        raise AuthError("refresh request without a valid HMAC tag")
    return stream, seq


@dataclass
class _Broken:
    seq: int                      # the newest unit the picture is broken at
    since: float                  # when it broke
    asked: float | None = None    # when the last request went out


@dataclass
class BrokenPictures:
    """Robot side: the H.264 streams whose picture is broken, and when to ask for an IDR."""

    every: float = 1.0      # seconds between requests for one stream (requests get lost too)
    give_up: float = 20.0   # seconds after which the refresh sweep has healed it
    streams: dict[int, _Broken] = field(default_factory=dict)

    def broke(self, stream: int, seq: int, now: float) -> None:
        """The decoder of ``stream`` went on without (part of) unit ``seq``."""
        b = self.streams.setdefault(stream, _Broken(seq, now))
        if seq_newer(seq, b.seq):
            b.seq = seq

    def decoded(self, stream: int, seq: int, idr: bool) -> None:
        """A whole unit of ``stream`` decoded: an IDR heals the picture, any other leaves it broken as of ``seq``
        (the device's IDR was lost, or has not come yet)."""
        b = self.streams.get(stream)
        if b is None:
            return
        if idr:
            del self.streams[stream]
        elif seq_newer(seq, b.seq):
            b.seq = seq

    def due(self, now: float) -> list[tuple[int, int]]:
        """(stream, seq) for each broken stream whose last request is ``every`` seconds old."""
        out = []
        for stream, b in list(self.streams.items()):
            if now - b.since > self.give_up:
                del self.streams[stream]
            elif b.asked is None or now - b.asked >= self.every:
                b.asked = now
                out.append((stream, b.seq))
        return out


class RefreshPolicy:
    """Device side: whether a robot's request makes the next H.264 unit an IDR (module text)."""

    def __init__(self, stream: int = 0, key: bytes | None = None, obey: bool = True):
        self.stream, self.key, self.obey = stream, key, obey
        self.last: tuple[float, int] | None = None  # (time, last unit before it) of the last requested IDR
        self.stats = {"refresh_requests": 0, "refreshes": 0, "bad_requests": 0}

    def on_request(self, raw: bytes, now: float, link_frame_bytes: float | None, last_unit: int | None) -> bool:
        """True when the next unit should be an IDR. ``link_frame_bytes``: the link's bytes a frame (None:
        unbudgeted); ``last_unit``: the seq of the last H.264 unit sent (None: none yet)."""
        try:
            stream, seq = decode_request(raw, self.key)
        except ProtocolError:
            self.stats["bad_requests"] += 1
            return False
        if stream != self.stream:
            return False
        self.stats["refresh_requests"] += 1
        if not self.obey or (link_frame_bytes is not None and link_frame_bytes < REFRESH_MIN_FRAME):
            return False
        if self.last is not None and (now - self.last[0] < REFRESH_GAP_S or not seq_newer(seq, self.last[1])):
            return False  # too soon, or broken before the last IDR (another robot's request, or its own, got it one)
        self.last = (now, last_unit if last_unit is not None else seq)
        self.stats["refreshes"] += 1
        return True
