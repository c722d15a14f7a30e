"""What might rescue a thin link with loss (the README's "Not met: 19.2 kbit/s, 5 fps" and "Back channel"): H.264
HR as `serve` sends it, against a different refresh sweep, H.264 at half resolution + the shipped x2 model, and a
simulated back channel (the robot asks for an IDR when it lost a unit for good; the device's StreamEncoder.on_request
decides). PSNR-Y at the robot, mean over each draw's shown frames, clean and at ``--loss`` over ``--draws`` loss
draws.

    python benchmarks/thin_lossy.py --video ../shared/data/video/one-by-one-person-detection.mp4 \\
        --bitrate 19200 --fps 5 --fec 0 --try refresh:3,6,10,20 half feedback     (~3 min on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

import video_study as vs  # noqa: E402

from edgesr import (
    backchannel,  # noqa: E402
    video,  # noqa: E402
)
from edgesr.encoder import StreamEncoder  # noqa: E402
from edgesr.metrics import psnr_y  # noqa: E402
from edgesr.modechoice import downscale  # noqa: E402

MIN_FRAME = backchannel.REFRESH_MIN_FRAME


def shown_db(shown, hrs, finish=lambda im: im) -> float:
    ps = [psnr_y(finish(a), h, vs.S) for a, h in zip(shown, hrs) if a is not None]
    return float(np.mean(ps)) if ps else float("nan")  # nan: the robot never had a picture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--bitrate", type=float, default=19200)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--fec", type=float, default=0.0, help="parity share the sink sends")
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--try", dest="tries", nargs="+", default=["refresh:10", "half", "feedback"])
    a = ap.parse_args()
    hrs = vs.video_frames(a.video, a.fps, a.frames)
    seeds = range(1, a.draws + 1)
    def sink(topology="source"):
        return StreamEncoder(topology=topology, codec="h264", bitrate=a.bitrate, fps=a.fps, mtu=vs.MTU, fec=a.fec)

    def report(name, clean, draws):
        print(json.dumps({"bitrate": a.bitrate, "fps": a.fps, "fec": a.fec, "try": name, "clean": round(clean, 2),
                          "lossy": round(float(np.nanmean(draws)), 2),
                          "lossy_first5": round(float(np.nanmean(draws[:5])), 2),
                          "blank_draws": int(np.isnan(draws).sum()), "worst": round(float(np.nanmin(draws)), 2)}),
              flush=True)

    for t in a.tries:
        if t.startswith("refresh:"):
            for r in map(float, t.split(":")[1].split(",")):
                video.REFRESH_S = r  # what the sink's stream reads when it opens
                st = vs.sink_stream(sink(), hrs, a.fps, 1)
                report(f"refresh {r:g} s", shown_db(vs.deliver(st, 0.0, 1), hrs),
                       [shown_db(vs.deliver(st, a.loss, sd), hrs) for sd in seeds])
            video.REFRESH_S = 10.0
        elif t == "half":
            from edgesr.engine import Engine
            from edgesr.modelcard import resolve_model

            up = Engine(str(resolve_model(None, 2)), threads=2).upscale
            st = vs.sink_stream(sink("receiver"), [downscale(h, 2) for h in hrs], a.fps, 2)
            report("half resolution + x2 SR", shown_db(vs.deliver(st, 0.0, 1), hrs, up),
                   [shown_db(vs.deliver(st, a.loss, sd), hrs, up) for sd in seeds])
        elif t in ("feedback", "feedback-always"):  # always: every request obeyed, however thin the link
            backchannel.REFRESH_MIN_FRAME = 0 if t == "feedback-always" else MIN_FRAME
            def loop(loss, sd):
                return shown_db(vs.deliver_closed(sink(), hrs, a.fps, 1, loss, sd), hrs)
            report(f"IDR on request (StreamEncoder.on_request{', every one' if t == 'feedback-always' else ''})",
                   loop(0.0, 1), [loop(a.loss, sd) for sd in seeds])
        else:
            ap.error(f"--try {t!r}: one of refresh:S[,S..], half, feedback, feedback-always")


if __name__ == "__main__":
    main()
