"""Forward error correction across packets (zfec erasure coding), pure functions of bytes like protocol.

A block of k data packets (CRC-checked, so a corrupted packet is an erasure) is cut into K symbols of equal size
(the packets end to end); its parity packets carry M parity symbols, and any K of the K + M symbols rebuild the
block (a lost packet erases the symbols it touches), so parity weighs what the data weighs. A block is one frame's
packets, or those of up to ``MAX_SPAN`` consecutive frames: on a thin link a frame is one or two packets, and a
parity packet per frame would double it (``Protector``). A parity packet:

    magic "EF" | version | stream | last frame seq | k | span (frames) | K | M | symbol size | first symbol |
    k x (length, CRC32) | parity symbols | CRC32 (all of it)

The (length, CRC32) list lets the robot place the data packets it did get (each ends with its own CRC32) without
any new field in them. zfec is the `fec` extra; a robot without it ignores parity packets (counted).
A recovered packet of a frame already shown is not lost work: the robot's H.264 decoder waits for it
(``FrameAssembler`` holds an incomplete H.264 unit while parity may still come), so the stream has no
error to drag along until the refresh sweep.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import ConfigError, ProtocolError
from .extras import need
from .protocol import FLAG_AUTH, TAG_LEN, seq_diff, seq_newer

MAGIC, VERSION = b"EF", 3
HEAD = struct.Struct("!2sBHIBBHHHH")  # magic, version, stream, last seq, k, span, K, M, symbol size, first symbol
ENTRY = struct.Struct("!HI")
CRC = struct.Struct("!I")
MAX_BLOCKS = 255  # data packets in a block
MAX_SYMBOLS = 256  # K + M (zfec's limit)
DATA_SYMBOLS = 96  # a block is cut into at most this many data symbols (so parity up to 1.6x the data fits)
MAX_SPAN = 8  # frame numbers one parity block may cover (the robot waits at most this many frames)
BLOCK_PARITY = 2  # a block closes when it has earned this many parity packets (or spans max_frames)
# Link bytes a frame under which parity costs more than the losses it repairs: its fixed costs (whole packets, the
# block's packet list, a key unit's extra packet) weigh half of such frames' data, and a lost H.264 unit of a few
# hundred bytes is a small update the next ones conceal. 19.2 kbit/s, 5 fps (480 bytes a frame), 5 % loss, `auto`,
# three 13 s segments of the shared clip: 33.77 / 30.57 / 30.46 dB without parity, 29.96 / 28.68 / 27.95 with 25 %.
# At 2 fps (1200 bytes) parity won or tied on three segments (33.17 / 34.07 / 31.18 against 30.06 / 31.68 / 31.28)
# and its worst loss draw stayed at 30 dB where one without fell to 23.
FEC_MIN_FRAME = 600


def _zfec():
    return need("zfec", "FEC (fec = ...)")


def _ident(packet: bytes) -> tuple[int, int]:
    """(stream, seq) of an edgesr data packet (protocol header: stream at byte 4, seq at byte 6)."""
    return struct.unpack_from("!HI", packet, 4)


def _symbols(total: int) -> tuple[int, int]:
    """(K, symbol size) for a block of ``total`` bytes."""
    size = max(1, -(-total // DATA_SYMBOLS))
    return -(-total // size), size


def _payload(longest: float, head: float) -> float:
    """Bytes of parity symbols in one parity packet: as long as the longest data packet, unless its header (the
    block's packet list) takes more than half of that; then the header comes on top (parity packets of one symbol
    each would repeat it)."""
    return longest - head if 2 * head <= longest else longest


def protect(packets: list[bytes], parity: float) -> list[bytes]:
    """Parity packets for data ``packets`` of one stream (one frame's, or those of up to MAX_SPAN consecutive
    frames, in order; send them after the data) that rebuild any round(``parity``) of them (at least one), the
    longest included, unless that would weigh more than the block itself (then fewer). The block's bytes are cut
    into symbols, so parity is not padded to the longest packet (on a thin link a block is one large unit and a few
    small ones); a parity packet is no longer than the longest data packet unless its packet list takes more than
    half of that."""
    k = len(packets)
    if parity <= 0 or not packets:
        return []
    if k > MAX_BLOCKS:
        raise ConfigError(f"FEC: a block of {k} packets exceeds {MAX_BLOCKS}; use larger packets or tiles")
    (stream, first), (_, seq) = _ident(packets[0]), _ident(packets[-1])
    span = seq_diff(seq, first) + 1
    if span > MAX_SPAN:
        raise ConfigError(f"FEC: a parity block covers at most {MAX_SPAN} frames, not {span}")
    data = b"".join(packets)
    K, size = _symbols(len(data))
    longest, lengths = max(map(len, packets)), sorted(map(len, packets))
    entries = b"".join(ENTRY.pack(len(p), _crc_of(p)) for p in packets)
    head = HEAD.size + len(entries) + CRC.size
    room = max(1, int(_payload(longest, head)) // size)  # symbols in a parity packet
    # any n lost packets: the n longest, each erasing at most ceil(L / size) + 1 symbols; fewer where the parity
    # would weigh more than the block (many small packets: symbols longer than a packet, a long list in each)
    n = max(1, int(round(parity)))
    while True:
        m = min(sum(-(-length // size) + 1 for length in lengths[-n:]), MAX_SYMBOLS - K)
        if n == 1 or m * size + -(-m // room) * head <= len(data):
            break
        n -= 1
    data = data.ljust(K * size, b"\0")
    coded = _zfec().Encoder(K, K + m).encode([data[j * size:(j + 1) * size] for j in range(K)], tuple(range(K, K + m)))
    count = -(-m // -(-m // room))  # as few packets as fit, with the symbols spread evenly
    out = []
    for at in range(0, m, count):
        body = HEAD.pack(MAGIC, VERSION, stream, seq, k, span, K, m, size, at) + entries + \
            b"".join(bytes(c) for c in coded[at:at + count])
        out.append(body + CRC.pack(zlib.crc32(body)))
    return out


def block_frames(fps: float) -> int:
    """Frames one parity block of an H.264 stream may span at ``fps``: 2 s of them, 2..MAX_SPAN (a 4 s block at
    19.2 kbit/s 2 fps, 5 % loss: 32.27 dB against 33.37 for 2 s, 16 draws)."""
    return min(MAX_SPAN, max(2, int(2 * fps)))


def parity_ratio(share: float, frame_bytes: float, packet: int, max_frames: int = MAX_SPAN) -> float:
    """Parity bytes per data byte that ``Protector(share, max_frames)`` adds to a stream of frames of about
    ``frame_bytes`` in packets of at most ``packet`` bytes: the rate controller's estimate (key units aside)."""
    import math

    if share <= 0 or frame_bytes <= 0:
        return 0.0
    q = max(1, math.ceil(frame_bytes / packet))                                 # packets a frame
    frames = max(1, min(max_frames, math.ceil(BLOCK_PARITY / (share * q))))     # frames a block
    k, block = frames * q, frames * frame_bytes
    n = max(1, int(round(share * k)))
    longest = min(packet, 1.4 * frame_bytes / q)  # frames vary: the block's longest packet is above the mean
    size = max(1.0, block / DATA_SYMBOLS)
    symbols = n * (math.ceil(longest / size) + 1) * size
    head = HEAD.size + k * ENTRY.size + CRC.size
    return (symbols + math.ceil(symbols / max(size, _payload(longest, head))) * head) / block


