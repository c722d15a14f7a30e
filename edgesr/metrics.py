"""Image quality under the SR literature's protocol: MATLAB-style bicubic resize, BT.601 Y, PSNR and SSIM.

numpy only (cv2 for SSIM's Gaussian window), so both the device runtime and the converters use this one copy.
cv2.resize is not MATLAB's imresize (no antialiasing when shrinking, other border rule): numbers made with it
are not comparable with published ones.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["imresize", "degrade", "rgb_to_y", "psnr_y", "ssim_y", "mod_crop"]


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def _weights(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense (out_len, in_len) matrix of MATLAB imresize's bicubic contributions, symmetric borders."""
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # symmetric (mirror) padding, 1-based like MATLAB
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = aux[np.mod(idx.astype(np.int64) - 1, aux.size)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), p), idx.ravel()), w.ravel())
    return mat


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when shrinking) for HxW or HxWxC arrays.

    uint8 in -> uint8 out (rounded, clipped, as MATLAB does); float in -> float64 out.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    h, w = img.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    x = img.astype(np.float64)
    # MATLAB resizes the dimension with the smaller scale first; for equal scales, rows first.
    x = np.tensordot(_weights(h, out_h, scale), x, axes=(1, 0))
    x = np.moveaxis(np.tensordot(_weights(w, out_w, scale), np.moveaxis(x, 1, 0), axes=(1, 0)), 0, 1)
    if img.dtype == np.uint8:
        return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)
    return x


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop an image so both sides are multiples of ``scale`` (the protocol does this before degrading)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR image of the SR literature: MATLAB bicubic downscale by 1/scale of a mod-cropped HR uint8 image."""
    return imresize(mod_crop(hr, scale), 1.0 / scale)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB uint8 (or 0..255 float) image, as float64 in 16..235."""
    x = img.astype(np.float64)
    if x.ndim == 2:
        return x
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _y_pair(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"image sizes differ: {sr.shape[:2]} vs {hr.shape[:2]}")
    a, b = rgb_to_y(sr), rgb_to_y(hr)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return a, b


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR in dB on the Y channel, ``border`` pixels cropped from every side (use the scale)."""
    a, b = _y_pair(sr, hr, border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5) on the Y channel, ``border`` pixels cropped."""
    import cv2

    a, b = _y_pair(sr, hr, border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    win = g @ g.T

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, win)[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))
