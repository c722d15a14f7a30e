"""Holding the frame rate: the latency-aware ladder vs a fixed model while a CPU hog comes and goes, in one run.

    python benchmarks/ladder_hog.py --target-fps 10 --out benchmarks/results        (~3 min on 2 cores)

The real pipeline (capture thread -> engine -> sink thread) runs a 30 fps source of 320x240 LR frames (a camera
pan over four textured photos of train/mate-nature: grass, leaf, wood, dune; HR 1280x960 kept for PSNR) for
``--seconds``; from 1/3 to 2/3 of the run one busy
process per core competes for the CPU (what DVFS, heat or another daemon do to a Pi). Run 1: the ladder's top
model, fixed. Run 2: the ladder (latencies measured at the start, like `edgesr calibrate`). Reported per run:
delivered fps per 1 s window (median, standard deviation, share of windows below 90 % of the target) overall and
during the hog, PSNR-Y of the delivered frames against HR, ladder moves. Writes ladder_hog.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from adaptive_tiles import pan_frames  # noqa: E402

from edgesr.ladder import Ladder, calibrate, open_rung  # noqa: E402
from edgesr.metrics import psnr_y  # noqa: E402
from edgesr.pipeline import Pipeline  # noqa: E402
from edgesr.sources import Pacer, Source  # noqa: E402
from edgesr.transports.base import Sink  # noqa: E402


class Frames(Source):
    name = "pan"

    def __init__(self, lrs, fps):
        self.lrs, self.pacer, self.n = lrs, Pacer(fps), 0

    def read(self):
        self.pacer.wait()
        self.n += 1
        return self.lrs[(self.n - 1) % len(self.lrs)]


class Recorder(Sink):
    """Keeps (time, seq, model) of every delivered frame and every 2nd SR frame for PSNR afterwards."""

    def __init__(self, engine):
        super().__init__("record://")  # wants the SR frame (Sink.needs_sr)
        self.engine, self.log, self.kept = engine, [], {}

    def open(self):
        pass

    def send(self, f):
        self.log.append((time.monotonic(), f.seq, self.engine.state()["model"]))
        if f.seq % 2 == 0:
            self.kept[f.seq] = f.sr.copy()
        return True


def spin(stop):
    while not stop.is_set():
        sum(i * i for i in range(10000))


def one_run(engine, frames, seconds, fps_src):
    lrs = [lr for _, lr in frames]
    sink = Recorder(engine)
    pipe = Pipeline(Frames(lrs, fps_src), engine, [sink]).start()
    t0 = time.monotonic()
    stop = mp.Event()
    hogs, hog_at = [], (seconds / 3, 2 * seconds / 3)
    while time.monotonic() - t0 < seconds:
        el = time.monotonic() - t0
        if not hogs and hog_at[0] <= el < hog_at[1]:
            hogs = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
            for h in hogs:
                h.start()
        if hogs and el >= hog_at[1] and not stop.is_set():
            stop.set()
            for h in hogs:
                h.join()
        time.sleep(0.05)
    pipe.stop()
    times = np.array([t - t0 for t, _, _ in sink.log])
    bins = np.histogram(times, bins=int(seconds), range=(0, int(seconds)))[0].astype(float)
    psnr = [psnr_y(sr, frames[seq % len(frames)][0], 4) for seq, sr in sink.kept.items()]
    psnr_hog = [psnr_y(sr, frames[seq % len(frames)][0], 4) for seq, sr in sink.kept.items()
                if hog_at[0] <= times[[s for _, s, _ in sink.log].index(seq)] < hog_at[1]]
    models = [m for _, _, m in sink.log]
    return {"fps_per_second": bins.tolist(), "hog_s": list(hog_at),
            "models_per_frame": [[round(float(t), 2), m] for t, m in zip(times, models)],
            "frames": len(sink.log), "psnr_mean": round(float(np.mean(psnr)), 3),
            "psnr_hog_mean": round(float(np.mean(psnr_hog)), 3) if psnr_hog else None}


def summary(r, target):
    b = np.array(r["fps_per_second"][1:])  # the first second includes start-up
    h0, h1 = int(r["hog_s"][0]), int(r["hog_s"][1])
    hog = np.array(r["fps_per_second"][h0:h1])
    return {"fps_median": float(np.median(b)), "fps_std": round(float(np.std(b)), 2),
            "below_target_share": round(float(np.mean(b < 0.9 * target)), 3),
            "hog_fps_median": float(np.median(hog)),
            "hog_below_target_share": round(float(np.mean(hog < 0.9 * target)), 3),
            "psnr_mean": r["psnr_mean"], "psnr_hog_mean": r["psnr_hog_mean"], "frames": r["frames"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ladder", default="srgan_w24b2_x4_kd_int8,srgan_w16b1_x4_kd_int8,srgan_w8b1_x4_kd_int8,bicubic")
    ap.add_argument("--target-fps", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--source-fps", type=float, default=30.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()
    frames = pan_frames(6, ["GreenMeadow", "LadyBird", "Wood", "Dune"])
    names = a.ladder.split(",")
    rungs = [open_rung(n, 4, backend="cpu") for n in names]
    table = calibrate(rungs, (320, 240), "cpu", 0, seconds=4.0,
                      progress=lambda r: print(f"  {r['model']:<28} {r['ms_median']:8.2f} ms", flush=True))
    costs = [r["ms_median"] for r in table["rungs"]]
    print(f"target {a.target_fps:g} fps = {1000 / a.target_fps:.1f} ms/frame", flush=True)
    fixed = one_run(rungs[0], frames, a.seconds, a.source_fps)
    print("fixed :", json.dumps(summary(fixed, a.target_fps)), flush=True)
    lad = Ladder(rungs, costs, a.target_fps)
    ladder = one_run(lad, frames, a.seconds, a.source_fps)
    ladder["switches"] = lad.switches
    print("ladder:", json.dumps({**summary(ladder, a.target_fps), "switches": lad.switches}), flush=True)
    usage = {n: sum(m == r.card.name for _, m in ladder["models_per_frame"]) for n, r in zip(names, rungs)}
    print("ladder frames per rung:", usage)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"target_fps": a.target_fps, "latency_table": table, "fixed_model": names[0],
              "fixed": {**summary(fixed, a.target_fps), "fps_per_second": fixed["fps_per_second"]},
              "ladder": {**summary(ladder, a.target_fps), "switches": lad.switches, "frames_per_rung": usage,
                         "fps_per_second": ladder["fps_per_second"]}, "hog_s": fixed["hog_s"]}
    (out / "ladder_hog.json").write_text(json.dumps(result, indent=1) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    t = np.arange(len(fixed["fps_per_second"])) + 0.5
    ax.plot(t, fixed["fps_per_second"], "o-", ms=3, label=f"fixed {names[0]}")
    ax.plot(t, ladder["fps_per_second"], "o-", ms=3, label="ladder")
    ax.axhline(a.target_fps, color="grey", ls="--", lw=0.8, label="target")
    for x in (ax, ax2):
        x.axvspan(*fixed["hog_s"], color="red", alpha=0.08)
    ax.set_ylabel("delivered fps (1 s windows)")
    ax.legend(fontsize=8)
    ax.set_title("CPU hog (shaded): fixed model vs latency-aware ladder")
    idx = {r.card.name: i for i, r in enumerate(rungs)}
    ax2.plot([p[0] for p in ladder["models_per_frame"]], [idx[p[1]] for p in ladder["models_per_frame"]], ".", ms=2)
    ax2.set_yticks(range(len(rungs)), [r.card.name.replace("_x4", "").replace("_int8", "") for r in rungs], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out / "ladder_hog.png", dpi=110)
    print(f"-> {out}/ladder_hog.{{json,png}}")


if __name__ == "__main__":
    main()