class Protector:
    """Device side, one stream: data packets gather into a block until it holds BLOCK_PARITY parity packets' worth
    (``share`` x k >= 2: 8 packets at 25 %), spans ``max_frames`` frames or ends with an H.264 IDR or refresh start
    (its parity then comes at once: a robot that does not know yet that parity is coming shows it partial, and a
    lost piece of it costs a whole sweep); its parity rebuilds round(share x k) of its packets (``protect``), one
    more for a key unit. A frame of one or two packets shares its parity with the next frames instead of doubling
    (per-frame parity cost 2.9 dB at 19.2 kbit/s, 5 fps, 5 % loss)."""

    def __init__(self, share: float, max_frames: int = MAX_SPAN):
        self.share, self.max_frames, self.key = share, min(max_frames, MAX_SPAN), False
        self.block: list = []

    def add(self, packets: list[bytes], key: bool = False, alone: bool = False) -> list[bytes]:
        """One frame's data packets -> the parity packets to send after them (often none yet). ``alone``: a frame
        of tiles, protected by itself with share x k packets' worth of parity, none below half a packet (the robot
        shows a tile frame as soon as the next one is complete, so parity from later frames would come too late)."""
        if not packets or self.share <= 0:
            return []
        out = []
        if self.block:  # a block spans at most max_frames frame numbers (the sink may skip some) and 255 packets
            stream, seq = _ident(packets[0])
            first = _ident(self.block[0])
            if alone or first[0] != stream or seq_diff(seq, first[1]) >= self.max_frames or \
                    len(self.block) + len(packets) + 2 > MAX_BLOCKS:
                out = self._close()
        if alone:
            return out + (protect(packets, self.share * len(packets)) if self.share * len(packets) >= 0.5 else [])
        self.block += packets
        self.key |= key
        span = seq_diff(_ident(packets[-1])[1], _ident(self.block[0])[1]) + 1
        if len(self.block) * self.share >= BLOCK_PARITY or span >= self.max_frames or key:
            out += self._close()
        return out

    def _close(self) -> list[bytes]:
        parity = protect(self.block, self.share * len(self.block) + int(self.key))
        self.block, self.key = [], False
        return parity


