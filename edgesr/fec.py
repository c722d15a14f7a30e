"""Forward error correction across a frame's packets (zfec erasure coding), pure functions of bytes like protocol.

A frame's k packets (CRC-checked, so a corrupted packet is an erasure) get ``parity`` extra packets; any k of the
k + parity packets rebuild all of them. A parity packet:

    magic "EF" | version | stream | frame seq | k | n (= k + parity) | block index | k x (length, CRC32) |
    block | CRC32 (all of it)

The (length, CRC32) list lets the robot place the data packets it did get (each ends with its own CRC32) without
any new field in them. zfec is the `fec` extra; a robot without it ignores parity packets (counted).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import ConfigError, ProtocolError

MAGIC, VERSION = b"EF", 1
HEAD = struct.Struct("!2sBHIBBB")
ENTRY = struct.Struct("!HI")
CRC = struct.Struct("!I")
MAX_BLOCKS = 255


def _zfec():
    try:
        import zfec
    except ImportError:
        raise ConfigError('FEC needs zfec: pip install "edgesr[fec]"') from None
    return zfec


def _ident(packet: bytes) -> tuple[int, int]:
    """(stream, seq) of an edgesr data packet (protocol header: stream at byte 4, seq at byte 6)."""
    return struct.unpack_from("!HI", packet, 4)


def protect(packets: list[bytes], parity: int) -> list[bytes]:
    """``parity`` parity packets for one frame's data ``packets`` (send them after the data)."""
    k = len(packets)
    if parity <= 0 or not packets:
        return []
    if k + parity > MAX_BLOCKS:
        raise ConfigError(f"FEC: {k} packets + {parity} parity exceed {MAX_BLOCKS}; use larger packets or tiles")
    size = max(map(len, packets))
    blocks = [p.ljust(size, b"\0") for p in packets]
    coded = _zfec().Encoder(k, k + parity).encode(blocks)
    stream, seq = _ident(packets[0])
    entries = b"".join(ENTRY.pack(len(p), _crc_of(p)) for p in packets)
    out = []
    for i in range(k, k + parity):
        body = HEAD.pack(MAGIC, VERSION, stream, seq, k, k + parity, i) + entries + bytes(coded[i])
        out.append(body + CRC.pack(zlib.crc32(body)))
    return out


def parity_count(share: float, k: int) -> int:
    """Parity packets for a frame of ``k`` data packets at ``share``: round(share x k). A frame of one or two packets
    gets none at 25 %: a parity packet would double its cost, and H.264 slices conceal a lost one (measured: at
    19.2 kbit/s, 5 fps, 5 % loss the doubling cost 2.9 dB)."""
    return int(round(share * k)) if share > 0 else 0


def parity_share(loss: float) -> float:
    """The sink's ``fec`` for a link that loses ``loss`` of its packets (as ``edgesr receive`` measures it): 5x the
    loss, at most 1 (at 5 %: 25 % parity; a frame of 4 packets + 1 parity is then lost 2 % of the time)."""
    return min(1.0, 5.0 * max(0.0, loss))


def _crc_of(packet: bytes) -> int:
    """A data packet's own CRC32 (before its HMAC tag, when flags say it has one)."""
    from .protocol import FLAG_AUTH, TAG_LEN

    end = len(packet) - (TAG_LEN if packet[3] & FLAG_AUTH else 0)
    return CRC.unpack_from(packet, end - CRC.size)[0]


def is_parity(raw: bytes) -> bool:
    return raw[:2] == MAGIC


@dataclass
class _Group:
    k: int
    n: int
    entries: list
    data: dict = field(default_factory=dict)     # block index -> data packet
    parity: dict = field(default_factory=dict)   # block index -> parity block
    done: bool = False


class Recovery:
    """Robot side: parity packets + the data packets that arrived -> the data packets that did not (bounded)."""

    def __init__(self, max_groups: int = 4, max_bytes: int = 16 << 20):
        self.groups: dict[tuple[int, int], _Group] = {}
        self.unplaced: dict[tuple[int, int], list[bytes]] = {}
        self.max_groups, self.max_bytes = max_groups, max_bytes
        self.stats = {"parity": 0, "recovered": 0, "unrecoverable": 0, "bad_parity": 0, "no_zfec": 0}

    def data(self, raw: bytes) -> None:
        """Note a data packet that passed decode_packet (it may complete a group later)."""
        key = _ident(raw)
        g = self.groups.get(key)
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
            key, g, i, block = self._parse(raw)
        except ProtocolError:
            self.stats["bad_parity"] += 1
            return []
        if g.done:
            return []
        g.parity[i] = block
        for p in self.unplaced.pop(key, []):
            self._place(g, p)
        if len(g.data) == g.k:
            g.done = True
            return []
        if len(g.data) + len(g.parity) < g.k:
            return []
        try:
            zfec = _zfec()
        except ConfigError:
            self.stats["no_zfec"] += 1
            return []
        size = len(block)
        have = sorted(g.data)[:g.k] + sorted(g.parity)
        have = have[:g.k]
        blocks = [g.data[j].ljust(size, b"\0") if j < g.k else g.parity[j] for j in have]
        rebuilt = zfec.Decoder(g.k, g.n).decode(blocks, have)
        g.done = True
        out = [bytes(rebuilt[j][:g.entries[j][0]]) for j in range(g.k) if j not in g.data]
        self.stats["recovered"] += len(out)
        return out

    def _parse(self, raw: bytes):
        if len(raw) < HEAD.size + CRC.size or CRC.unpack_from(raw, len(raw) - CRC.size)[0] != zlib.crc32(raw[:-CRC.size]):
            raise ProtocolError("parity packet CRC mismatch")
        magic, version, stream, seq, k, n, i = HEAD.unpack_from(raw)
        if version != VERSION or not 1 <= k < n <= MAX_BLOCKS or not k <= i < n:
            raise ProtocolError("bad parity header")
        body = HEAD.size + k * ENTRY.size
        block = raw[body:-CRC.size]
        if len(block) == 0 or len(block) * n > self.max_bytes:
            raise ProtocolError("parity block size out of bounds")
        entries = [ENTRY.unpack_from(raw, HEAD.size + j * ENTRY.size) for j in range(k)]
        if any(length > len(block) for length, _ in entries):
            raise ProtocolError("parity lengths exceed the block")
        key = (stream, seq)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = _Group(k, n, entries)
            self._bound()
        elif (g.k, g.n, g.entries) != (k, n, entries):
            raise ProtocolError("parity packets disagree")
        return key, g, i, block

    def _bound(self) -> None:
        while len(self.groups) > self.max_groups:
            gone = self.groups.pop(next(iter(self.groups)))
            if not gone.done:
                self.stats["unrecoverable"] += 1
        while len(self.unplaced) > self.max_groups:
            self.unplaced.pop(next(iter(self.unplaced)))
