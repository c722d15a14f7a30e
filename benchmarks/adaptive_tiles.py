"""Adaptive tiles: speed-up vs PSNR loss as the texture threshold rises, against full SR measured in the same run.

    python benchmarks/adaptive_tiles.py --out benchmarks/results            (~5 min on 2 cores)

Sets: Set5, Set14 (LR = MATLAB bicubic / 4, whole images) and "video": 320x240 LR frames of a slow camera pan
(12 frames each) across four wide outdoor photos that look like a robot's view (sky, road, floor, sand:
train/mate-nature Storm, Wood, Dune, Aqua; ../shared has no video, and these are training photos -- the loss is
measured against the same model's full-frame output and the HR, so that does not flatter the ratio).
For every threshold: median time per frame (5 runs) of the adaptive engine, of full SR and of OpenCV bicubic,
the share of tiles SR ran on, and PSNR-Y (border 4) against HR. Writes adaptive_tiles.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.engine import Engine  # noqa: E402
from edgesr.imageio import read_rgb  # noqa: E402
from edgesr.metrics import degrade, mod_crop, psnr_y  # noqa: E402

S = 4
DATA = ROOT.parent / "shared" / "data"
VIDEO = ["Storm", "Wood", "Dune", "Aqua"]


def stills(name):
    out = []
    for p in sorted((DATA / "val" / name).glob("*.png")):
        hr = mod_crop(read_rgb(p), S)
        out.append((hr, degrade(hr, S)))
    return out


def pan_frames(n_per=12, names=VIDEO):
    """320x240 LR frames: an HR 1280x960 window sliding across each photo (resized to 1706 px wide first)."""
    out = []
    for name in names:
        img = read_rgb(DATA / "train" / "mate-nature" / f"{name}.jpg")
        w = max(1706, 960 * img.shape[1] // img.shape[0] + 1)  # keep the aspect; at least 1706x960
        img = cv2.resize(img, (w, w * img.shape[0] // img.shape[1]), interpolation=cv2.INTER_AREA)
        y = (img.shape[0] - 960) // 2
        for k in range(n_per):
            x = (img.shape[1] - 1280) * k // (n_per - 1)
            hr = np.ascontiguousarray(img[y:y + 960, x:x + 1280])
            out.append((hr, degrade(hr, S)))
    return out


def timed(fn, reps):
    """Median of ``reps`` runs after 2 untimed ones (a reshaped interpreter is slow for its first runs)."""
    fn()
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def run(model, tile, frames, thresholds, reps):
    """Per frame, back to back: full SR, OpenCV bicubic, and the adaptive engine at every threshold (so a slow
    spell on the shared machine hits all of them alike)."""
    eng = Engine(model, backend="cpu", texture_tile=tile)
    for _, lr in frames[:3]:  # warm-up: interpreters planned, weights packed
        eng.upscale(lr)
    full_t, full_p, bic_t = [], [], []
    t = {thr: [] for thr in thresholds}
    p, frac = {thr: [] for thr in thresholds}, {thr: [] for thr in thresholds}
    for hr, lr in frames:
        eng.texture_threshold = 0.0
        full = eng.upscale(lr).copy()
        full_t.append(timed(lambda: eng.upscale(lr, out=full), reps))
        full_p.append(psnr_y(full, hr, S))
        bic_t.append(timed(lambda: cv2.resize(lr, None, fx=S, fy=S, interpolation=cv2.INTER_CUBIC), reps))
        for thr in thresholds:
            eng.texture_threshold = thr
            out = eng.upscale(lr).copy()
            t[thr].append(timed(lambda: eng.upscale(lr, out=out), reps))
            frac[thr].append(eng.last_sr_fraction)
            p[thr].append(psnr_y(out, hr, S))
    rows, n = [], len(frames)
    for thr in thresholds:
        rows.append({"threshold": thr, "speedup": round(sum(full_t) / sum(t[thr]), 3),
                     "ms_adaptive": round(1000 * sum(t[thr]) / n, 2), "ms_full": round(1000 * sum(full_t) / n, 2),
                     "ms_bicubic": round(1000 * sum(bic_t) / n, 2), "sr_fraction": round(float(np.mean(frac[thr])), 3),
                     "psnr": round(float(np.mean(p[thr])), 3), "psnr_full": round(float(np.mean(full_p)), 3),
                     "loss_db": round(float(np.mean(full_p) - np.mean(p[thr])), 3)})
        print(json.dumps({"model": Path(model).stem, "tile": tile, **rows[-1]}), flush=True)
    return rows


def picture(path, name="Dune", threshold=8.0):
    """One video frame: adaptive output with its SR tiles outlined | |adaptive - bicubic| x4 (where SR acts, and
    that the ramp leaves no seam) | |adaptive - full SR| x8."""
    from edgesr.adaptive import interiors, texture_scores

    hr, lr = pan_frames(3, [name])[1]
    eng = Engine("srgan_w16b1_x4_int8", backend="cpu", texture_threshold=threshold)
    out = eng.upscale(lr).copy()
    eng.texture_threshold = 0.0
    full = eng.upscale(lr)
    bic = cv2.resize(lr, None, fx=S, fy=S, interpolation=cv2.INTER_CUBIC)
    tiler = eng._tiler(*lr.shape[:2])
    rects = interiors(tiler)
    boxed = out.copy()
    for (y0, y1, x0, x1), sc in zip(rects, texture_scores(lr, rects)):
        if sc > threshold:
            cv2.rectangle(boxed, (x0 * S, y0 * S), (x1 * S - 1, y1 * S - 1), (0, 255, 0), 3)
    d_bic = np.clip(np.abs(out.astype(int) - bic).max(2) * 4, 0, 255).astype(np.uint8)
    d_full = np.clip(np.abs(out.astype(int) - full).max(2) * 8, 0, 255).astype(np.uint8)
    panels = [boxed, cv2.cvtColor(d_bic, cv2.COLOR_GRAY2RGB), cv2.cvtColor(d_full, cv2.COLOR_GRAY2RGB)]
    from edgesr.imageio import write_rgb
    write_rgb(path, cv2.resize(np.hstack(panels), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--thresholds", default="2,4,6,8,10,12,16,24")
    a = ap.parse_args()
    thresholds = [float(t) for t in a.thresholds.split(",")]
    sets = {"Set5": stills("Set5"), "Set14": stills("Set14"), "video": pan_frames()}
    runs = [("srgan_w16b1_x4_int8", 64), ("srgan_w16b1_x4_int8", 32),
            ("srgan_w16b1_x4_int8_80x60_edgetpu_ready", None)]  # fixed 80x60 (WxH) tiles (the Edge TPU model, on CPU)
    result = []
    for model, tile in runs:
        for name, frames in sets.items():
            if tile is None and name != "video":
                continue  # the Edge TPU tile model is slow on a CPU (transpose-conv shuffle): video frames only
            rows = run(model, tile or 64, frames, thresholds, a.reps)
            result.append({"model": model, "tile": tile or "80x60 (model)", "set": name, "rows": rows})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adaptive_tiles.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| model | tile | set | threshold | SR tiles | ms adaptive | ms full SR | ms bicubic | speed-up | PSNR "
             "| loss dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result:
        for row in r["rows"]:
            lines.append(f"| {r['model']} | {r['tile']} | {r['set']} | {row['threshold']:g} | "
                         f"{row['sr_fraction']:.0%} | "
                         f"{row['ms_adaptive']:.1f} | {row['ms_full']:.1f} | {row['ms_bicubic']:.1f} | "
                         f"{row['speedup']:.2f}x | {row['psnr']:.2f} | {row['loss_db']:.3f} |")
    (out / "adaptive_tiles.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), sharey=True)
    for ax, (model, tile) in zip(axes, runs):
        for r in (r for r in result if r["model"] == model and r["tile"] == (tile or "80x60 (model)")):
            xs, ys = [row["speedup"] for row in r["rows"]], [row["loss_db"] for row in r["rows"]]
            ax.plot(xs, ys, "o-", label=r["set"])
            for row in r["rows"][::2]:
                ax.annotate(f"{row['threshold']:g}", (row["speedup"], row["loss_db"]), fontsize=7)
        ax.axhline(0.1, color="grey", ls="--", lw=0.8)
        ax.axvline(1.5, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{model.replace('srgan_w16b1_x4_int8', 'x4 int8')}, tile {tile or '80x60'}", fontsize=9)
        ax.set_xlabel("speed-up vs full SR (same run)")
        ax.set_xscale("log")
    axes[0].set_ylabel("PSNR-Y loss vs full SR (dB)")
    axes[0].legend()
    fig.suptitle("Adaptive tiles: labels are texture thresholds; goal: >= 1.5x at <= 0.1 dB")
    fig.tight_layout()
    fig.savefig(out / "adaptive_tiles.png", dpi=110)
    picture(out / "adaptive_tiles_example.png")
    print(f"-> {out}/adaptive_tiles.{{json,md,png}}, adaptive_tiles_example.png")


if __name__ == "__main__":
    main()
