"""Luminance models: the network super-resolves Y (BT.601, full range: cv2's YCrCb) and chroma is resized.

People resolve chroma at a lower resolution than luminance, PSNR is measured on Y, and H.264 decodes to Y +
subsampled chroma planes: a Y network spends all its MACs where they show. Chroma is bilinearly resized (the
cheap resize that ``with_chroma`` claims and the tests check).
"""
from __future__ import annotations

import cv2
import numpy as np


def luma(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., H, W, 3) -> Y uint8 (..., H, W, 1): round(0.299 R + 0.587 G + 0.114 B)."""
    if rgb.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YCrCb)[:, :, :1]
    return np.stack([luma(im) for im in rgb])


def with_chroma(y_hr: np.ndarray, lr_rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 at Y's size: ``y_hr`` (HxW or HxWx1) as luminance, chroma (Cr, Cb) of ``lr_rgb`` bilinearly
    resized. ``out`` (HxWx3 uint8) is written in place when given."""
    h, w = y_hr.shape[:2]
    ycc = cv2.resize(cv2.cvtColor(np.ascontiguousarray(lr_rgb), cv2.COLOR_RGB2YCrCb), (w, h),
                     interpolation=cv2.INTER_LINEAR)
    cv2.mixChannels([np.ascontiguousarray(y_hr).reshape(h, w)], [ycc], [0, 0])  # Y in place (no strided numpy copy)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB, dst=out)
