"""How much of edgesr's margin over the H.264 anchor is x264 tuning: the study's anchor (x264 defaults,
veryfast/zerolatency) beside the same anchor tuned for PSNR like edgesr's own H.264 (``tune psnr``), clean link.

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
            for tune, tag in (("zerolatency", "default"), ("psnr,zerolatency", "tune_psnr")):
                row[f"h264_hr_{tag}"] = vs.score(h264.deliver(h264.encode(hrs, fps, b, tune), 0.0), hrs, lambda i: i)
                row[f"h264_lr_sr_{tag}"] = vs.score(h264.deliver(h264.encode(lrs, fps, b, tune), 0.0), hrs, eng.upscale)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"video": a.video.name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
