"""Packets -> frames at the robot: any order, duplicates and losses, memory bounded by ``Limits``.

Tiles are decoded into the stream's last canvas (a lost tile keeps the previous frame's pixels); H.264 units go to
the stream's decoder in order. With FEC (``edgesr.fec``) an H.264 unit with a packet missing waits while parity can
still rebuild it, and a twin decoder shows the frames meanwhile with the loss concealed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backchannel import BrokenPictures
from .codec import CODEC_NAMES, decode
from .errors import ConfigError, ProtocolError
from .fec import MAX_SPAN
from .protocol import FLAG_LR, H264, Packet, seq_diff, seq_newer


@dataclass(frozen=True)
class Limits:
    """What a receiver accepts from the network; a packet over any limit is dropped and counted (``over_limit``).
    Memory in assembly is bounded by ``max_pending * max_frame_bytes`` plus one canvas per stream; with FEC, per
    H.264 stream, up to MAX_SPAN + 1 units waiting for parity and ``max_frame_bytes`` of units kept for the twin."""
    max_frame_pixels: int = 3840 * 2160     # declared frame width x height (one canvas: 3 bytes a pixel)
    max_side: int = 8192                    # declared frame width or height
    max_tiles: int = 4096                   # tiles in one frame
    max_tile_pixels: int = 1024 * 1024      # one tile's width x height (the decoder is checked against it)
    max_frame_bytes: int = 16 << 20         # payload bytes buffered for one frame in assembly
    max_pending: int = 3                    # frames in assembly at once
    max_streams: int = 8                    # stream ids remembered (each keeps its last canvas)
    max_output_pixels: int = 7680 * 4320    # the upscaled size at the receiver (LR frame x scale^2)
    # H.264 (edgesr.video): a decoder keeps up to 16 reference pictures, so its picture size and count are bounded
    # tighter: 1920x1088 x 16 refs x 1.5 bytes = 50 MB per decoder, 2 streams (each with a twin decoder under FEC)
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
    concealed: bool = False  # H.264: shown while an earlier unit waits for FEC, with its loss concealed


@dataclass
class _Tile:
    """One tile (H.264: one chunk of the unit) in assembly: its first packet and the fragments that came."""
    p: Packet
    frags: dict[int, bytes] = field(default_factory=dict)

    @property
    def whole(self) -> bool:
        return len(self.frags) == self.p.nfrag


@dataclass
class _Unit:
    """A frame (or H.264 unit) in assembly. ``first`` is None for an H.264 unit lost whole that waits for FEC."""
    first: Packet | None
    seq: int
    arrived: float
    last: float
    tiles: dict[int, _Tile] = field(default_factory=dict)
    nbytes: int = 0
    shown: bool = False   # the twin decoder showed it on time (only the main decoder still has to decode it)
    idr: bool = False     # decoded whole and self-contained (set by _video)

    @property
    def head(self) -> Packet:
        """The unit's first packet; only a unit lost whole (waiting for FEC) has none, and it is never decoded."""
        assert self.first is not None, "a placeholder unit has no packets"
        return self.first

    @property
    def complete(self) -> bool:
        return self.first is not None and len(self.tiles) == self.first.sent and \
            all(t.whole for t in self.tiles.values())

    def missing(self) -> list[int]:
        """Indexes of the tiles (H.264: chunks) that are not whole."""
        return [i for i in range(self.head.tile_count) if (t := self.tiles.get(i)) is None or not t.whole]


@dataclass
class _Stream:
    """What the robot keeps of one stream between frames."""
    last_emitted: int | None = None       # seq of the newest frame emitted (older packets are late)
    canvas: np.ndarray | None = None      # the last picture: lost tiles keep its pixels
    decoder: Any = None                   # H.264: edgesr.video.H264Decoder, made on the stream's first unit


