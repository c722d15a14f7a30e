"""docs/protocol_vectors.json: the byte-level test vectors of docs/protocol.md decode (and encode) exactly."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from edgesr.backchannel import decode_request, encode_request
from edgesr.depacketizer import Depacketizer
from edgesr.framing import StreamDeframer, frame_bytes
from edgesr.protocol import FLAG_LR, Packet, decode_packet, encode_packet

from conftest import ROOT

V = json.loads((ROOT / "docs" / "protocol_vectors.json").read_text())
KEY = bytes.fromhex(V["hmac_key_hex"])
FIELDS = ("stream", "seq", "timestamp_us", "frame_w", "frame_h", "tile_index", "tile_count", "x", "y", "w", "h",
          "codec", "scale", "frag", "nfrag", "flags")


def test_each_packet_decodes_to_its_fields_and_encodes_back():
    for v in V["packets"]:
        raw = bytes.fromhex(v["hex"])
        p = decode_packet(raw)
        assert {k: getattr(p, k) for k in FIELDS} == {k: v[k] for k in FIELDS}
        assert p.payload.hex() == v["payload_hex"]
        assert encode_packet(Packet(**{k: v[k] for k in FIELDS}, payload=bytes.fromhex(v["payload_hex"]))) == raw


def test_the_spec_layout_by_hand():
    """The header as docs/protocol.md's table lays it out, parsed with nothing from edgesr."""
    raw = bytes.fromhex(V["packets"][1]["hex"])
    (magic, version, flags, stream, seq, ts, fw, fh, ti, tc, x, y, w, h, codec, scale, frag, nfrag, sent,
     plen) = struct.unpack_from(">2sBBHIQHHHHHHHHBBBBHH", raw)
    assert (magic, version, flags, stream, seq, ts) == (b"ES", 2, FLAG_LR, 3, 0x01020304, 1_700_000_000_123_456)
    assert (fw, fh, ti, tc, frag, nfrag, sent, codec, scale) == (12, 8, 0, 2, 1, 2, 2, 3, 4)
    assert len(raw) == 42 + plen + 4
    assert struct.unpack(">I", raw[-4:])[0] == zlib.crc32(raw[:-4])


def test_the_packets_make_the_frame():
    f = V["frame"]
    dep = Depacketizer()
    frames = [fr for v in reversed(V["packets"]) for fr in dep.feed(bytes.fromhex(v["hex"]), 0.0)]  # any order
    assert len(frames) == 1
    fr = frames[0]
    want = np.frombuffer(bytes.fromhex(f["rgb_hex"]), np.uint8).reshape(f["height"], f["width"], 3)
    assert np.array_equal(fr.image, want) and fr.lr == f["lr"] and fr.scale == f["scale"] and fr.seq == f["seq"]
    assert abs(fr.timestamp - f["timestamp_us"] / 1e6) < 1e-6


def test_hmac_cobs_and_the_refresh_request():
    for plain, signed in zip(V["packets"], V["packets_with_hmac"]):
        raw = bytes.fromhex(signed)
        assert decode_packet(raw, KEY).payload.hex() == plain["payload_hex"]
        assert raw[:-16] == bytes.fromhex(plain["hex"])[:3] + bytes([FLAG_LR | 1]) + raw[4:-16]
    framed = bytes.fromhex(V["cobs_framed"])
    assert framed == frame_bytes(bytes.fromhex(V["packets"][0]["hex"])) and framed[-1] == 0 and 0 not in framed[:-1]
    assert StreamDeframer().feed(framed) == [bytes.fromhex(V["packets"][0]["hex"])]
    r = V["refresh_request"]
    assert encode_request(r["stream"], r["seq"]).hex() == r["hex"]
    assert decode_request(bytes.fromhex(r["hex_with_hmac"]), KEY) == (r["stream"], r["seq"])
