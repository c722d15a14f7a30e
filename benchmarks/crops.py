"""Side-by-side crops: bicubic | each model | HR, on the most textured window of each image (MATLAB-bicubic LR,
the protocol of every PSNR here), with each crop's PSNR-Y over the whole image in the label row.

    python benchmarks/crops.py --data ../shared/data/val/Set14 --models efdn_w16b2_x4_int8 efdn_ntire_x4_float32 \\
        --images comic zebra --out benchmarks/results/crops_x4.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.data import load_pairs  # noqa: E402
from edgesr.engine import Engine  # noqa: E402
from edgesr.imageio import write_rgb  # noqa: E402
from edgesr.metrics import imresize, psnr_y  # noqa: E402


def window(hr: np.ndarray, c: int) -> tuple[int, int]:
    g = cv2.Laplacian(cv2.cvtColor(hr, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    e = cv2.boxFilter(np.abs(g), -1, (c, c), normalize=False)[c // 2:hr.shape[0] - c // 2 + 1,
                                                              c // 2:hr.shape[1] - c // 2 + 1]
    y, x = np.unravel_index(np.argmax(e), e.shape)
    return int(y), int(x)


def label(img: np.ndarray, *lines: str) -> np.ndarray:
    bar = np.full((14 * len(lines) + 4, img.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(bar, text, (3, 13 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--images", nargs="*", default=None, help="image stems (default: all)")
    ap.add_argument("--crop", type=int, default=120)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    engines = [Engine(m, dtype="as-is") for m in a.models]  # the files named, not their faster twins
    s = engines[0].scale
    rows = []
    for name, lr, hr in load_pairs(a.data, s):
        if a.images and name not in a.images:
            continue
        c = min(a.crop, *hr.shape[:2])
        y, x = window(hr, c)
        outs = [("bicubic", imresize(lr, s))] + [(e.card.name, e.upscale(lr)) for e in engines] + [("HR", hr)]
        gap = np.full((c + 32, 4, 3), 255, np.uint8)
        panels = []
        for title, img in outs:
            db = f"{name}" if title == "HR" else f"{psnr_y(img, hr, s):.2f} dB"
            short = title.replace(f"_x{s}", "")
            panels += [label(np.ascontiguousarray(img[y:y + c, x:x + c]), short, db), gap]
        rows.append(np.concatenate(panels[:-1], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_rgb(a.out, np.concatenate(rows[:-1]))
    print(a.out)


if __name__ == "__main__":
    main()