@dataclass
class _Held:
    """H.264 with FEC: the units of one stream waiting for parity, and the concealing twin decoder."""
    units: list[_Unit] = field(default_factory=list)   # waiting, oldest first
    twin: Any = None                     # a second decoder that conceals (decodes what arrived)
    twin_pic: np.ndarray | None = None
    agree: bool = False                  # the twin's picture matched the main decoder's at the last whole unit
    recent: list[_Unit] | None = field(default_factory=list)  # the last units until the twin starts (None: started)


class FrameAssembler:
    """Packets (any order, duplicates, losses) -> frames in sequence order, with memory bounded by ``limits``."""

    def __init__(self, max_pending: int | None = None, fill_missing: bool = True, limits: Limits | None = None,
                 recovery=None, hold_s: float = 5.0):
        """``recovery``: the receiver's edgesr.fec.Recovery; while it says parity may still come for an incomplete
        H.264 unit, that unit and the ones after it wait (at most MAX_SPAN frames or ``hold_s`` seconds), so the
        decoder gets it whole instead of carrying a concealed error until the refresh sweep. Meanwhile a twin
        decoder that conceals shows them on time, if its picture matched the waiting decoder's at the last unit
        both decoded whole (the errors it concealed have healed)."""
        self.limits = limits or Limits()
        self.recovery, self.hold_s = recovery, hold_s
        self.max_pending, self.fill_missing = max_pending or self.limits.max_pending, fill_missing
        self.pending: dict[tuple[int, int], _Unit] = {}
        self.streams: dict[int, _Stream] = {}
        self.held: dict[int, _Held] = {}  # H.264 streams that send parity (made on their first protected unit)
        self.stats = {"frames": 0, "complete": 0, "partial": 0, "tiles_missing": 0, "duplicates": 0,
                      "late": 0, "bad_tiles": 0, "over_limit": 0, "no_picture": 0,
                      "no_decoder": 0, "packets_expected": 0, "packets_received": 0, "units_lost": 0, "waited": 0,
                      "concealed": 0, "units_broken": 0}
        # H.264 streams whose decoder went on without a unit (or part of one): they show the error until an IDR
        # comes (or the refresh sweep heals it); what the robot asks the device to refresh (edgesr.backchannel)
        self.broken = BrokenPictures()
        self.last_over_limit: str | None = None
        self.last_error: str | None = None  # why the last undecodable tile or unit failed

    def _over(self, why: str) -> list:
        self.stats["over_limit"] += 1
        self.last_over_limit = why
        return []

    def _last(self, stream: int) -> int | None:
        s = self.streams.get(stream)
        return s.last_emitted if s is not None else None

    def _emitted(self, stream: int, seq: int) -> None:
        s = self.streams.setdefault(stream, _Stream())
        if s.last_emitted is None or seq_newer(seq, s.last_emitted):
            s.last_emitted = seq

    def _decoders(self, twin: bool) -> int:
        """H.264 decoders (main, or twins) in use: bounded by ``max_video_streams``."""
        if twin:
            return sum(h.twin is not None for h in self.held.values())
        return sum(s.decoder is not None for s in self.streams.values())

    def add(self, p: Packet, now: float = 0.0) -> list[Frame]:
        why = self.limits.check(p)
        if why:
            return self._over(why)
        known = sum(s.last_emitted is not None for s in self.streams.values())
        if self._last(p.stream) is None and known >= self.limits.max_streams \
                and not any(k[0] == p.stream for k in self.pending):
            return self._over(f"stream {p.stream}: more than {self.limits.max_streams} streams")
        hold = self.held.get(p.stream)
        waiting = next((u for u in hold.units if u.seq == p.seq), None) if hold is not None else None
        if waiting is not None:  # a packet FEC rebuilt for a unit that waits for it
            return self._drain(p.stream, now) if self._place(waiting, p, now) else []
        last = self._last(p.stream)
        if last is not None and not seq_newer(p.seq, last):
            self.stats["late"] += 1
            return []
        u = self.pending.setdefault((p.stream, p.seq), _Unit(p, p.seq, now, now))
        if not self._place(u, p, now):
            return []
        out = []
        if u.complete:
            out += self._emit_until(p.stream, p.seq, now)
        while len(self.pending) > self.max_pending:
            out += self._emit(min(self.pending, key=lambda k: self.pending[k].arrived), now)
        return out

    def _place(self, u: _Unit, p: Packet, now: float) -> bool:
        """Put packet ``p`` into unit ``u`` (False: it does not belong there, counted)."""
        u.last = now
        if u.first is None:  # a unit lost whole waits as a placeholder; FEC rebuilt it: its packets count
            self.stats["units_lost"] -= 1  # in _show like any unit's, so it is no longer a unit lost whole
            u.first = p
        first = u.first
        if (p.frame_w, p.frame_h, p.tile_count, p.scale, p.flags & FLAG_LR, p.sent) != \
                (first.frame_w, first.frame_h, first.tile_count, first.scale, first.flags & FLAG_LR, first.sent):
            self.stats["bad_tiles"] += 1
            return False
        if u.nbytes + len(p.payload) > self.limits.max_frame_bytes:
            self._over(f"frame {p.seq} over {self.limits.max_frame_bytes} bytes in assembly")
            return False
        t = u.tiles.setdefault(p.tile_index, _Tile(p))
        if p.frag in t.frags or p.nfrag != t.p.nfrag or (t.p.x, t.p.y, t.p.w, t.p.h) != (p.x, p.y, p.w, p.h):
            self.stats["duplicates"] += 1
            return False
        t.frags[p.frag] = p.payload
        u.nbytes += len(p.payload)
        return True

    def expire(self, now: float, max_age: float) -> list[Frame]:
        """Emit (as partial) frames that got no packet for ``max_age`` seconds. Idle time, not age: on a thin
        radio link one frame takes seconds to arrive and must not be cut while its packets keep coming."""
        out = []
        for k in sorted((k for k, u in self.pending.items() if now - u.last > max_age),
                        key=lambda k: self.pending[k].arrived):
            if k in self.pending:
                out += self._emit(k, now)
        for stream in [s for s, h in self.held.items() if h.units and now - h.units[0].last > self.hold_s]:
            out += self._drain(stream, now, give_up=True)  # the link went quiet: no parity is coming
        return out

    def _emit_until(self, stream: int, seq: int, now: float) -> list[Frame]:
        older = sorted((k for k in self.pending if k[0] == stream and not seq_newer(k[1], seq)),
                       key=lambda k: -seq_diff(seq, k[1]))  # oldest first, ``seq`` last
        return [fr for k in older for fr in self._emit(k, now)]

    def _emit(self, key, now: float) -> list[Frame]:
        u = self.pending.pop(key)
        first = u.head
        stream = first.stream
        last = self._last(stream)
        if last is not None and not seq_newer(first.seq, last):
            self.stats["late"] += 1
            return []
        h264 = first.codec == H264
        twin = self._twin(u) if h264 and self.recovery is not None else None
        prev = seq_diff(first.seq, first.x)  # H.264: the unit sent before this one (x: its distance)
        whole = h264 and first.x and last is not None and seq_newer(prev, last)  # lost whole
        # a unit lost whole counts as one lost packet in the loss estimate (un-counted if FEC rebuilds it: _place)
        self.stats["units_lost"] += int(bool(whole))
        hold = self.held.get(stream)
        if h264 and self.recovery is not None and self.recovery.protects(stream, first.seq):
            complete = u.complete
            if (hold is not None and hold.units) or whole or not complete:
                hold = self.held.setdefault(stream, _Held())
                if whole:
                    hold.units.append(_Unit(None, prev, now, now))
                hold.units.append(u)
                self.stats["waited"] += int(bool(whole)) + (not complete)
                self._emitted(stream, first.seq)
                out = []
                if twin is not None and hold.agree:  # on time, concealed; the units before it (already
                    for e in hold.units:             # waiting) are decoded, not shown
                        e.shown = True
                    self.stats["frames"] += 1
                    self.stats["concealed"] += 1
                    out.append(Frame(twin.copy(), first.seq, first.timestamp_us / 1e6, stream, u.missing(),
                                     bool(first.flags & FLAG_LR), first.scale, now, codec="h264", concealed=True))
                return out + self._drain(stream, now)
        elif hold is not None and hold.units:
            hold.units.append(u)
            return self._drain(stream, now)
        if whole:
            self._broke(stream, prev, now)
        out = self._show(u, now)
        if twin is not None:
            self.held[stream].agree = bool(out) and float(np.mean(np.abs(
                out[-1].image[::8, ::8].astype(np.int16) - twin[::8, ::8]))) < 1.0
        return out

    def _twin(self, u: _Unit) -> np.ndarray | None:
        """The concealing twin's picture of unit ``u`` (None: it has none yet). The twin runs only for streams that
        send parity (a clean stream is not decoded twice); it starts with the last units that came before the
        first parity (kept: at most MAX_SPAN + 1), so it usually starts at the stream's IDR."""
        stream = u.head.stream
        hold = self.held.get(stream)
        if hold is None or hold.recent is not None:
            s = self.streams.get(stream)
            if (s is None or s.decoder is None) and self._decoders(twin=False) >= self.limits.max_video_streams:
                return None  # no decoder for this stream either
            hold = self.held.setdefault(stream, _Held())
            recent = hold.recent
            assert recent is not None  # the twin has not started
            recent.append(u)
            del recent[:-(MAX_SPAN + 1)]
            while sum(r.nbytes for r in recent) > self.limits.max_frame_bytes:
                recent.pop(0)  # bounded like one frame in assembly
            if stream not in self.recovery.last_parity:
                return None
            hold.recent = None
            for r in recent[:-1]:
                self._twin_decode(r, hold)
        return self._twin_decode(u, hold)

    def _twin_decode(self, u: _Unit, hold: _Held) -> np.ndarray | None:
        pic = hold.twin_pic
        shape = (u.head.frame_h, u.head.frame_w, 3)
        pic = pic if pic is not None and pic.shape == shape else np.zeros(shape, np.uint8)
        if self._video(u, pic, twin=True) is None or hold.twin is None:  # no picture, or no decoder slot
            return None
        hold.twin_pic = pic
        return pic

    def _drain(self, stream: int, now: float, give_up: bool = False) -> list[Frame]:
        """Decode the waiting H.264 units of ``stream`` in order, up to one that is incomplete while its parity may
        still come (a parity block covers MAX_SPAN frames at most)."""
        hold = self.held.get(stream)
        q, out = (hold.units if hold is not None else []), []
        while q:
            if not give_up and not q[0].complete and seq_diff(q[-1].seq, q[0].seq) < MAX_SPAN \
                    and not self.recovery.hopeless(stream, q[0].seq, q[-1].seq):
                break
            u = q.pop(0)
            if u.first is None:  # lost whole: the decoder goes on without it
                self._broke(stream, u.seq, now)
                continue
            shown = self._show(u, now, count=not u.shown)
            out += [] if u.shown else shown  # the twin showed it on time: only the decoder catches up
        return out

    def _show(self, u: _Unit, now: float, count: bool = True) -> list[Frame]:
        """Decode unit ``u`` onto the stream's canvas; ``count``: it is a frame the robot gets (stats)."""
        first = u.head
        stream = first.stream
        known = [t.p.nfrag for t in u.tiles.values()]  # packets of a tile that never arrived: the mean
        self.stats["packets_expected"] += sum(known) + round((first.sent - len(known)) * sum(known) / len(known))
        self.stats["packets_received"] += sum(len(t.frags) for t in u.tiles.values())
        st = self.streams.setdefault(stream, _Stream())
        prev = st.canvas
        shape = (first.frame_h, first.frame_w, 3)
        filled = self.fill_missing and prev is not None and prev.shape == shape
        canvas = prev.copy() if filled and prev is not None else np.zeros(shape, np.uint8)
        missing = self._video(u, canvas) if first.codec == H264 else self._tiles(u, canvas)
        if missing is not None and len(missing) == first.tile_count and not filled:
            missing = None  # nothing decoded and no last picture of this size: show nothing, never a black frame
        if first.codec == H264:
            if missing is None or missing:  # concealed, or no picture yet
                self._broke(stream, first.seq, now)
            else:
                self.broken.decoded(stream, first.seq, u.idr)
        self._emitted(stream, first.seq)
        if missing is None:  # an H.264 unit that shows no picture yet (joined mid-stream): nothing to show
            self.stats["no_picture"] += 1
            return []
        lost = first.sent - (first.tile_count - len(missing))  # tiles sent but not here (replenished frames
        if lost <= 0:                                           # leave the unsent ones from the previous frame)
            missing = []
        st.canvas = canvas
        if count:
            self.stats["frames"] += 1
            self.stats["complete" if not missing else "partial"] += 1
            self.stats["tiles_missing"] += max(0, lost)
        return [Frame(canvas, first.seq, first.timestamp_us / 1e6, stream, missing, bool(first.flags & FLAG_LR),
                      first.scale, now, codec=CODEC_NAMES.get(first.codec, "h264"))]

    def _broke(self, stream: int, seq: int, now: float) -> None:
        self.stats["units_broken"] += 1
        self.broken.broke(stream, seq, now)

    def _tiles(self, u: _Unit, canvas: np.ndarray) -> list[int]:
        """Decode a frame's tiles into ``canvas``; the indexes of those that did not arrive or decode."""
        missing = []
        for i in range(u.head.tile_count):
            t = u.tiles.get(i)
            if t is None or not t.whole:
                missing.append(i)
                continue
            tp = t.p
            try:
                canvas[tp.y:tp.y + tp.h, tp.x:tp.x + tp.w] = decode(b"".join(t.frags[j] for j in range(tp.nfrag)),
                                                                    (tp.h, tp.w))
            except ProtocolError:
                self.stats["bad_tiles"] += 1
                missing.append(i)
        return missing

    def _video(self, u: _Unit, canvas: np.ndarray, twin: bool = False) -> list[int] | None:
        """Decode a unit into ``canvas`` (with the twin decoder: ``twin``); the chunks (slices) missing, or None when
        the decoder has no picture yet. With later chunks missing the decoder gets the others and conceals the lost
        slices from its references; without the first chunk, or if nothing decodes, the canvas keeps the last
        picture."""
        first = u.head
        missing = u.missing()
        if 0 in missing:  # without its first slice FFmpeg makes a picture that stays broken until the refresh
            return missing  # heals it (measured: 8 loss draws, 57.6 kbit/s): hold the last picture instead
        hold, st = (self.held[first.stream], None) if twin else (None, self.streams.setdefault(first.stream, _Stream()))
        dec = hold.twin if hold is not None else st.decoder if st is not None else None
        try:
            from .video import H264Decoder, has_idr

            if dec is None:
                if self._decoders(twin) >= self.limits.max_video_streams:
                    if not twin:
                        self._over(f"stream {first.stream}: more than {self.limits.max_video_streams} H.264 streams")
                    return list(range(first.tile_count))
                dec = H264Decoder(self.limits.max_video_pixels)
                if hold is not None:
                    hold.twin = dec
                elif st is not None:
                    st.decoder = dec
            gone = set(missing)
            unit = b"".join(t.frags[j] for i, t in sorted(u.tiles.items()) if i not in gone
                            for j in range(t.p.nfrag))
            img = dec.decode(unit, (first.frame_w, first.frame_h)) if unit else None
            u.idr = not missing and has_idr(unit)
        except (ProtocolError, ConfigError) as e:
            if not twin:  # the twin's errors are the same units' errors: counted once
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
