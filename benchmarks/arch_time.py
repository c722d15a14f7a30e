"""Measured time of candidate architectures before training them (random weights: time does not depend on them).

    python benchmarks/arch_time.py --arch efdn:16:2:rgb efdn:16:4:y efdn:24:2:y [--dtype int8] [--seconds 1]

Each candidate is built in its deploy form (plain 3x3 convs), converted like `edgesr-convert quantize` would
(int8: full-integer with uint8 input, calibrated on random crops), and timed through the runtime's own upscale
of a 320x240 frame (2 threads), interleaved rounds, lowest median; the first candidate is the baseline.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", nargs="+", required=True, help="ARCH:WIDTH:BLOCKS:rgb|y")
    ap.add_argument("--dtype", nargs="+", default=["int8", "float32"])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    from converters.archs import ArchSpec, build
    from converters.archs.common import with_output_range
    from converters.quantize import convert
    from converters.tf import import_tf
    from edgesr.bench import cpu_name
    from edgesr.engine import Engine
    from edgesr.imageio import sample_frame
    from edgesr.ladder import measure
    from edgesr.modelcard import ModelCard

    import_tf(False)
    tmp = Path(tempfile.mkdtemp())
    ups = {}
    for cand in a.arch:
        arch, width, blocks, color = cand.split(":")
        spec = ArchSpec(arch, 4, int(width), int(blocks), channels=1 if color == "y" else 3)
        for dtype in a.dtype:
            model = build(spec, deploy=True, split_anchor=dtype == "int8")
            rep = [np.random.default_rng(i).random((1, 64, 64, spec.channels), np.float32) for i in range(8)]
            blob = convert(with_output_range(model) if dtype == "int8" else model, dtype, rep, io="uint8-int8")
            path = tmp / f"{cand.replace(':', '_')}_{dtype}.tflite"
            path.write_bytes(blob)
            ModelCard(name=path.stem, scale=4, dtype=dtype, color=color).save(path.with_suffix(".json"))
            ups[f"{cand} {dtype}"] = Engine(path, threads=a.threads)
    frame = sample_frame((320, 240))
    best = {k: float("inf") for k in ups}
    for _ in range(a.rounds):
        for k, up in ups.items():
            best[k] = min(best[k], measure(up, frame, a.seconds)["ms_median"])
    base = next(iter(best.values()))
    print(f"# {cpu_name()}, {a.threads} threads, 320x240 -> 1280x960, lowest of {a.rounds} interleaved medians")
    for k, v in best.items():
        print(f"{k:28s} {v:7.2f} ms  {v / base:5.2f}x")


if __name__ == "__main__":
    main()
