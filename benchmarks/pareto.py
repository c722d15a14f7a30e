"""Quality against time for every shipped x4 model, bicubic and the baselines trained on the same data, in one run.

    python benchmarks/pareto.py [--extra runs/table_models] [--seconds 1.5] [--rounds 3]

Time: the runtime's own upscale of a 320x240 frame of the shipped sample (2 threads), interleaved rounds, the
lowest median per model, relative to the default model measured in the same run. Quality: Set5/Set14 PSNR-Y from
each model's card (written by `edgesr-convert quantize --eval`, the literature's protocol; bicubic = MATLAB
bicubic). Writes benchmarks/results/pareto.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgesr.bench import cpu_name  # noqa: E402
from edgesr.engine import Engine  # noqa: E402
from edgesr.imageio import sample_frame  # noqa: E402
from edgesr.ladder import measure  # noqa: E402
from edgesr.modelcard import DEFAULTS, load_card, shipped_models  # noqa: E402
from edgesr.upscaler import Bicubic  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra", type=Path, nargs="*", default=[ROOT / "runs" / "table_models"],
                    help="folders with more int8 x4 models and cards (trained baselines)")
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    paths = [p for p in shipped_models() if load_card(p).scale == 4 and load_card(p).tile is None]
    for d in a.extra:
        paths += sorted(p for p in Path(d).rglob("*_int8.tflite") if load_card(p) and load_card(p).scale == 4)
    ups = {p.stem: Engine(p, threads=a.threads, dtype="as-is") for p in paths}
    ups["bicubic"] = Bicubic(4)
    frame = sample_frame((320, 240))
    best = {k: float("inf") for k in ups}
    for r in range(a.rounds):
        for k, up in ups.items():
            best[k] = min(best[k], measure(up, frame, a.seconds)["ms_median"])
        print(f"round {r + 1}/{a.rounds}", flush=True)
    base = best[DEFAULTS[4]]
    rows = []
    for k, up in ups.items():
        card = up.card if k != "bicubic" else load_card(paths[0])
        m = card.metrics
        if k == "bicubic":
            s5, s14 = m["Set5"]["bicubic_psnr_y"], m["Set14"]["bicubic_psnr_y"]
        else:
            s5, s14 = m.get("Set5", {}).get("psnr_y"), m.get("Set14", {}).get("psnr_y")
        rows.append({"model": k, "dtype": "-" if k == "bicubic" else card.dtype, "ms": round(best[k], 2),
                     "relative_time": round(best[k] / base, 3), "set5": s5, "set14": s14,
                     "shipped": any(p.stem == k for p in shipped_models()) or k == "bicubic"})
    rows.sort(key=lambda r: r["relative_time"])
    OUT.mkdir(exist_ok=True)
    (OUT / "pareto.json").write_text(json.dumps({"input": "320x240 -> 1280x960", "threads": a.threads,
                                                  "cpu": cpu_name(), "rows": rows}, indent=1) + "\n")
    md = ["| model | dtype | ms (320x240 x4) | relative time | Set5 | Set14 |", "|---|---|---|---|---|---|"]
    md += [f"| `{r['model']}`{'' if r['shipped'] else ' (trained baseline)'} | {r['dtype']} | {r['ms']} | "
           f"{r['relative_time']:.2f} | {r['set5'] or '-'} | {r['set14'] or '-'} |" for r in rows]
    (OUT / "pareto.md").write_text("\n".join(md) + "\n")
    plot(rows, OUT / "pareto.png")
    print("\n".join(md))


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("set5", "set14")):
        for r in rows:
            if r[key] is None:
                continue
            marker = "s" if r["model"] == "bicubic" else "o" if r["shipped"] else "^"
            ax.scatter(r["relative_time"], r[key], marker=marker, s=36)
            ax.annotate(r["model"].replace("_x4", "").replace("_int8", ""), (r["relative_time"], r[key]),
                        fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("time relative to the default model (same run)")
        ax.set_ylabel(f"{key.capitalize()} PSNR-Y (dB), x4")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("x4 quality vs time (o shipped, ^ trained baselines, s bicubic)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
