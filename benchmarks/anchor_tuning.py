"""How much of edgesr's margin over the H.264 anchor is x264 tuning: the study's anchor (x264 defaults,
veryfast/zerolatency) beside the same anchor tuned like edgesr's own H.264: for PSNR (``tune psnr``), and also
with the preset edgesr picks for these pixel rates (``slow``, edgesr.video.pick_preset), clean link.

    python benchmarks/anchor_tuning.py --video ../shared/data/video/one-by-one-person-detection.mp4 \
        --json benchmarks/results/link_video_anchor_tuning.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

import h264  # noqa: E402
import video_study as vs  # noqa: E402

from edgesr.engine import Engine  # noqa: E402
from edgesr.modechoice import downscale  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--bitrates", default="19200,57600,115200")
    ap.add_argument("--fps", default="2,5")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    eng = Engine(None, threads=2, scale=vs.S)
    rows = []
    for fps in (float(f) for f in a.fps.split(",")):
        hrs = vs.video_frames(a.video, fps, 64)
        lrs = [downscale(h, vs.S) for h in hrs]
        for b in (float(v) for v in a.bitrates.split(",")):
            row = {"fps": fps, "bitrate": b}
            for tune, preset, tag in (("zerolatency", "veryfast", "default"),
                                      ("psnr,zerolatency", "veryfast", "tune_psnr"),
                                      ("psnr,zerolatency", "slow", "tune_psnr_slow")):
                for name, srcs, finish in (("h264_hr", hrs, lambda i: i), ("h264_lr_sr", lrs, eng.upscale)):
                    units = h264.encode(srcs, fps, b, tune, preset)
                    row[f"{name}_{tag}"] = vs.score(h264.deliver(units, 0.0), hrs, finish)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"video": a.video.name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
