"""Structure-aware fuzzing of the robot side: packets with a valid CRC (and a valid HMAC when keyed) and random
header fields -- frame sizes up to 65535x65535, tile counts, fragments, scales, LR flags, payloads that are
noise, real images of the declared size or image headers that lie -- through decoding, assembly and the
receiver's upscaling path; plus byte-level mutations of real packets, and real H.264 units with mutated bytes
re-packed with valid CRCs (through FFmpeg's decoder, bounded by the limits). Counts crashes (goal: none) and
reports peak memory.

    python benchmarks/fuzz_protocol.py [--n 1000000]
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesr.codec import encode  # noqa: E402
from edgesr.errors import ProtocolError  # noqa: E402
from edgesr.fec import HEAD, is_parity, protect  # noqa: E402
from edgesr.framing import StreamDeframer  # noqa: E402
from edgesr.protocol import FLAG_LR, Packet, encode_frame, encode_packet  # noqa: E402
from edgesr.receiver import Receiver  # noqa: E402
from edgesr.video import encode_unit  # noqa: E402

KEY = b"k" * 16


def random_packet(rnd: random.Random, images: list[bytes]) -> bytes:
    """A packet whose structure is valid (CRC, HMAC) and whose header fields are arbitrary."""
    big = rnd.random() < 0.5
    def u16():
        return rnd.choice([0, 1, 2, 16, 255, 4096, 65535, rnd.randrange(65536)]) if big else rnd.randrange(1, 80)
    fw, fh = u16(), u16()
    tc = rnd.choice([1, 1, 2, 4, rnd.randrange(1, 65536)])
    nfrag = rnd.choice([1, 1, 2, 255, rnd.randrange(1, 256)])
    kind = rnd.randrange(3)
    payload = (rnd.randbytes(rnd.randrange(0, 300)) if kind == 0 else rnd.choice(images) if kind == 1
               else images[0][:20] + rnd.randbytes(40))  # a header, then garbage
    p = Packet(stream=rnd.randrange(16), seq=rnd.randrange(1 << 32), timestamp_us=rnd.randrange(1 << 63),
               frame_w=fw, frame_h=fh, tile_index=rnd.randrange(tc), tile_count=tc,
               x=rnd.randrange(max(fw, 1)), y=rnd.randrange(max(fh, 1)), w=u16(), h=u16(),
               codec=rnd.choice([1, 2, 3, rnd.randrange(256)]), scale=rnd.choice([1, 2, 3, 4, 8, rnd.randrange(256)]),
               frag=rnd.randrange(nfrag), nfrag=nfrag, flags=rnd.choice([0, FLAG_LR]), payload=payload)
    return encode_packet(p, KEY if rnd.random() < 0.5 else None)


def relabel(parity: bytes, rnd) -> bytes:
    """A parity packet with one header field (k, span, K, M, symbol size or first symbol) set at random."""
    f = list(HEAD.unpack_from(parity))
    j = rnd.randrange(4, 10)
    f[j] = rnd.randrange(256 if j in (4, 5) else 65536)
    body = HEAD.pack(*f) + parity[HEAD.size:-4]
    return body + struct.pack("!I", zlib.crc32(body))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    rng = np.random.default_rng(a.seed)
    # real tiles of the sizes the random headers often declare, so some frames complete and get upscaled
    images = [encode(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), c, 80)
              for h, w in ((16, 16), (8, 12), (1, 1), (40, 60)) for c in ("jpeg", "png", "webp")]
    seeds = [p for i in range(8) for p in encode_frame(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), i, i,
                                                      tile=32, mtu=300, key=KEY if i % 2 else None,
                                                      scale=4 if i % 3 else 2, lr=i % 4 == 0)]
    from edgesr.video import H264Stream

    st = H264Stream(64, 48, 5.0, 60000, refresh_s=1.0)
    units = [st.encode(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) // 8 + 100) for _ in range(12)]
    rx = Receiver("udp://127.0.0.1:0", key=None, upscale=True, threads=1)
    rx.assembler.broken.every = 0.0  # every due request counted
    de = StreamDeframer()
    counts = {"structured": 0, "mutated": 0, "h264": 0, "decoded": 0, "rejected": 0, "frames": 0, "crashes": 0,
              "requests": 0, "device_requests": 0}
    from edgesr.backchannel import REQUEST, encode_request
    from edgesr.encoder import StreamEncoder

    device = StreamEncoder(topology="source", codec="h264", fps=2.0, bitrate=57600, key=None)
    crashes = []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def receive(packets, i: int, label: str = "") -> None:
        """Packets through decoding, assembly and upscaling: a ProtocolError is a rejection, anything else a bug
        (counted, not fatal)."""
        dep = rx.depacketizer  # the receiver's own path: parity (valid or not) -> FEC -> decode -> assembly
        try:
            for raw in packets:
                bad = dep.stats["bad_packets"] + dep.stats["auth_failures"]
                for f in dep.feed(raw, now=i * 1e-3):
                    rx.finish(f)
                    counts["frames"] += 1
                if is_parity(raw):
                    continue
                counts["rejected" if dep.stats["bad_packets"] + dep.stats["auth_failures"] > bad else "decoded"] += 1
            counts["requests"] += len(dep.requests(i * 1e-3))  # what the robot asks
        except ProtocolError:
            counts["rejected"] += 1
        except Exception as e:  # noqa: BLE001
            counts["crashes"] += 1
            tb = traceback.extract_tb(e.__traceback__)[::-1][:4]
            where = " <- ".join(f"{Path(fr.filename).name}:{fr.lineno}" for fr in tb)
            crashes.append(label + repr(e)[:200] + " at " + where)

    t0 = time.perf_counter()
    for i in range(a.n):
        if i % 16 == 3:  # the device side of the back channel: requests with a valid CRC and random fields, or bytes
            body = REQUEST.pack(b"ER", rnd.choice([2, rnd.randrange(256)]), rnd.randrange(256), rnd.randrange(4),
                                rnd.randrange(1 << 32))
            raw = rnd.choice([body + struct.pack("!I", zlib.crc32(body)), rnd.randbytes(rnd.randrange(40)),
                              encode_request(0, rnd.randrange(1 << 32), KEY)])
            try:
                device.on_request(raw, now=i * 1e-3)
                counts["device_requests"] += 1
            except Exception as e:  # noqa: BLE001
                counts["crashes"] += 1
                crashes.append("request " + repr(e)[:200])
            continue
        if i % 8 == 1:  # a real H.264 unit with a few bytes changed, re-packed with valid CRCs, maybe lying sizes
            u = bytearray(rnd.choice(units))
            for _ in range(rnd.randrange(0, 8)):
                u[rnd.randrange(len(u))] = rnd.randrange(256)
            size = rnd.choice([(64, 48), (64, 48), (32, 24), (640, 480),
                               (rnd.randrange(1, 4000), rnd.randrange(1, 4000))])
            counts["h264"] += 1
            pk = encode_unit(bytes(u), size, i, 0, stream=rnd.randrange(4), lr=rnd.random() < 0.3,
                             scale=rnd.choice([1, 2, 4]), gap=rnd.choice([0, 1, 1, 2, rnd.randrange(70000)]),
                             mtu=rnd.choice([300, 700, 1200]))
            if rnd.random() < 0.3:  # with valid parity (the robot then holds incomplete units), some packets lost
                par = protect(pk, rnd.randint(1, 3))
                if rnd.random() < 0.3:  # one parity header field random, CRC made right again
                    par = [relabel(q, rnd) for q in par]
                pk = [q for q in pk if rnd.random() > 0.2] + par
            receive(pk, i, "h264 ")
            continue
        if i % 4:
            data = random_packet(rnd, images)
            counts["structured"] += 1
        else:
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randrange(1, 4)):
                j = rnd.randrange(len(data)) if data else 0
                op = rnd.randrange(3)
                if op == 0 and data:
                    data[j] ^= 1 << rnd.randrange(8)
                elif op == 1:
                    data = data[:rnd.randrange(len(data) + 1)]
                elif data:
                    data[j] = rnd.randrange(256)
            data = bytes(data)
            counts["mutated"] += 1
        receive([data], i)
        if i % 50 == 0:
            try:
                de.feed(data)
            except Exception as e:  # noqa: BLE001
                counts["crashes"] += 1
                crashes.append("deframer " + repr(e)[:200])
    el = time.perf_counter() - t0
    rx.close()
    print(json.dumps({"packets": a.n, **counts, **{f"assembler_{k}": v for k, v in rx.assembler.stats.items()},
                      "upscaled": rx.stats["upscaled"], "upscale_errors": rx.stats["upscale_errors"],
                      "seconds": round(el, 1), "packets_per_s": int(a.n / el),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "rss_after_setup_mb": round(rss0, 1), "first_crashes": crashes[:5]}))
    sys.exit(1 if counts["crashes"] else 0)


if __name__ == "__main__":
    main()
