"""Latency-aware ladder: the policy (fed frame times), real rungs through the interpreter, config, calibrate, serve."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from edgesr import config as C
from edgesr.errors import ConfigError
from edgesr.ladder import Ladder, Policy, from_config, open_rung, table_costs
from edgesr.upscaler import Bicubic

from conftest import FIX, run_cli

COSTS = [60.0, 30.0, 12.0, 1.5]   # ms per frame of 4 rungs, best first; budget at 20 fps = 50 ms


def drive(policy, times_ms, t0=0.0, dt=0.05):
    """Feed frame times; the current rung's cost scales with the board's slowdown (list of (slowdown, frames))."""
    t, rungs = t0, []
    for slow, n in times_ms:
        for _ in range(n):
            policy.observe(policy.costs_ms[policy.rung] * slow, t)
            rungs.append(policy.rung)
            t += dt
    return rungs, t


def switches(rungs):
    return sum(a != b for a, b in zip(rungs, rungs[1:]))


def test_holds_top_rung_when_it_fits():
    p = Policy(COSTS, target_fps=15)  # budget 66.7 ms > 60
    rungs, _ = drive(p, [(1.0, 400)])
    assert set(rungs) == {0}


def test_starts_too_slow_goes_down_at_once():
    p = Policy(COSTS, target_fps=20)  # 60 ms does not fit 50 ms; 30 ms fits 70 % of 50
    rungs, _ = drive(p, [(1.0, 10)])
    assert rungs[2] == 0 and rungs[3] == 1 and rungs[-1] == 1  # the first frame (cold caches) is not counted


def test_slowdown_skips_rungs_probes_then_recovers():
    p = Policy(COSTS, target_fps=20, dwell_s=2.0)
    rungs, _ = drive(p, [(1.0, 40), (3.0, 200), (1.0, 400)])
    calm, hog, after = rungs[:40], rungs[40:240], rungs[240:]
    assert set(calm[5:]) == {1}
    # under a 3x slowdown 30 ms -> 90 ms: down within 3 frames, straight to the rung predicted to fit in 70 % of
    # the budget (12 ms x 3 = 36 > 35; bicubic fits): rung 2 is skipped
    assert hog[2] == 3
    # bicubic uses < 25 % of the budget: after the dwell (2 s = 40 frames) rung 2 is probed; at 36 ms it is
    # inside the 50 ms budget, so the ladder stays there for the rest of the slowdown
    assert hog.index(2) >= 40 and set(hog[hog.index(2):]) == {2}
    # the slowdown ends: back up one rung, never past what fits
    assert after[-1] == 1 and [b for a, b in zip(after, after[1:]) if a != b] == [1]


def test_no_flapping_on_the_edge():
    """A board where the better rung lands just over budget: hysteresis + growing dwell bound the moves."""
    rng = np.random.default_rng(0)
    p = Policy([55.0, 30.0, 1.5], target_fps=20)   # 55 ms never fits 50 ms; 30 ms always does
    t, rungs = 0.0, []
    for _ in range(2400):  # 2 minutes at 20 fps, +-15 % noise
        p.observe(p.costs_ms[p.rung] * rng.uniform(0.85, 1.15), t)
        rungs.append(p.rung)
        t += 0.05
    assert switches(rungs) <= 1 and rungs[-1] == 1


def test_failed_probes_back_off():
    """The board runs at half speed: the model (30 ms calibrated, 60 ms now) misses the 50 ms budget, bicubic
    leaves headroom so the model is probed now and then; each failed probe doubles the wait."""
    p = Policy([30.0, 1.5], target_fps=20, dwell_s=2.0)
    rungs, _ = drive(p, [(2.0, 1200)])  # one minute at 20 fps
    probes = sum(a == 1 and b == 0 for a, b in zip(rungs, rungs[1:]))
    assert 2 <= probes <= 5 and p.dwell >= 16
    assert rungs.count(0) <= 4 * (probes + 1)  # each probe costs at most 4 frames (1 uncounted + 3)


def test_no_probe_for_a_model_that_cannot_fit():
    p = Policy([100.0, 1.5], target_fps=20)
    rungs, _ = drive(p, [(1.0, 1200)])
    assert rungs[-1] == 1 and switches(rungs) == 1


def test_bounce_doubles_dwell():
    p = Policy([40.0, 10.0], target_fps=20, dwell_s=1.0)  # 40 ms predicted fits 35 only when slowdown < 0.875
    # calm at 0.8x: moves up; then real cost is 1.3x (over budget): back down -> dwell doubles
    rungs, t = drive(p, [(2.0, 10)])
    assert p.rung == 1
    rungs, t = drive(p, [(0.8, 30)], t)
    assert p.rung == 0
    drive(p, [(1.3, 5)], t)
    assert p.rung == 1 and p.dwell == 2.0


def test_bad_policy():
    with pytest.raises(ConfigError):
        Policy([], 10)
    with pytest.raises(ConfigError):
        Policy([10.0, 0.0], 10)


def test_real_rungs_fall_to_bicubic_when_budget_is_impossible(photo):
    """Real interpreter: a 1000 fps target cannot be held by the model; the ladder drops to bicubic and its output
    is then exactly OpenCV bicubic."""
    import cv2

    rungs = [open_rung(str(FIX / "tiny_x2_float32.tflite"), 2, threads=1), Bicubic(2)]
    lad = Ladder(rungs, [5.0, 0.5], target_fps=1000)
    f = np.ascontiguousarray(photo[:120, :160])
    first = lad.upscale(f).copy()
    for _ in range(5):
        out = lad.upscale(f)
    assert lad.state()["model"] == "bicubic" and lad.switches == 1
    np.testing.assert_array_equal(out, cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    assert not np.array_equal(first, out)  # the model's frame differed


def test_mixed_scales_rejected():
    with pytest.raises(ConfigError, match="same scale"):
        Ladder([Bicubic(2), Bicubic(4)], [1.0, 1.0], 10)
    with pytest.raises(ConfigError, match="is x2"):
        open_rung(str(FIX / "tiny_x2_float32.tflite"), 4)


LADDER_TOML = f"""
[source]
url = "synthetic"
width = 96
height = 64
fps = 20