def parity_share(loss: float, frame_bytes: float | None = None) -> float:
    """The sink's ``fec`` for a link that loses ``loss`` of its packets (as ``edgesr receive`` measures it): 5x the
    loss, at most 1 (at 5 %: 25 % parity); none where a frame gets under FEC_MIN_FRAME bytes of the link
    (``frame_bytes``: link bytes a frame), see there."""
    if frame_bytes is not None and frame_bytes < FEC_MIN_FRAME:
        return 0.0
    return min(1.0, 5.0 * max(0.0, loss))


def _crc_of(packet: bytes) -> int:
    """A data packet's own CRC32 (before its HMAC tag, when flags say it has one)."""
    end = len(packet) - (TAG_LEN if packet[3] & FLAG_AUTH else 0)
    return CRC.unpack_from(packet, end - CRC.size)[0]


def is_parity(raw: bytes) -> bool:
    return raw[:2] == MAGIC


@dataclass
class _Group:
    k: int
    K: int                                       # data symbols
    m: int                                       # parity symbols
    size: int                                    # symbol size
    entries: list                                # (length, CRC32) of each data packet
    frames: list                                 # (stream, seq) of the frames it covers
    data: dict = field(default_factory=dict)     # packet index -> data packet
    parity: dict = field(default_factory=dict)   # symbol number (K..K+m-1) -> parity symbol
    done: bool = False
    at: list = field(init=False)                 # where each data packet starts in the block, and its end

    def __post_init__(self):
        self.at = [0]
        for length, _ in self.entries:
            self.at.append(self.at[-1] + length)


