"""Forward error correction across a frame's packets: lost or corrupted packets rebuilt from parity, bounded."""
from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesr.assembly import FrameAssembler
from edgesr.fec import HEAD, MAGIC, VERSION, Recovery, is_parity, protect
from edgesr.protocol import decode_packet, encode_frame

KEY = b"k" * 16


def send(img, lost, parity, key=KEY):
    pk = encode_frame(img, 1, 0, tile=32, codec="webp", quality=60, mtu=300, key=key)
    rec, asm, frames = Recovery(), FrameAssembler(), []
    for i, p in enumerate(pk + protect(pk, parity)):
        if i in lost:
            continue
        for data in rec.parity(p) if is_parity(p) else [p]:
            rec.data(data)
            frames += asm.add(decode_packet(data, key))
    return frames + asm.expire(1e9, 0), rec, len(pk)


def test_losses_up_to_the_parity_are_rebuilt_exactly(photo):
    """Parity for 3 packets rebuilds any 3 lost packets, the 3 longest included (bit-exact); 4 lost: a partial
    frame, nothing invented."""
    img = np.ascontiguousarray(photo[:96, :128])
    ref, _, n = send(img, set(), 0)
    pk = encode_frame(img, 1, 0, tile=32, codec="webp", quality=60, mtu=300, key=KEY)
    order = sorted(range(n), key=lambda i: len(pk[i]))
    for lost in ({0}, {2, 5, 9}, {n - 1, n - 2, n - 3}, set(order[-3:])):
        frames, rec, _ = send(img, lost, 3)
        assert len(frames) == 1 and frames[0].missing_tiles == [] and np.array_equal(frames[0].image, ref[0].image)
        assert rec.stats["recovered"] == len(lost)
    frames, rec, _ = send(img, set(order[-4:]), 3)  # more lost than parity: partial frame, nothing invented
    assert frames[0].missing_tiles and rec.stats["recovered"] == 0


def test_a_corrupted_packet_is_an_erasure(photo):
    img = np.ascontiguousarray(photo[:96, :128])
    pk = encode_frame(img, 1, 0, tile=32, codec="webp", quality=60, mtu=300)
    bad = bytearray(pk[3])
    bad[60] ^= 0x10
    rec, asm, frames = Recovery(), FrameAssembler(), []
    for p in pk[:3] + [bytes(bad)] + pk[4:] + protect(pk, 2):
        for data in rec.parity(p) if is_parity(p) else [p]:
            try:
                q = decode_packet(data)
            except Exception:  # noqa: BLE001 -- the CRC catches the flipped bit
                continue
            rec.data(data)
            frames += asm.add(q)
    assert len(frames) == 1 and frames[0].missing_tiles == [] and rec.stats["recovered"] == 1


@settings(max_examples=400, deadline=None)
@given(k=st.integers(0, 255), span=st.integers(0, 255), K=st.integers(0, 300), m=st.integers(0, 300),
       size=st.integers(0, 5000), first=st.integers(0, 300), lengths=st.lists(st.integers(0, 65535), max_size=40),
       block=st.binary(max_size=300), seq=st.integers(0, 2**32 - 1))
def test_parity_fuzz_with_valid_crc(k, span, K, m, size, first, lengths, block, seq):
    """Structurally valid parity packets (right CRC) with arbitrary fields: rejected or ignored, never a crash,
    never more than the bounds."""
    entries = b"".join(struct.pack("!HI", v, random.getrandbits(32)) for v in lengths)
    body = HEAD.pack(MAGIC, VERSION, 0, seq, k, span, K & 0xFFFF, m & 0xFFFF, size, first) + entries + block
    raw = body + struct.pack("!I", zlib.crc32(body))
    rec = Recovery(max_bytes=1 << 16)
    for _ in range(2):
        assert rec.parity(raw) == [] or all(isinstance(p, bytes) for p in rec.parity(raw))
    assert len(rec.groups) <= rec.max_groups and len(rec.covers) <= rec.max_groups * 8
    assert all(len(g.parity) <= g.m and g.K * g.size <= 1 << 16 for g in rec.groups.values())


