"""edgesr.backchannel: the refresh request on the wire, the robot's and the device's policies (pure, no I/O; the
live runs over UDP and a serial radio are in test_video)."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesr.backchannel import (
    REFRESH_GAP_S,
    REFRESH_MIN_FRAME,
    REQUEST,
    BrokenPictures,
    RefreshPolicy,
    decode_request,
    encode_request,
)
from edgesr.errors import ProtocolError
from edgesr.protocol import AuthError, encode_frame


def test_refresh_request_round_trip_tag_and_garbage():
    assert decode_request(encode_request(3, 0xFFFFFFFF)) == (3, 0xFFFFFFFF)
    key = b"k" * 32
    signed = encode_request(1, 77, key)
    assert decode_request(signed, key) == (1, 77) and decode_request(signed) == (1, 77)  # no key: CRC only
    with pytest.raises(AuthError):
        decode_request(encode_request(1, 77), key)  # unsigned while a key is configured
    with pytest.raises(AuthError):
        decode_request(encode_request(1, 77, b"x" * 32), key)
    bad = bytearray(encode_request(1, 77))
    bad[6] ^= 1
    with pytest.raises(ProtocolError, match="CRC"):
        decode_request(bytes(bad))
    with pytest.raises(ProtocolError):
        decode_request(encode_frame(np.zeros((16, 16, 3), np.uint8), 1, 0)[0])  # a frame packet is not a request


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_fuzz_refresh_requests(data, version, flags, seq):
    """Random bytes, and structurally valid requests (right CRC) with random fields: a pair or ProtocolError."""
    body = REQUEST.pack(b"ER", version, flags, seq & 0xFFFF, seq)
    for raw in (data, body + struct.pack("!I", zlib.crc32(body)), body + struct.pack("!I", zlib.crc32(body)) + data):
        for key in (None, b"k" * 32):
            try:
                stream, s = decode_request(raw, key)
                assert 0 <= stream <= 0xFFFF and 0 <= s <= 0xFFFFFFFF
            except ProtocolError:
                pass


def test_the_robot_asks_once_a_second_until_an_idr_and_gives_up_after_the_sweep():
    b = BrokenPictures(every=1.0, give_up=20.0)
    assert b.due(0.0) == []
    b.broke(0, 5, now=1.0)
    b.broke(0, 4, now=1.1)  # an older unit does not move the seq back
    assert b.due(1.2) == [(0, 5)] and b.due(1.7) == [] and b.due(2.2) == [(0, 5)]
    b.decoded(0, 7, idr=False)  # whole, but not an IDR: still broken, now as of unit 7
    assert b.due(3.3) == [(0, 7)]
    b.decoded(0, 8, idr=True)
    assert b.due(9.0) == [] and not b.streams
    b.broke(1, 100, now=10.0)
    assert b.due(10.0) == [(1, 100)] and b.due(31.0) == [] and not b.streams  # the refresh sweep healed it


def test_the_device_obeys_at_most_once_a_second_and_not_for_older_breaks():
    p = RefreshPolicy(stream=0)
    fat = REFRESH_MIN_FRAME * 2
    assert p.on_request(encode_request(0, 10), 100.0, fat, last_unit=12)
    assert not p.on_request(encode_request(0, 20), 100.0 + REFRESH_GAP_S / 2, fat, 20)  # too soon
    assert not p.on_request(encode_request(0, 11), 102.0, fat, 22)  # broken before the IDR it already got
    assert p.on_request(encode_request(0, 13), 102.0, fat, 22)
    assert not p.on_request(encode_request(1, 99), 110.0, fat, 30)  # another stream's
    assert not p.on_request(encode_request(0, 99), 120.0, REFRESH_MIN_FRAME - 1, 30)  # an IDR costs more there
    assert p.on_request(encode_request(0, 99), 120.0, None, 30)  # unbudgeted link
    assert not p.on_request(b"garbage", 130.0, fat, 31)
    assert p.stats == {"refresh_requests": 6, "refreshes": 3, "bad_requests": 1}


def test_a_device_with_a_key_or_told_not_to_obey():
    key = b"k" * 32
    keyed = RefreshPolicy(stream=0, key=key)
    assert not keyed.on_request(encode_request(0, 1), 1.0, None, 1) and keyed.stats["bad_requests"] == 1
    assert keyed.on_request(encode_request(0, 1, key), 2.0, None, 1)
    deaf = RefreshPolicy(stream=0, obey=False)
    assert not deaf.on_request(encode_request(0, 1), 1.0, None, 1) and deaf.stats["refresh_requests"] == 1
