"""PSNR/SSIM of a .tflite model run through the edgesr runtime (the device's code path, tiling included)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr.engine import Engine
from edgesr.errors import ModelError
from edgesr.metrics import imresize, psnr_y, ssim_y

from .data import load_pairs


def side_by_side(bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, crop: int = 128) -> np.ndarray:
    """bicubic | model | HR crops of the most textured ``crop`` x ``crop`` window, with 4 px white gaps."""
    import cv2

    g = cv2.Laplacian(cv2.cvtColor(hr, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    c = min(crop, *hr.shape[:2])
    energy = cv2.boxFilter(np.abs(g), -1, (c, c), normalize=False)[c // 2:hr.shape[0] - c // 2 + 1,
                                                                      c // 2:hr.shape[1] - c // 2 + 1]
    y, x = np.unravel_index(np.argmax(energy), energy.shape)
    gap = np.full((c, 4, 3), 255, np.uint8)
    parts = [im[y:y + c, x:x + c] for im in (bicubic, sr, hr)]
    return np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)


def evaluate_model(model, data, scale: int | None = None, backend: str = "cpu", save_dir=None,
                   progress: bool = False) -> dict:
    """Mean Y-PSNR/SSIM (scale-px border cropped) of the model and of MATLAB bicubic on the same images."""
    from tqdm import tqdm

    from edgesr.imageio import write_rgb

    eng = Engine(model, backend=backend, scale=scale, dtype="as-is")  # the file given, not its faster twin
    s = eng.scale
    if scale is not None and scale != s:
        raise ModelError(f"model is x{s}, but --scale {scale} was given")
    rows = []
    for name, lr, hr in tqdm(load_pairs(data, s), desc=f"evaluate {Path(str(data)).name}", disable=not progress):
        sr = eng.upscale(lr)
        bic = imresize(lr, s)
        rows.append({"image": name, "psnr_y": psnr_y(sr, hr, s), "ssim_y": ssim_y(sr, hr, s),
                     "bicubic_psnr_y": psnr_y(bic, hr, s), "bicubic_ssim_y": ssim_y(bic, hr, s)})
        if save_dir:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            write_rgb(Path(save_dir) / f"{name}_x{s}_bicubic-model-hr.png", side_by_side(bic, sr, hr))
    def mean(k):
        return round(float(np.mean([r[k] for r in rows])), 4)
    return {"model": eng.path.name, "data": str(data), "scale": s, "backend": eng.backend, "n": len(rows),
            "psnr_y": mean("psnr_y"), "ssim_y": mean("ssim_y"), "bicubic_psnr_y": mean("bicubic_psnr_y"),
            "bicubic_ssim_y": mean("bicubic_ssim_y"), "per_image": rows}
