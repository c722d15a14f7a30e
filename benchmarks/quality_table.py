"""Markdown table of PSNR/SSIM (Y, border = scale) from the model cards that `edgesr-convert quantize --eval`
wrote: one row per network, float32 and int8 side by side.   python benchmarks/quality_table.py DIR [DIR ...]"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(dirs):
    cards = {}
    for d in dirs:
        for p in sorted(Path(d).rglob("*.json")):
            c = json.loads(p.read_text())
            if "metrics" not in c or not c.get("metrics") or c.get("tile"):
                continue
            a = c["arch"]
            key = (c["scale"], a["arch"], a["width"], a["blocks"], c["training"].get("steps"),
                   "distilled" if "distill" in (c["training"].get("command") or "") else "")
            cards.setdefault(key, {})[c["dtype"]] = c
    return cards


def main() -> None:
    cards = rows(sys.argv[1:])
    print("| x | network | params | MACs/out px | steps | Set5 float32 | Set5 int8 | Set14 float32 | Set14 int8 "
          "| int8 loss (Set5/Set14) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    seen_bicubic = set()
    for key in sorted(cards, key=lambda k: (k[0], k[1] != "srgan", k)):
        scale = key[0]
        c = cards[key]
        any_c = c.get("int8") or c.get("float32")
        m = any_c["metrics"]
        if scale not in seen_bicubic:
            seen_bicubic.add(scale)
            print(f"| {scale} | bicubic (MATLAB) | 0 | - | - | {m['Set5']['bicubic_psnr_y']:.2f} | - | "
                  f"{m['Set14']['bicubic_psnr_y']:.2f} | - | - |")
        f, q = c.get("float32"), c.get("int8")
        def cell(card, ds):
            return f"{card['metrics'][ds]['psnr_y']:.2f} / {card['metrics'][ds]['ssim_y']:.4f}" if card else "-"
        loss = (f"{q['metrics']['Set5'].get('int8_loss_db', float('nan')):.3f} / "
                f"{q['metrics']['Set14'].get('int8_loss_db', float('nan')):.3f}") if q else "-"
        a = any_c["arch"]
        name = {"srgan": f"SRGAN-style w{a['width']} b{a['blocks']}", "efdn": f"EFDN w{a['width']} b{a['blocks']}",
                "espcn": "ESPCN", "fsrcnn": "FSRCNN"}[a["arch"]] + (" (distilled)" if key[5] else "")
        print(f"| {scale} | {name} | {any_c['params']:,} | {any_c['macs_per_output_pixel']:.0f} | {key[4]} | "
              f"{cell(f, 'Set5')} | {cell(q, 'Set5')} | {cell(f, 'Set14')} | {cell(q, 'Set14')} | {loss} |")


if __name__ == "__main__":
    main()
