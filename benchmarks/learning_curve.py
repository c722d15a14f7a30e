"""Validation PSNR against training step for one or more run folders (continued runs are drawn after their parent).

    python benchmarks/learning_curve.py runs/efdn_w16b2_x4_long runs/efdn_w16b2_x4_l2 \\
        --out benchmarks/results/learning_curve.png
        [--ref 27.015 "default srgan_w16b1_x4 (float)"]

The validation set is whatever the runs were trained with (`--val`); the README says which.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ref", nargs=2, action="append", default=[], metavar=("DB", "LABEL"),
                    help="a horizontal reference line")
    a = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for run in a.runs:
        state = json.loads((run / "state.json").read_text())
        pts = [(offset + h["step"], h["val_psnr"]) for h in state["history"] if "val_psnr" in h]
        if pts:
            cfg = state.get("config", {})
            label = f"{run.name} ({cfg.get('loss', 'l1')}, lr {cfg.get('lr')})"
            ax.plot(*zip(*pts), marker=".", label=label)
        offset += state["step"]
    for db, label in a.ref:
        ax.axhline(float(db), color="grey", linestyle="--", linewidth=1)
        ax.annotate(label, (0, float(db)), fontsize=8, xytext=(2, 3), textcoords="offset points")
    ax.set_xlabel("training step (continued runs after their parent)")
    ax.set_ylabel("validation PSNR-Y (dB), float model")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
