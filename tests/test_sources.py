"""edgesr.sources + the pipeline's capture: sources play at their own size and rate unless told, and a size of
another aspect is fitted (letterbox, crop or stretch), never squashed silently."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from edgesr import config as C
from edgesr.service import build
from edgesr.sources import fit_frame
from edgesr.transports.base import Sink

from conftest import DATA

VIDEO = DATA / "video" / "one-by-one-person-detection.mp4"  # 768x432 at 10 fps


def test_fit_frame_keeps_the_aspect():
    img = np.full((432, 768, 3), 200, np.uint8)
    box = fit_frame(img, (320, 240), "letterbox")
    assert box.shape == (240, 320, 3)
    assert (box[:29] == 0).all() and (box[-29:] == 0).all() and (box[31:209] == 200).all()  # 320x180 in the middle
    crop = fit_frame(img, (320, 240), "crop")
    assert crop.shape == (240, 320, 3) and (crop == 200).all()  # 427x240, the sides cut
    assert fit_frame(img, (320, 240), "stretch").shape == (240, 320, 3)
    assert fit_frame(img, (384, 216), "letterbox").shape == (216, 384, 3)  # same aspect: a resize


class Recorder(Sink):
    needs_sr = False

    def __init__(self):
        super().__init__("record://")
        self.shapes: list = []

    def send(self, f) -> bool:
        self.shapes.append(f.lr.shape)
        return True


def _serve_for(source: dict, seconds: float, caplog):
    cfg = C.load(None, {"source": {"url": str(VIDEO), **source}, "sink": [{"url": "udp://127.0.0.1:9"}]})
    pipe = build(cfg)
    rec = Recorder()
    pipe.sinks = [rec]
    pipe.need_sr = False
    with caplog.at_level(logging.INFO, logger="edgesr.pipeline"):
        pipe.start()
        time.sleep(seconds)
        pipe.stop()
    return pipe, rec


@pytest.mark.slow
def test_a_video_file_plays_at_its_own_size_and_rate(caplog):
    pipe, rec = _serve_for({}, 3.0, caplog)
    assert set(rec.shapes) == {(432, 768, 3)}
    assert 20 <= pipe.stats["captured"] <= 40  # 10 fps for 3 s (it was 30 fps, 3x fast, at 320x240)
    assert "768x432 at 10 fps" in caplog.text


@pytest.mark.slow
def test_another_aspect_is_letterboxed_and_said_once(caplog):
    pipe, rec = _serve_for({"width": 320, "height": 240}, 1.5, caplog)
    assert set(rec.shapes) == {(240, 320, 3)}
    assert caplog.text.count("letterbox to 320x240") == 1
