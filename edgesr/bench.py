"""`edgesr bench`: median/p90 latency of the engine on a real image, OpenCV bicubic measured in the same run."""
from __future__ import annotations

import resource
import time

import numpy as np


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def cpu_name() -> str:
    """The CPU model (speed figures are only comparable within one machine kind)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def run_bench(model, backend: str, threads, size: tuple[int, int], seconds: float,
              texture_threshold: float = 0.0, scale: int | None = None, dtype: str = "auto") -> dict:
    import cv2

    from .engine import Engine
    from .imageio import sample_frame

    eng = Engine(model, backend=backend, threads=threads, scale=scale, texture_threshold=texture_threshold,
                 dtype=dtype, size=size)
    frame = sample_frame(size)
    s = eng.scale
    out = np.empty((size[1] * s, size[0] * s, 3), np.uint8)
    for _ in range(3):
        eng.upscale(frame, out=out)
    rss_start = rss_mb()
    lat: list[float] = []
    inv: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(lat) < 5:
        t0 = time.perf_counter()
        eng.upscale(frame, out=out)
        lat.append(time.perf_counter() - t0)
        inv.append(eng.last_invoke_s)
    rss_end = rss_mb()
    bgr = frame[:, :, ::-1].copy()
    dst = np.empty_like(out)
    bic: list[float] = []
    t_end = time.perf_counter() + max(1.0, seconds / 5)
    while time.perf_counter() < t_end or len(bic) < 5:
        t0 = time.perf_counter()
        cv2.resize(bgr, (size[0] * s, size[1] * s), dst=dst, interpolation=cv2.INTER_CUBIC)
        bic.append(time.perf_counter() - t0)
    ms = 1000 * np.median(lat)
    # adaptive tiles: the model ran on a share of the frame (tile context not counted)
    macs = eng.card.macs_per_output_pixel * size[0] * size[1] * s * s * eng.last_sr_fraction
    return {**eng.describe(), "cpu": cpu_name(), "input_size": f"{size[0]}x{size[1]}",
            "output_size": f"{size[0] * s}x{size[1] * s}",
            "frames": len(lat), "sr_fraction": round(eng.last_sr_fraction, 3),
            "ms_median": round(ms, 3), "ms_p90": round(1000 * float(np.percentile(lat, 90)), 3),
            "fps_median": round(1000 / ms, 2), "invoke_ms_median": round(1000 * np.median(inv), 3),
            "invoke_share": round(float(np.median(inv) / np.median(lat)), 3),
            "bicubic_ms_median": round(1000 * np.median(bic), 3),
            "ratio_to_bicubic": round(ms / (1000 * np.median(bic)), 2),
            "gmac_per_frame": round(macs / 1e9, 4), "gmac_per_s": round(macs / 1e9 / (np.median(inv) or 1e-9), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1)}
