"""The video link study's parts on the real clip: H.264 anchors at the link's bitrate, loss, and edgesr's fitting."""
from __future__ import annotations

import sys

import numpy as np

from edgesr.metrics import psnr_y
from edgesr.ratecontrol import fit_quality

from conftest import DATA, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import h264  # noqa: E402
import video_study  # noqa: E402

VIDEO = DATA / "video" / "one-by-one-person-detection.mp4"


def test_h264_anchor_holds_its_bitrate_and_loss_costs_quality():
    frames = video_study.video_frames(VIDEO, 2.0, 16)
    assert len(frames) == 16 and frames[0].shape == (432, 768, 3)
    units = h264.encode(frames, 2.0, 57600)
    assert 0.6 * 57.6 < h264.kbps(units, 2.0) < 1.15 * 57.6
    clean = h264.deliver(units, 0.0)
    p_clean = np.mean([psnr_y(a, b, 4) for a, b in zip(clean, frames)])
    assert p_clean > 33
    assert all(f is None for f in h264.deliver(units, 1.0))  # everything lost: nothing to show
    lossy = [(a, b) for a, b in zip(h264.deliver(units, 0.1, seed=2), frames) if a is not None]
    assert len(lossy) < len(frames) or np.mean([psnr_y(a, b, 4) for a, b in lossy]) < p_clean


def test_fit_quality_stays_within_the_budget():
    frame = video_study.video_frames(VIDEO, 2.0, 1)[0]
    for budget in (4500, 12000):
        q, packets = fit_quality(frame, budget, "webp", 1024)
        assert sum(map(len, packets)) <= budget and 1 <= q <= 95
    assert fit_quality(frame, 200, "webp", 64) is None  # 200 bytes cannot carry 72 tiles