@settings(max_examples=300, deadline=None)
@given(field=st.integers(4, 9), value=st.integers(0, 65535), lost=st.sets(st.integers(0, 12), max_size=4),
       parity=st.floats(0.1, 4))
def test_real_parity_with_one_field_changed(photo, field, value, lost, parity):
    """A real block's parity with one header field set to a random value (CRC made right again): whatever is
    rebuilt is a packet that was sent, bit for bit."""
    pk = encode_frame(np.ascontiguousarray(photo[:64, :96]), 1, 0, tile=32, codec="webp", quality=40, mtu=300)
    rec, got = Recovery(max_bytes=1 << 16), []
    for p in pk:
        if pk.index(p) not in lost:
            rec.data(p)
    for raw in protect(pk, parity):
        f = list(HEAD.unpack_from(raw))
        f[field] = value & (0xFF if field in (4, 5) else 0xFFFF)
        body = HEAD.pack(*f) + raw[HEAD.size:-4]
        got += rec.parity(body + struct.pack("!I", zlib.crc32(body)))
    assert all(p in pk for p in got)


@pytest.mark.slow
def test_reed_solomon_inside_serial_frames_survives_byte_corruption(photo):
    """1 % of bytes with a flipped bit: a 300-byte packet is almost never intact, with rs=16 almost always."""
    from edgesr.framing import StreamDeframer, frame_bytes

    packets = encode_frame(photo, 1, 0, tile=64, mtu=300)
    rnd = random.Random(3)
    got = {}
    for rs in (0, 16):
        d, n = StreamDeframer(rs=rs), 0
        for p in packets * 4:
            b = bytearray(frame_bytes(p, rs))
            for i in range(len(b)):
                if rnd.random() < 0.01:
                    b[i] ^= 1 << rnd.randrange(8)
            n += sum(decode_ok(x) for x in d.feed(bytes(b)))
        got[rs] = n / (4 * len(packets))
    assert got[0] < 0.2 and got[16] > 0.85, got


def decode_ok(raw: bytes) -> bool:
    try:
        decode_packet(raw)
        return True
    except Exception:  # noqa: BLE001
        return False


def test_rs_is_a_serial_url_parameter():
    import pytest

    from edgesr.errors import ConfigError
    from edgesr.transports import parse_url

    assert parse_url("serial:///dev/ttyUSB0?baud=57600&rs=16").params["rs"] == 16
    with pytest.raises(ConfigError, match="rs must be 0..64"):
        parse_url("serial:///dev/ttyUSB0?rs=300")


def test_recovery_state_is_bounded_across_many_streams(photo):
    """Parity from many streams (stream ids come from the network): groups, covered frames and per-stream state
    stay bounded."""
    img = np.ascontiguousarray(photo[:64, :64])
    rec = Recovery()
    sent = 0
    for stream in range(300):
        pk = encode_frame(img, stream + 1, 0, stream=stream, tile=32, codec="webp", quality=40, mtu=300)
        for raw in protect(pk, 1):
            rec.parity(raw)
            sent += 1
    assert len(rec.groups) <= rec.max_groups and len(rec.last_parity) <= rec.max_groups
    assert len(rec.covers) <= rec.max_groups * 8 and rec.stats["parity"] == sent >= 300


def test_parity_never_weighs_more_than_its_block():
    """Many small packets (250 tiles at a 300-byte MTU): each parity packet repeats the block's packet list and a
    symbol spans several packets; asked to rebuild a quarter of them, parity stays within the block's bytes and
    still rebuilds a lost packet."""
    img = np.random.default_rng(0).integers(0, 255, (160, 320, 3), dtype=np.uint8)
    pk = encode_frame(img, 1, 0, tile=32, codec="jpeg", quality=60, mtu=300)
    par = protect(pk, 0.25 * len(pk))
    assert len(pk) == 250 and sum(map(len, par)) <= sum(map(len, pk))
    rec = Recovery()
    for p in pk[1:]:
        rec.data(p)
    assert [q for raw in par for q in rec.parity(raw)] == [pk[0]]
