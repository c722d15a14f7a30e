"""Write docs/protocol_vectors.json: packets and the frames they decode to, for robot implementers in other
languages (docs/protocol.md). tests/test_protocol_vectors.py checks edgesr against the file.

    python scripts/protocol_vectors.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.backchannel import encode_request  # noqa: E402
from edgesr.codec import encode  # noqa: E402
from edgesr.framing import frame_bytes  # noqa: E402
from edgesr.protocol import FLAG_LR, Packet, encode_packet  # noqa: E402

KEY = bytes(range(32))


def main() -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)  # 12x8 RGB, two 6x8 PNG tiles (lossless)
    tiles = [(0, 0, 6, 8), (6, 0, 6, 8)]
    pngs = [encode(frame[y:y + h, x:x + w], "png", 0) for x, y, w, h in tiles]
    packets = []
    for i, ((x, y, w, h), png) in enumerate(zip(tiles, pngs)):
        half = (len(png) + 1) // 2
        for f, part in enumerate((png[:half], png[half:])):  # each tile in two fragments
            packets.append(Packet(stream=3, seq=0x01020304, timestamp_us=1_700_000_000_123_456, frame_w=12,
                                  frame_h=8, tile_index=i, tile_count=2, x=x, y=y, w=w, h=h, codec=3, scale=4,
                                  frag=f, nfrag=2, flags=FLAG_LR, payload=part))
    plain = [encode_packet(p).hex() for p in packets]
    signed = [encode_packet(p, KEY).hex() for p in packets]
    vectors = {
        "about": "docs/protocol.md; every hex string is the exact bytes on the wire",
        "frame": {"width": 12, "height": 8, "rgb_hex": frame.tobytes().hex(), "lr": True, "scale": 4, "stream": 3,
                  "seq": 0x01020304, "timestamp_us": 1_700_000_000_123_456},
        "packets": [{"hex": h, **{k: getattr(p, k) for k in ("stream", "seq", "timestamp_us", "frame_w", "frame_h",
                                                              "tile_index", "tile_count", "x", "y", "w", "h",
                                                              "codec", "scale", "frag", "nfrag", "flags")},
                     "payload_hex": p.payload.hex()} for h, p in zip(plain, packets)],
        "hmac_key_hex": KEY.hex(),
        "packets_with_hmac": signed,
        "cobs_framed": frame_bytes(bytes.fromhex(plain[0])).hex(),
        "refresh_request": {"stream": 3, "seq": 0x01020304, "hex": encode_request(3, 0x01020304).hex(),
                            "hex_with_hmac": encode_request(3, 0x01020304, KEY).hex()},
    }
    out = ROOT / "docs" / "protocol_vectors.json"
    out.write_text(json.dumps(vectors, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
