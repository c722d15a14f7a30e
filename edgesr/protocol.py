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
Byte streams (TCP, serial) frame packets with ``edgesr.framing`` (COBS, optional Reed-Solomon). ``decode_packet`` raises ProtocolError (AuthError for a bad/missing tag) and nothing else.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .codec import CODEC_NAMES, CODECS, decode, encode, tile_grid
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


# -- reassembly ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What a receiver accepts from the network; a packet over any limit is dropped and counted (``over_limit``).
    Memory in assembly is bounded by ``max_pending * max_frame_bytes`` plus one canvas per stream."""
    max_frame_pixels: int = 3840 * 2160     # declared frame width x height (one canvas: 3 bytes a pixel)
    max_side: int = 8192                    # declared frame width or height
    max_tiles: int = 4096                   # tiles in one frame
    max_tile_pixels: int = 1024 * 1024      # one tile's width x height (the decoder is checked against it)
    max_frame_bytes: int = 16 << 20         # payload bytes buffered for one frame in assembly
    max_pending: int = 3                    # frames in assembly at once
    max_streams: int = 8                    # stream ids remembered (each keeps its last canvas)
    max_output_pixels: int = 7680 * 4320    # the upscaled size at the receiver (LR frame x scale^2)
    # H.264 (edgesr.video): a decoder keeps up to 16 reference pictures, so its picture size and count are bounded
    # tighter: 1920x1088 x 16 refs x 1.5 bytes = 50 MB per decoder, 2 decoders
    max_video_pixels: int = 1920 * 1088
    max_video_streams: int = 2

    def check(self, p: "Packet") -> str | None:
        """Why packet ``p`` is over a limit, or None."""
        if p.frame_w > self.max_side or p.frame_h > self.max_side or p.frame_w * p.frame_h > self.max_frame_pixels:
            return f"frame {p.frame_w}x{p.frame_h} over {self.max_frame_pixels} pixels / side {self.max_side}"
        if p.tile_count > self.max_tiles:
            return f"{p.tile_count} tiles over {self.max_tiles}"
        if p.codec == H264 and p.frame_w * p.frame_h > self.max_video_pixels:
            return f"H.264 frame {p.frame_w}x{p.frame_h} over {self.max_video_pixels} pixels"
        if p.w * p.h > self.max_tile_pixels and p.codec != H264:  # an H.264 decoder is bounded by frame pixels
            return f"tile {p.w}x{p.h} over {self.max_tile_pixels} pixels"
        if p.flags & FLAG_LR and p.frame_w * p.frame_h * p.scale * p.scale > self.max_output_pixels:
            return f"x{p.scale} of {p.frame_w}x{p.frame_h} over {self.max_output_pixels} output pixels"
        return None


@dataclass
class Frame:
    """A received frame. ``missing_tiles`` lists tile indexes that did not arrive (filled from the previous
    frame when possible, else left black)."""
    image: np.ndarray
    seq: int
    timestamp: float
    stream: int = 0
    missing_tiles: list[int] = field(default_factory=list)
    lr: bool = False
    scale: int = 1
    received_at: float = 0.0
    encoded: dict = field(default_factory=dict, repr=False)  # JPEGs by quality, shared by the robot-side outputs
    codec: str = ""  # how it came: jpeg | webp | png (tiles) | h264; with ``scale`` > 1 (sent at 1/scale, upscaled
    #                  here unless ``lr`` is still set), the mode the device chose


def _newer(a: int, b: int) -> bool:
    """Serial-number arithmetic on 32-bit sequence numbers: is a after b?"""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


class FrameAssembler:
    """Packets (any order, duplicates, losses) -> frames in sequence order, with memory bounded by ``limits``."""

    def __init__(self, max_pending: int | None = None, fill_missing: bool = True, limits: Limits | None = None,
                 recovery=None, hold_s: float = 5.0):
        """``recovery``: the receiver's edgesr.fec.Recovery; while it says parity may still come for an incomplete
        H.264 unit, that unit and the ones after it wait (at most MAX_SPAN frames or ``hold_s`` seconds), so the
        decoder gets it whole instead of carrying a concealed error until the refresh sweep."""
        self.limits = limits or Limits()
        self.recovery, self.hold_s = recovery, hold_s
        self.held: dict[int, list[dict]] = {}  # stream -> H.264 frames waiting for FEC, oldest first
        self.max_pending, self.fill_missing = max_pending or self.limits.max_pending, fill_missing
        self.pending: dict[tuple[int, int], dict] = {}
        self.last_emitted: dict[int, int] = {}
        self.previous: dict[int, np.ndarray] = {}
        self.video: dict[int, object] = {}  # stream -> H264Decoder (edgesr.video), made on its first unit
        self.stats = {"frames": 0, "complete": 0, "partial": 0, "tiles_missing": 0, "duplicates": 0,
                      "late": 0, "bad_tiles": 0, "over_limit": 0, "no_picture": 0,
                      "no_decoder": 0, "packets_expected": 0, "packets_received": 0, "waited": 0}
        self.last_over_limit: str | None = None
        self.last_error: str | None = None  # why the last undecodable tile or unit failed

    def _over(self, why: str) -> list:
        self.stats["over_limit"] += 1
        self.last_over_limit = why
        return []

    def add(self, p: Packet, now: float = 0.0) -> list[Frame]:
        why = self.limits.check(p)
        if why:
            return self._over(why)
        if p.stream not in self.last_emitted and len(self.last_emitted) >= self.limits.max_streams \
                and not any(k[0] == p.stream for k in self.pending):
            return self._over(f"stream {p.stream}: more than {self.limits.max_streams} streams")
        held = next((f for f in self.held.get(p.stream, ()) if f["seq"] == p.seq), None)
        if held is not None:  # a packet FEC rebuilt for a unit that waits for it
            return self._drain(p.stream, now) if self._place(held, p, now) else []
        last = self.last_emitted.get(p.stream)
        if last is not None and not _newer(p.seq, last):
            self.stats["late"] += 1
            return []
        f = self.pending.setdefault((p.stream, p.seq), {"first": p, "seq": p.seq, "tiles": {}, "arrived": now,
                                                        "bytes": 0})
        if not self._place(f, p, now):
            return []
        out = []
        if self._complete(f):
            out += self._emit_until(p.stream, p.seq, now)
        while len(self.pending) > self.max_pending:
            out += self._emit(min(self.pending, key=lambda k: self.pending[k]["arrived"]), now)
        return out

    def _place(self, f: dict, p: Packet, now: float) -> bool:
        """Put packet ``p`` into frame ``f`` (False: it does not belong there, counted)."""
        f["last"] = now
        first = f["first"] = f["first"] or p  # a unit lost whole waits as a placeholder without packets
        if (p.frame_w, p.frame_h, p.tile_count, p.scale, p.flags & FLAG_LR, p.sent) != \
                (first.frame_w, first.frame_h, first.tile_count, first.scale, first.flags & FLAG_LR, first.sent):
            self.stats["bad_tiles"] += 1
            return False
        if f["bytes"] + len(p.payload) > self.limits.max_frame_bytes:
            self._over(f"frame {p.seq} over {self.limits.max_frame_bytes} bytes in assembly")
            return False
        frags = f["tiles"].setdefault(p.tile_index, {"p": p, "frags": {}})
        if p.frag in frags["frags"] or p.nfrag != frags["p"].nfrag or \
                (frags["p"].x, frags["p"].y, frags["p"].w, frags["p"].h) != (p.x, p.y, p.w, p.h):
            self.stats["duplicates"] += 1
            return False
        frags["frags"][p.frag] = p.payload
        f["bytes"] += len(p.payload)
        return True

    @staticmethod
    def _complete(f: dict) -> bool:
        return f["first"] is not None and len(f["tiles"]) == f["first"].sent and all(len(t["frags"]) == t["p"].nfrag for t in f["tiles"].values())

    def expire(self, now: float, max_age: float) -> list[Frame]:
        """Emit (as partial) frames that got no packet for ``max_age`` seconds. Idle time, not age: on a thin
        radio link one frame takes seconds to arrive and must not be cut while its packets keep coming."""
        out = []
        for k in sorted((k for k, f in self.pending.items() if now - f.get("last", f["arrived"]) > max_age),
                        key=lambda k: self.pending[k]["arrived"]):
            if k in self.pending:
                out += self._emit(k, now)
        for stream in [s for s, q in self.held.items() if now - q[0]["last"] > self.hold_s]:
            out += self._drain(stream, now, give_up=True)  # the link went quiet: no parity is coming
        return out

    def _emit_until(self, stream: int, seq: int, now: float) -> list[Frame]:
        older = sorted((k for k in self.pending if k[0] == stream and not _newer(k[1], seq)),
                       key=lambda k: -((seq - k[1]) & 0xFFFFFFFF))  # oldest first, ``seq`` last
        return [fr for k in older for fr in self._emit(k, now)]

    def _emit(self, key, now: float) -> list[Frame]:
        f = self.pending.pop(key)
        first = f["first"]
        stream = first.stream
        last = self.last_emitted.get(stream)
        if last is not None and not _newer(first.seq, last):
            self.stats["late"] += 1
            return []
        if first.codec == H264 and self.recovery is not None and self.recovery.protects(stream, first.seq):
            prev = (first.seq - first.x) & 0xFFFFFFFF  # the unit sent before this one (x: its distance)
            whole = first.x and last is not None and _newer(prev, last)  # lost whole: nothing of it arrived
            if self.held.get(stream) or whole or not self._complete(f):
                q = self.held.setdefault(stream, [])
                if whole:
                    q.append({"first": None, "seq": prev, "tiles": {}, "bytes": 0, "last": now})
                q.append(f)
                self.stats["waited"] += int(bool(whole)) + (not self._complete(f))
                self.last_emitted[stream] = first.seq
                return self._drain(stream, now)
        elif self.held.get(stream):
            self.held[stream].append(f)
            return self._drain(stream, now)
        return self._show(f, now)

    def _drain(self, stream: int, now: float, give_up: bool = False) -> list[Frame]:
        """Decode the waiting H.264 units of ``stream`` in order, up to one that is incomplete while its parity may
        still come (a parity block covers MAX_SPAN frames at most)."""
        from .fec import MAX_SPAN

        q, out = self.held.get(stream, []), []
        while q:
            if not give_up and not self._complete(q[0]) and ((q[-1]["seq"] - q[0]["seq"]) & 0xFFFFFFFF) < MAX_SPAN \
                    and not self.recovery.hopeless(stream, q[0]["seq"], q[-1]["seq"]):
                break
            f = q.pop(0)
            out += self._show(f, now) if f["first"] is not None else []  # lost whole: the decoder goes on without
        if not q:
            self.held.pop(stream, None)
        return out

    def _show(self, f: dict, now: float) -> list[Frame]:
        first = f["first"]
        stream = first.stream
        known = [t["p"].nfrag for t in f["tiles"].values()]  # packets of a tile that never arrived: the mean
        self.stats["packets_expected"] += sum(known) + round((first.sent - len(known)) * sum(known) / len(known))
        self.stats["packets_received"] += sum(len(t["frags"]) for t in f["tiles"].values())
        prev = self.previous.get(stream)
        shape = (first.frame_h, first.frame_w, 3)
        canvas = prev.copy() if self.fill_missing and prev is not None and prev.shape == shape \
            else np.zeros(shape, np.uint8)
        missing = self._video(f, canvas) if first.codec == H264 else self._tiles(f, canvas)
        last = self.last_emitted.get(stream)
        if last is None or _newer(first.seq, last):
            self.last_emitted[stream] = first.seq
        if missing is None:  # an H.264 unit that shows no picture yet (joined mid-stream): nothing to show
            self.stats["no_picture"] += 1
            return []
        lost = first.sent - (first.tile_count - len(missing))  # tiles sent but not here (replenished frames
        if lost <= 0:                                           # leave the unsent ones from the previous frame)
            missing = []
        self.previous[stream] = canvas
        self.stats["frames"] += 1
        self.stats["complete" if not missing else "partial"] += 1
        self.stats["tiles_missing"] += max(0, lost)
        return [Frame(canvas, first.seq, first.timestamp_us / 1e6, stream, missing, bool(first.flags & FLAG_LR),
                      first.scale, now, codec=CODEC_NAMES.get(first.codec, "h264"))]

    def _tiles(self, f: dict, canvas: np.ndarray) -> list[int]:
        """Decode a frame's tiles into ``canvas``; the indexes of those that did not arrive or decode."""
        missing = []
        for i in range(f["first"].tile_count):
            t = f["tiles"].get(i)
            if t is None or len(t["frags"]) != t["p"].nfrag:
                missing.append(i)
                continue
            tp = t["p"]
            try:
                canvas[tp.y:tp.y + tp.h, tp.x:tp.x + tp.w] = decode(b"".join(t["frags"][j] for j in range(tp.nfrag)),
                                                                    (tp.h, tp.w))
            except ProtocolError:
                self.stats["bad_tiles"] += 1
                missing.append(i)
        return missing

    def _video(self, f: dict, canvas: np.ndarray) -> list[int] | None:
        """Decode a frame's H.264 unit into ``canvas``; the chunks (slices) missing, or None when the decoder has no
        picture yet. With later chunks missing the decoder gets the others and conceals the lost slices from its
        references; without the first chunk, or if nothing decodes, the canvas keeps the last picture."""
        first = f["first"]
        chunks = [f["tiles"].get(i) for i in range(first.tile_count)]
        whole = [t is not None and len(t["frags"]) == t["p"].nfrag for t in chunks]
        missing = [i for i, ok in enumerate(whole) if not ok]
        if 0 in missing:  # without its first slice FFmpeg makes a picture that stays broken until the refresh
            return missing  # heals it (measured: 8 loss draws, 57.6 kbit/s): hold the last picture instead
        dec = None
        try:
            from .video import H264Decoder

            dec = self.video.get(first.stream)
            if dec is None:
                if len(self.video) >= self.limits.max_video_streams:
                    self._over(f"stream {first.stream}: more than {self.limits.max_video_streams} H.264 streams")
                    return list(range(first.tile_count))
                dec = self.video[first.stream] = H264Decoder(self.limits.max_video_pixels)
            unit = b"".join(t["frags"][j] for t, ok in zip(chunks, whole) if ok for j in range(t["p"].nfrag))
            img = dec.decode(unit, (first.frame_w, first.frame_h)) if unit else None
        except (ProtocolError, ConfigError) as e:
            self.stats["bad_tiles"] += 1
            self.stats["no_decoder"] += isinstance(e, ConfigError)  # no PyAV on this robot
            self.last_error = str(e)
            if dec is not None and not dec.pictures:
                return None  # joined mid-stream (no SPS/PPS yet): show nothing rather than black
            return list(range(first.tile_count))
        if img is None:
            return missing if (missing and dec.pictures) else None
        canvas[...] = img
        return missing