[model]
scale = 2
threads = 1
ladder = ["{FIX / 'tiny_x2_float32.tflite'}", "bicubic"]
target_fps = 20

[[sink]]
url = "udp://127.0.0.1:{{port}}"
topology = "source"

[health]
listen = ""
"""


def test_config_keys(tmp_path):
    p = tmp_path / "robot.toml"
    p.write_text(LADDER_TOML.format(port=5999))
    cfg = C.load(p)
    assert cfg.model.latency_table == str(tmp_path / "robot.latency.json")
    for edit, needle in [(('threads = 1', 'threads = 1\nname = "x"'), "not both"),
                         (('"bicubic"]', '3]'), "at least two model names"),
                         (("target_fps = 20", "target_fps = -1"), "target_fps must be"),
                         (("threads = 1", "threads = 1\ntexture_threshold = 300.0"), "texture_threshold"),
                         (("threads = 1", "threads = 1\nladder_speed = 2"), "unknown key 'ladder_speed'")]:
        p.write_text(LADDER_TOML.format(port=5999).replace(*edit, 1))
        with pytest.raises(ConfigError) as e:
            C.load(p)
        assert needle in str(e.value)


@pytest.mark.slow
def test_calibrate_writes_the_table_serve_uses(tmp_path, caplog):
    p = tmp_path / "robot.toml"
    p.write_text(LADDER_TOML.format(port=5999))
    r = run_cli("edgesr", "calibrate", str(p), "--seconds", "0.3")
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "robot.latency.json").read_text())
    names = [row["model"] for row in table["rungs"]]
    assert names == ["tiny_x2_float32", "bicubic"] and table["input_size"] == [96, 64]
    assert all(row["ms_median"] > 0 for row in table["rungs"])
    cfg = C.load(p)
    with caplog.at_level(logging.WARNING, logger="edgesr.ladder"):
        lad = from_config(cfg.model, (96, 64), 20)
    assert lad.policy.costs_ms == [row["ms_median"] for row in table["rungs"]] and not caplog.records
    # a table measured for another input size is not used: measured again, with a warning naming why
    assert "measured for [96, 64]" in table_costs(table, names, (320, 240), "auto", 1)
    cfg.source.width = 128
    with caplog.at_level(logging.WARNING, logger="edgesr.ladder"):
        lad = from_config(cfg.model, (128, 96), 20, seconds=0.2)
    assert "measuring the ladder now" in caplog.text and len(lad.policy.costs_ms) == 2


def test_calibrate_errors(tmp_path):
    p = tmp_path / "plain.toml"
    p.write_text(LADDER_TOML.format(port=5999).replace("ladder =", "# ladder ="))
    r = run_cli("edgesr", "calibrate", str(p))
    assert r.returncode == 2 and "ladder is empty" in r.stderr and "Traceback" not in r.stderr
    p.write_text(LADDER_TOML.format(port=5999).replace('"bicubic"', '"no_such_model"'))
    r = run_cli("edgesr", "calibrate", str(p))
    assert r.returncode == 2 and "no_such_model" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_serve_with_ladder_reports_rung(tmp_path):
    """serve with a ladder config and a table measured on this machine: /state-like STATUS names the model."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        p = tmp_path / "robot.toml"
        p.write_text(LADDER_TOML.format(port=port))
        s.settimeout(10)
        r = run_cli("edgesr", "serve", "--config", str(p), "--duration", "3", timeout=60)
        assert r.returncode == 0, r.stderr
        assert s.recv(65536)  # frames arrived
    assert "measuring the ladder now" in r.stderr  # no table yet: measured at start, said so
    assert "tiny_x2_float32" in r.stderr or "bicubic" in r.stderr


@pytest.mark.slow
def test_metrics_name_the_rung(tmp_path):
    """A real pipeline built from a ladder config: /metrics and /state carry the rung and the SR share."""
    from edgesr.health import prometheus
    from edgesr.service import build

    p = tmp_path / "robot.toml"
    p.write_text(LADDER_TOML.format(port=5999).replace("target_fps = 20", "target_fps = 20\ntexture_threshold = 4.0"))
    cfg = C.load(p)
    pipe = build(cfg).start()
    try:
        assert pipe.first_frame.wait(20)
        state = pipe.snapshot()
        text = prometheus(pipe, {})
    finally:
        pipe.stop()
    assert state["model"] in ("tiny_x2_float32", "bicubic") and state["ladder_rung"] in (0, 1)
    assert 0.0 <= state["sr_fraction"] <= 1.0
    assert f'edgesr_ladder_rung{{model="{state["model"]}"}}' in text and "edgesr_sr_fraction" in text
