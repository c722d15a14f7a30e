"""Packets -> frames at the robot: any order, duplicates and losses, memory bounded by ``Limits``.

Tiles are decoded into the stream's last canvas (a lost tile keeps the previous frame's pixels); H.264 units go to
the stream's decoder in order. With FEC (``edgesr.fec``) an H.264 unit with a packet missing waits while parity can
still rebuild it, and a twin decoder shows the frames meanwhile with the loss concealed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
        # while they wait, a twin decoder that conceals (decodes what arrived) shows them on time, if its picture
        # matched the waiting decoder's at the last unit both decoded whole (errors it concealed have healed)
        self.twin: dict[int, object] = {}
        self.twin_pic: dict[int, np.ndarray] = {}
        self.agree: dict[int, bool] = {}
        self.recent: dict[int, list[dict]] = {}  # stream -> its last units, until the twin starts
        self.max_pending, self.fill_missing = max_pending or self.limits.max_pending, fill_missing
        self.pending: dict[tuple[int, int], dict] = {}
        self.last_emitted: dict[int, int] = {}
        self.previous: dict[int, np.ndarray] = {}
        self.video: dict[int, object] = {}  # stream -> H264Decoder (edgesr.video), made on its first unit
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
        if last is not None and not seq_newer(p.seq, last):
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
        if f["first"] is None:  # a unit lost whole waits as a placeholder; FEC rebuilt it: its packets count
            self.stats["units_lost"] -= 1  # in _show like any unit's, so it is no longer a unit lost whole
        first = f["first"] = f["first"] or p
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
        return f["first"] is not None and len(f["tiles"]) == f["first"].sent and \
            all(len(t["frags"]) == t["p"].nfrag for t in f["tiles"].values())

    @staticmethod
    def _missing(f: dict) -> list[int]:
        """Indexes of the tiles (H.264: chunks) of ``f`` that are not whole."""
        return [i for i in range(f["first"].tile_count)
                if (t := f["tiles"].get(i)) is None or len(t["frags"]) != t["p"].nfrag]

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
        older = sorted((k for k in self.pending if k[0] == stream and not seq_newer(k[1], seq)),
                       key=lambda k: -seq_diff(seq, k[1]))  # oldest first, ``seq`` last
        return [fr for k in older for fr in self._emit(k, now)]

    def _emit(self, key, now: float) -> list[Frame]:
        f = self.pending.pop(key)
        first = f["first"]
        stream = first.stream
        last = self.last_emitted.get(stream)
        if last is not None and not seq_newer(first.seq, last):
            self.stats["late"] += 1
            return []
        twin = self._twin(f) if first.codec == H264 and self.recovery is not None else None
        prev = seq_diff(first.seq, first.x)  # H.264: the unit sent before this one (x: its distance)
        whole = first.codec == H264 and first.x and last is not None and seq_newer(prev, last)  # lost whole
        # a unit lost whole counts as one lost packet in the loss estimate (un-counted if FEC rebuilds it: _place)
        self.stats["units_lost"] += int(bool(whole))
        if first.codec == H264 and self.recovery is not None and self.recovery.protects(stream, first.seq):
            complete = self._complete(f)
            if self.held.get(stream) or whole or not complete:
                q = self.held.setdefault(stream, [])
                if whole:
                    q.append({"first": None, "seq": prev, "tiles": {}, "bytes": 0, "last": now})
                q.append(f)
                self.stats["waited"] += int(bool(whole)) + (not complete)
                self.last_emitted[stream] = first.seq
                out = []
                if twin is not None and self.agree.get(stream):  # on time, concealed; the units before it
                    for e in q:                                     # (already waiting) are decoded, not shown
                        e["shown"] = True
                    self.stats["frames"] += 1
                    self.stats["concealed"] += 1
                    out.append(Frame(twin.copy(), first.seq, first.timestamp_us / 1e6, stream, self._missing(f),
                                     bool(first.flags & FLAG_LR), first.scale, now, codec="h264", concealed=True))
                return out + self._drain(stream, now)
        elif self.held.get(stream):
            self.held[stream].append(f)
            return self._drain(stream, now)
        if whole:
            self._broke(stream, prev, now)
        out = self._show(f, now)
        if twin is not None:
            self.agree[stream] = bool(out) and float(np.mean(np.abs(
                out[-1].image[::8, ::8].astype(np.int16) - twin[::8, ::8]))) < 1.0
        return out

    def _twin(self, f: dict) -> np.ndarray | None:
        """The concealing twin's picture of unit ``f`` (None: it has none yet). The twin runs only for streams that
        send parity (a clean stream is not decoded twice); it starts with the last units that came before the
        first parity (kept: at most MAX_SPAN + 1), so it usually starts at the stream's IDR."""
        stream = f["first"].stream
        if stream not in self.twin:
            if stream not in self.video and len(self.video) >= self.limits.max_video_streams:
                return None  # no decoder for this stream either
            recent = self.recent.setdefault(stream, [])
            recent.append(f)
            del recent[:-(MAX_SPAN + 1)]
            while sum(r["bytes"] for r in recent) > self.limits.max_frame_bytes:
                recent.pop(0)  # bounded like one frame in assembly
            if stream not in self.recovery.last_parity:
                return None
            self.recent.pop(stream)
            for r in recent[:-1]:
                self._twin_decode(r)
        return self._twin_decode(f)

    def _twin_decode(self, f: dict) -> np.ndarray | None:
        stream = f["first"].stream
        pic = self.twin_pic.get(stream)
        shape = (f["first"].frame_h, f["first"].frame_w, 3)
        pic = pic if pic is not None and pic.shape == shape else np.zeros(shape, np.uint8)
        if self._video(f, pic, self.twin) is None or stream not in self.twin:  # no picture, or no decoder slot
            return None
        self.twin_pic[stream] = pic
        return pic

    def _drain(self, stream: int, now: float, give_up: bool = False) -> list[Frame]:
        """Decode the waiting H.264 units of ``stream`` in order, up to one that is incomplete while its parity may
        still come (a parity block covers MAX_SPAN frames at most)."""
        q, out = self.held.get(stream, []), []
        while q:
            if not give_up and not self._complete(q[0]) and seq_diff(q[-1]["seq"], q[0]["seq"]) < MAX_SPAN \
                    and not self.recovery.hopeless(stream, q[0]["seq"], q[-1]["seq"]):
                break
            f = q.pop(0)
            if f["first"] is None:  # lost whole: the decoder goes on without it
                self._broke(stream, f["seq"], now)
                continue
            shown = self._show(f, now, count=not f.get("shown"))
            out += [] if f.get("shown") else shown  # the twin showed it on time: only the decoder catches up
        if not q:
            self.held.pop(stream, None)
        return out

    def _show(self, f: dict, now: float, count: bool = True) -> list[Frame]:
        """Decode frame ``f`` onto the stream's canvas; ``count``: it is a frame the robot gets (stats)."""
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
        if first.codec == H264:
            if missing is None or missing:  # concealed, or no picture yet
                self._broke(stream, first.seq, now)
            else:
                self.broken.decoded(stream, first.seq, bool(f.get("idr")))
        last = self.last_emitted.get(stream)
        if last is None or seq_newer(first.seq, last):
            self.last_emitted[stream] = first.seq
        if missing is None:  # an H.264 unit that shows no picture yet (joined mid-stream): nothing to show
            self.stats["no_picture"] += 1
            return []
        lost = first.sent - (first.tile_count - len(missing))  # tiles sent but not here (replenished frames
        if lost <= 0:                                           # leave the unsent ones from the previous frame)
            missing = []
        self.previous[stream] = canvas
        if count:
            self.stats["frames"] += 1
            self.stats["complete" if not missing else "partial"] += 1
            self.stats["tiles_missing"] += max(0, lost)
        return [Frame(canvas, first.seq, first.timestamp_us / 1e6, stream, missing, bool(first.flags & FLAG_LR),
                      first.scale, now, codec=CODEC_NAMES.get(first.codec, "h264"))]

    def _broke(self, stream: int, seq: int, now: float) -> None:
        self.stats["units_broken"] += 1
        self.broken.broke(stream, seq, now)

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

    def _video(self, f: dict, canvas: np.ndarray, decoders: dict | None = None) -> list[int] | None:
        """Decode a frame's H.264 unit into ``canvas``; the chunks (slices) missing, or None when the decoder has no
        picture yet. With later chunks missing the decoder gets the others and conceals the lost slices from its
        references; without the first chunk, or if nothing decodes, the canvas keeps the last picture."""
        first = f["first"]
        missing = self._missing(f)
        if 0 in missing:  # without its first slice FFmpeg makes a picture that stays broken until the refresh
            return missing  # heals it (measured: 8 loss draws, 57.6 kbit/s): hold the last picture instead
        dec, decoders = None, self.video if decoders is None else decoders
        try:
            from .video import H264Decoder, has_idr

            dec = decoders.get(first.stream)
            if dec is None:
                if len(decoders) >= self.limits.max_video_streams:
                    if decoders is self.video:
                        self._over(f"stream {first.stream}: more than {self.limits.max_video_streams} H.264 streams")
                    return list(range(first.tile_count))
                dec = decoders[first.stream] = H264Decoder(self.limits.max_video_pixels)
            gone = set(missing)
            unit = b"".join(t["frags"][j] for i, t in sorted(f["tiles"].items()) if i not in gone
                            for j in range(t["p"].nfrag))
            img = dec.decode(unit, (first.frame_w, first.frame_h)) if unit else None
            f["idr"] = not missing and has_idr(unit)
        except (ProtocolError, ConfigError) as e:
            if decoders is self.video:  # the twin's errors are the same units' errors: counted once
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
