"""Throw 10^6 random and mutated packets at the decoder and the assembler; count crashes (goal: none).

    python benchmarks/fuzz_protocol.py [--n 1000000]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgesr.errors import ProtocolError  # noqa: E402
from edgesr.protocol import FrameAssembler, StreamDeframer, decode_packet, encode_frame  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    rng = np.random.default_rng(a.seed)
    seeds = [p for i in range(8) for p in encode_frame(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), i, i,
                                                      tile=32, mtu=300, key=b"k" * 16 if i % 2 else None)]
    asm, de = FrameAssembler(), StreamDeframer()
    counts = {"valid": 0, "rejected": 0, "crashes": 0, "frames": 0}
    crashes = []
    t0 = time.perf_counter()
    for i in range(a.n):
        kind = i % 4
        if kind == 0:
            data = rnd.randbytes(rnd.randrange(0, 400))
        else:
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randrange(1, 4)):
                op = rnd.randrange(3)
                if op == 0 and data:
                    data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
                elif op == 1:
                    data = data[:rnd.randrange(len(data) + 1)]
                elif data:
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
            data = bytes(data)
        try:
            p = decode_packet(data, key=None)
            counts["valid"] += 1
            counts["frames"] += len(asm.add(p, now=i))
        except ProtocolError:
            counts["rejected"] += 1
        except Exception as e:  # anything else is a bug
            counts["crashes"] += 1
            crashes.append(repr(e)[:200])
        if i % 50 == 0:
            try:
                de.feed(data)
            except Exception as e:
                counts["crashes"] += 1
                crashes.append("deframer " + repr(e)[:200])
    el = time.perf_counter() - t0
    print(json.dumps({"packets": a.n, **counts, "seconds": round(el, 1), "packets_per_s": int(a.n / el),
                      "assembler_pending": len(asm.pending), "first_crashes": crashes[:5]}))
    sys.exit(1 if counts["crashes"] else 0)


if __name__ == "__main__":
    main()