class Recovery:
    """Robot side: parity packets + the data packets that arrived -> the data packets that did not (bounded)."""

    def __init__(self, max_groups: int = 8, max_bytes: int = 16 << 20):
        self.groups: dict[tuple[int, int], _Group] = {}
        self.covers: dict[tuple[int, int], tuple[int, int]] = {}  # (stream, frame seq) -> its group's key
        self.unplaced: dict[tuple[int, int], list[bytes]] = {}
        self.max_groups, self.max_bytes = max_groups, max_bytes
        self.last_parity: dict[int, int] = {}  # stream -> last frame seq of its newest parity block
        self.stats = {"parity": 0, "recovered": 0, "unrecoverable": 0, "bad_parity": 0, "no_zfec": 0}

    def protects(self, stream: int, seq: int) -> bool:
        """Whether frame ``seq`` of ``stream`` may still get parity (the stream sent parity lately): the robot's
        H.264 decoder then waits for a lost packet of it instead of concealing."""
        last = self.last_parity.get(stream)
        return last is not None and seq_diff(seq, last) <= 2 * MAX_SPAN

    def hopeless(self, stream: int, seq: int, newest: int) -> bool:
        """Whether frame ``seq`` can no longer be rebuilt: its block's parity came, did not suffice, and frame
        ``newest`` (after the block) has arrived, so nothing more of the block will."""
        key = self.covers.get((stream, seq))
        g = self.groups.get(key) if key is not None else None
        return g is not None and key is not None and not g.done and seq_newer(newest, key[1])

    def data(self, raw: bytes) -> None:
        """Note a data packet that passed decode_packet (it may complete a group later)."""
        key = _ident(raw)
        cover = self.covers.get(key)
        g = self.groups.get(cover) if cover is not None else None
        if g is None:
            kept = self.unplaced.setdefault(key, [])
            if len(kept) < MAX_BLOCKS:
                kept.append(raw)
            self._bound()
            return
        self._place(g, raw)

    def _place(self, g: _Group, raw: bytes) -> None:
        crc = _crc_of(raw)
        for i, (length, c) in enumerate(g.entries):
            if c == crc and length == len(raw):
                g.data[i] = raw
                return

    def parity(self, raw: bytes) -> list[bytes]:
        """Take a parity packet; returns the recovered data packets (to decode as if they had arrived)."""
        self.stats["parity"] += 1
        try:
            g = self._parse(raw)
        except ProtocolError:
            self.stats["bad_parity"] += 1
            return []
        if g is None or g.done:
            return []
        for f in g.frames:
            for p in self.unplaced.pop(f, []):
                self._place(g, p)
        if len(g.data) == g.k:
            g.done = True
            return []
        known = self._known(g)
        if len(known) + len(g.parity) < g.K:
            return []
        try:
            zfec = _zfec()
        except ConfigError:
            self.stats["no_zfec"] += 1
            return []
        have = (sorted(known) + sorted(g.parity))[:g.K]
        blocks = tuple(known[j] if j < g.K else g.parity[j] for j in have)
        block = b"".join(bytes(b) for b in zfec.Decoder(g.K, g.K + g.m).decode(blocks, tuple(have)))
        g.done = True
        at, out = g.at, []
        for i, (length, crc) in enumerate(g.entries):
            p = block[at[i]:at[i] + length]
            if i not in g.data and _crc_of(p) == crc:
                out.append(p)
        self.stats["recovered"] += len(out)
        return out

    @staticmethod
    def _known(g: _Group) -> dict[int, bytes]:
        """Data symbols that runs of consecutive packets that arrived cover whole (the padding past the block's end
        is zeros); memory in proportion to what arrived."""
        at, s, i = g.at, g.size, 0
        out: dict[int, bytes] = {}
        while i < g.k:
            j = i
            while j < g.k and j in g.data:
                j += 1
            if j > i:
                a, b = at[i], at[j]
                end = b if b < at[-1] else g.K * s
                run = b"".join(g.data[x] for x in range(i, j)).ljust(end - a, b"\0")
                out.update((n, run[n * s - a:(n + 1) * s - a]) for n in range(-(-a // s), end // s))
            i = j + 1
        return out

    def _parse(self, raw: bytes) -> _Group | None:
        if len(raw) < HEAD.size + CRC.size or \
                CRC.unpack_from(raw, len(raw) - CRC.size)[0] != zlib.crc32(raw[:-CRC.size]):
            raise ProtocolError("parity packet CRC mismatch")
        magic, version, stream, seq, k, span, K, m, size, first = HEAD.unpack_from(raw)
        if version != VERSION or not 1 <= k <= MAX_BLOCKS or not 1 <= span <= MAX_SPAN or K < 1 or m < 1 or \
                K + m > MAX_SYMBOLS or size < 1 or K * size > self.max_bytes or first >= m:
            raise ProtocolError("bad parity header")
        body = HEAD.size + k * ENTRY.size
        payload = raw[body:-CRC.size]
        count = len(payload) // size
        if count < 1 or len(payload) != count * size or first + count > m:
            raise ProtocolError("parity symbols out of bounds")
        entries = [ENTRY.unpack_from(raw, HEAD.size + j * ENTRY.size) for j in range(k)]
        total = sum(length for length, _ in entries)
        if _symbols(total) != (K, size):
            raise ProtocolError("parity lengths disagree with its symbols")
        key = (stream, seq)
        g = self.groups.get(key)
        if g is None:
            frames = [(stream, seq_diff(seq, j)) for j in range(span)]
            g = self.groups[key] = _Group(k, K, m, size, entries, frames)
            self.covers.update((f, key) for f in frames)
            self.last_parity.pop(stream, None)
            self.last_parity[stream] = seq  # newest last: the dict keeps the max_groups streams heard last
            self._bound()
        elif (g.k, g.K, g.m, g.size, g.entries, len(g.frames)) != (k, K, m, size, entries, span):
            raise ProtocolError("parity packets disagree")
        for i in range(count):
            g.parity[K + first + i] = payload[i * size:(i + 1) * size]
        return self.groups.get(key)

    def _bound(self) -> None:
        while len(self.groups) > self.max_groups:
            gone = self.groups.pop(next(iter(self.groups)))
            for f in gone.frames:
                self.covers.pop(f, None)
            if not gone.done:
                self.stats["unrecoverable"] += 1
        while len(self.last_parity) > self.max_groups:
            self.last_parity.pop(next(iter(self.last_parity)))
        while len(self.unplaced) > self.max_groups * MAX_SPAN:
            self.unplaced.pop(next(iter(self.unplaced)))
