"""Packets on byte streams (TCP, serial): each packet COBS-encoded with a 0x00 delimiter, which resynchronises
after garbage or a cut mid-packet; optionally Reed-Solomon bytes inside each frame for links that corrupt bytes."""
from __future__ import annotations

import functools

import numpy as np
from cobs import cobs

from .extras import need
from .protocol import MAX_PACKET


@functools.lru_cache(maxsize=8)
def _rs(nsym: int):
    """One Reed-Solomon codec per strength (building one makes its tables: not once per packet)."""
    return need("reedsolo", "rs= (Reed-Solomon)").RSCodec(nsym)


# With rs=, frames are scrambled (XOR with a fixed pseudo-random pad) before COBS: compressed images hold many 0x00
# bytes (JPEG's 0xFF00 stuffing), each becomes a COBS code byte, and a corrupted code byte garbles the rest of the
# frame beyond what Reed-Solomon corrects; scrambled, zeros are 1 in 256. 300-byte tiles at 1 % corruption with
# rs=16: 71 % -> 94 % of packets whole (8 % without rs).
_PAD = np.random.default_rng(0x5EED).integers(0, 256, 2 * MAX_PACKET + 4096, dtype=np.uint8)


def _scramble(data: bytes) -> bytes:
    return (np.frombuffer(data, np.uint8) ^ _PAD[:len(data)]).tobytes()


def frame_bytes(packet: bytes, rs: int = 0) -> bytes:
    """COBS-encode a packet for a byte stream (TCP, serial): no 0x00 inside, 0x00 terminates. ``rs`` > 0 adds that
    many Reed-Solomon bytes per 255 first (corrects rs/2 corrupted bytes in each 255) and scrambles."""
    return cobs.encode(_scramble(bytes(_rs(rs).encode(packet))) if rs else packet) + b"\x00"


class StreamDeframer:
    """Bytes in, packets out (pyserial's Packetizer idea): splits on 0x00, COBS-decodes, corrects bytes with
    Reed-Solomon when ``rs`` > 0, drops garbage (counted in ``errors``; corrected bytes in ``corrected``)."""

    def __init__(self, max_len: int = 2 * MAX_PACKET, rs: int = 0):
        self.buf = bytearray()
        self.max_len = max_len
        self.errors = self.corrected = 0
        self.rs = _rs(rs) if rs else None

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        *chunks, rest = bytes(self.buf).split(b"\x00")
        self.buf = bytearray(rest)
        if len(self.buf) > self.max_len:  # no delimiter for too long: garbage, start over
            self.buf.clear()
            self.errors += 1
        out = []
        for c in chunks:
            if not c:
                continue
            try:
                raw = cobs.decode(c)
                if self.rs is not None:
                    raw, _, fixed = self.rs.decode(_scramble(raw[:len(_PAD)]))
                    self.corrected += len(fixed)
                out.append(bytes(raw))
            except Exception:  # noqa: BLE001 -- cobs.DecodeError, reedsolo's errors on any garbage: a lost packet
                self.errors += 1
        return out
