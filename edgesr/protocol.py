"""Wire format: pure functions of bytes, no I/O (transports own the sockets and ports).

One packet carries one tile (or one fragment of a tile) of one frame:

    magic "ES" | version | flags | stream id | frame seq | capture time (us, wall clock) | frame w, h |
    tile index, count | tile x, y, w, h | codec | scale | fragment index, count | tiles sent | payload length |
    payload | CRC32 (header + payload) | [HMAC-SHA256 tag, 16 bytes, when flags & AUTH]

Big-endian, 42-byte header (version 2). Tiles are independently decodable images, so a lost packet costs one
tile. "Tiles sent" < tile count is conditional replenishment: only the tiles that changed (plus a cyclic refresh)
were sent, the robot keeps the others from the previous frame.
Codec "h264" (``edgesr.video``) carries one H.264 access unit per frame instead of tiles: "tiles" are then
consecutive chunks of the unit (each up to 255 fragments, geometry = the whole frame), decoded in order by the
robot's per-stream H.264 decoder.
Packets become frames in ``edgesr.assembly``. Byte streams (TCP, serial) frame packets with ``edgesr.framing``
(COBS, optional Reed-Solomon). ``decode_packet`` raises ProtocolError (AuthError for a bad/missing tag) and nothing
else.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .codec import CODEC_NAMES, CODECS, encode, tile_grid
from .errors import ConfigError, ProtocolError

MAGIC, VERSION = b"ES", 2
HEADER = struct.Struct("!2sBBHIQHHHHHHHHBBBBHH")
CRC = struct.Struct("!I")
TAG_LEN = 16
FLAG_AUTH, FLAG_LR = 1, 2
MAX_PACKET = 65535 + HEADER.size + CRC.size + TAG_LEN
H264 = 4  # codec id of an H.264 access unit (edgesr.video); 1-3 are the image codecs of edgesr.codec


class AuthError(ProtocolError):
    """Packet without a valid HMAC tag while a key is configured."""


@dataclass(frozen=True)
class Packet:
    stream: int
    seq: int
    timestamp_us: int
    frame_w: int
    frame_h: int
    tile_index: int
    tile_count: int
    x: int
    y: int
    w: int
    h: int
    codec: int
    scale: int
    frag: int
    nfrag: int
    flags: int
    payload: bytes
    sent: int = 0  # tiles of this frame that were sent (0: all, tile_count)



def seq_diff(a: int, b: int) -> int:
    """How far 32-bit sequence number ``a`` is after ``b`` (serial-number arithmetic: it wraps)."""
    return (a - b) & 0xFFFFFFFF


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (at most half the number space ahead)."""
    return a != b and seq_diff(a, b) < 0x80000000

def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_LEN]


def encode_packet(p: Packet, key: bytes | None = None) -> bytes:
    flags = (p.flags | FLAG_AUTH) if key else (p.flags & ~FLAG_AUTH)
    head = HEADER.pack(MAGIC, VERSION, flags, p.stream, p.seq & 0xFFFFFFFF, p.timestamp_us, p.frame_w, p.frame_h,
                       p.tile_index, p.tile_count, p.x, p.y, p.w, p.h, p.codec, p.scale, p.frag, p.nfrag,
                       p.sent or p.tile_count, len(p.payload))
    body = head + p.payload
    body += CRC.pack(zlib.crc32(body))
    return body + _tag(key, body) if key else body


def decode_packet(data: bytes, key: bytes | None = None) -> Packet:
    """Parse and verify one packet. Any malformation -> ProtocolError; bad or missing tag -> AuthError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER.size + CRC.size:
        raise ProtocolError(f"packet too short ({len(data)} bytes)")
    (magic, version, flags, stream, seq, ts, fw, fh, ti, tc, x, y, w, h, codec, scale, frag, nfrag, sent,
     plen) = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("bad magic")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}")
    end = HEADER.size + plen + CRC.size
    expected = end + (TAG_LEN if flags & FLAG_AUTH else 0)
    if len(data) != expected:
        raise ProtocolError(f"length mismatch: header says {expected} bytes, got {len(data)}")
    if CRC.unpack_from(data, end - CRC.size)[0] != zlib.crc32(data[:end - CRC.size]):
        raise ProtocolError("CRC mismatch")
    if key is not None:
        if not flags & FLAG_AUTH:
            raise AuthError("unauthenticated packet (a key is configured)")
        if not hmac.compare_digest(data[end:], _tag(key, data[:end])):
            raise AuthError("bad HMAC tag")
    if codec not in CODEC_NAMES and codec != H264:
        raise ProtocolError(f"unknown codec {codec}")
    if not (tc >= 1 and ti < tc and nfrag >= 1 and frag < nfrag and w and h and fw and fh
            and (codec == H264 or x + w <= fw and y + h <= fh) and 1 <= scale <= 8 and 1 <= sent <= tc):
        raise ProtocolError("inconsistent tile geometry")
    return Packet(stream, seq, ts, fw, fh, ti, tc, x, y, w, h, codec, scale, frag, nfrag, flags,
                  data[HEADER.size:HEADER.size + plen], sent)


def payload_room(mtu: int, key: bytes | None = None) -> int:
    """Payload bytes one packet of ``mtu`` bytes carries (the rest: header, CRC, tag); ConfigError if too few."""
    room = mtu - HEADER.size - CRC.size - (TAG_LEN if key else 0)
    if room < 64:
        raise ConfigError(f"mtu {mtu} leaves no room for payload")
    return room


def encode_frame(image_rgb: np.ndarray, seq: int, timestamp_us: int, *, stream: int = 0, tile: int = 64,
                 codec: str = "jpeg", quality: int = 80, key: bytes | None = None, mtu: int = 1200,
                 scale: int = 1, lr: bool = False, tiles=None) -> list[bytes]:
    """Split a frame into independently decodable tiles and packets no larger than ``mtu`` bytes.
    ``lr=True`` marks a low-resolution frame that the receiver should upscale by ``scale``; ``tiles`` (indexes
    into ``codec.tile_grid``) sends only those tiles (conditional replenishment)."""
    room = payload_room(mtu, key)
    h, w = image_rgb.shape[:2]
    grid = tile_grid(h, w, tile)
    chosen = sorted(set(range(len(grid)) if tiles is None else tiles))
    if not chosen or chosen[0] < 0 or chosen[-1] >= len(grid):
        raise ConfigError(f"tiles must be a non-empty subset of 0..{len(grid) - 1}")
    out = []
    for i in chosen:
        x, y, tw, th = grid[i]
        data = encode(image_rgb[y:y + th, x:x + tw], codec, quality)
        chunks = [data[k:k + room] for k in range(0, len(data), room)] or [b""]
        if len(chunks) > 255:
            raise ConfigError(f"tile {i} needs {len(chunks)} fragments; use smaller tiles or a larger mtu")
        for f, chunk in enumerate(chunks):
            out.append(encode_packet(Packet(stream, seq, timestamp_us, w, h, i, len(grid), x, y, tw, th,
                                            CODECS[codec], scale, f, len(chunks), FLAG_LR if lr else 0, chunk,
                                            len(chosen)), key))
    return out
