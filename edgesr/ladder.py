"""Latency-aware model ladder: hold a target frame rate when the board slows down (DVFS, heat, other processes).

Rungs are models of one scale, best (slowest) first; the last is usually ``bicubic`` (OpenCV, ~1 ms). A latency
table measured on the board (``edgesr calibrate``) gives each rung's cost at the configured input size. The
policy watches the engine's own frame time and compares it with the budget ``1000 / target_fps`` ms:

* down at once when the last 3 frames are over budget, to the best rung predicted to fit in ``up_at`` of the
  budget (prediction = table cost x the slowdown observed on the current rung), skipping rungs if needed;
* up one rung only after ``dwell_s`` on the current one, when the better rung is predicted to fit in ``up_at``
  (70 %) of the budget, or -- a probe -- when the current rung uses under ``probe_at`` (25 %) of it and the
  better rung's calibrated cost would fit (slowdowns measured on a rung as cheap as bicubic say little about a
  model). The gap between "over 100 %" and "under
  70 %" is the hysteresis; a rung that had to be left again soon after moving up doubles the dwell (up to 32 s),
  so a board on the edge does not flap and a failed probe costs 3 frames per dwell; the dwell is back to
  ``dwell_s`` as soon as a rung runs at its calibrated speed again (the disturbance is gone).
The first frame after a move is not counted (a rung's first run after another touches cold caches).
"""
from __future__ import annotations

import json
import logging
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .upscaler import BICUBIC, Bicubic

log = logging.getLogger("edgesr.ladder")
TABLE_VERSION = 1


def open_rung(name: str, scale: int, backend: str = "auto", threads: int | None = None, **engine_kw):
    if name == BICUBIC:
        return Bicubic(scale)
    from .engine import Engine

    eng = Engine(name, backend=backend, threads=threads, scale=scale, **engine_kw)
    if eng.scale != scale:
        raise ConfigError(f"ladder rung {name} is x{eng.scale}, the ladder is x{scale}")
    return eng


def measure(rung, frame: np.ndarray, seconds: float = 2.0) -> dict:
    """Median and p90 of one rung's upscale time on ``frame`` (after 2 warm-up frames)."""
    out = np.empty((frame.shape[0] * rung.scale, frame.shape[1] * rung.scale, 3), np.uint8)
    for _ in range(2):
        rung.upscale(frame, out=out)
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(lat) < 5:
        t0 = time.perf_counter()
        rung.upscale(frame, out=out)
        lat.append(1000 * (time.perf_counter() - t0))
    return {"model": rung.card.name, "ms_median": round(statistics.median(lat), 3),
            "ms_p90": round(float(np.percentile(lat, 90)), 3), "frames": len(lat),
            "set5_psnr": rung.card.metrics.get("Set5", {}).get("psnr")}


def calibrate(rungs, size: tuple[int, int], backend: str, threads: int, seconds: float = 2.0,
              progress=None, rounds: int = 2, step=None) -> dict:
    """The latency table for these rungs at ``size`` = (w, h), measured on the shipped sample photo: ``rounds``
    interleaved passes, the lowest median kept (other load only ever adds time). ``step(i, n, name)`` is called
    before each measurement (progress), ``progress(row)`` with each final row. Adaptive tiles are off while
    measuring: the table holds what each model costs on a full frame, so that the rungs can be told apart."""
    from .imageio import sample_frame

    frame = sample_frame(size)
    saved = [getattr(r, "texture_threshold", None) for r in rungs]
    for r, t in zip(rungs, saved):
        if t:
            r.texture_threshold = 0.0
    try:
        return _calibrate(rungs, frame, size, backend, threads, seconds, progress, rounds, step)
    finally:
        for r, t in zip(rungs, saved):
            if t:
                r.texture_threshold = t


def _calibrate(rungs, frame, size, backend, threads, seconds, progress, rounds, step) -> dict:
    best: list[dict | None] = [None] * len(rungs)
    n = rounds * len(rungs)
    for k in range(rounds):
        for i, r in enumerate(rungs):
            if step:
                step(k * len(rungs) + i + 1, n, r.card.name)
            row = measure(r, frame, seconds / rounds)
            prev = best[i]
            if prev is None or row["ms_median"] < prev["ms_median"]:
                best[i] = row
    if progress:
        for done in best:
            progress(done)
    return {"version": TABLE_VERSION, "host": platform.node(), "machine": platform.machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "input_size": list(size), "backend": backend,
            "threads": threads, "rungs": best}


def table_costs(table: dict, names: list[str], size, backend: str, threads: int) -> list[float] | str:
    """Costs (ms) of ``names`` from a latency table, or why the table does not fit this config."""
    if table.get("version") != TABLE_VERSION:
        return "unknown table version"
    if list(table.get("input_size", [])) != list(size) or table.get("backend") != backend \
            or table.get("threads") != threads:
        return (f"measured for {table.get('input_size')} {table.get('backend')}/{table.get('threads')} threads, "
                f"config runs {list(size)} {backend}/{threads} threads")
    by_name = {r["model"]: r["ms_median"] for r in table.get("rungs", [])}
    missing = [n for n in names if n not in by_name]
    if missing:
        return f"no entry for {', '.join(missing)}"
    return [float(by_name[n]) for n in names]


@dataclass
class Policy:
    costs_ms: list[float]           # table latency of each rung, best (slowest) first
    target_fps: float
    up_at: float = 0.7              # a rung "fits" when predicted to take <= 70 % of the frame budget
    probe_at: float = 0.25          # ... or is tried anyway when the current rung takes <= 25 % of it
    window: int = 8                 # frames the slowdown estimate for moving up is taken over
    dwell_s: float = 2.0            # minimum time on a rung before moving up; doubles after a bounce
    rung: int = 0
    recent: list = field(default_factory=list)
    last_move: tuple = (0.0, 0)     # (time, direction: -1 up, +1 down)
    dwell: float = 0.0

    def __post_init__(self):
        if not self.costs_ms or min(self.costs_ms) <= 0 or self.target_fps <= 0:
            raise ConfigError("ladder: needs rungs with positive latencies and target_fps > 0")
        self.budget = 1000.0 / self.target_fps
        self.dwell = self.dwell_s
        self.fresh = True  # the next frame is the first on this rung: not counted

    def _move(self, to: int, now: float) -> int:
        direction = 1 if to > self.rung else -1
        if direction > 0 and self.last_move[1] < 0 and now - self.last_move[0] < 3 * self.dwell:
            self.dwell = min(2 * self.dwell, 32.0)      # moved up, had to come back soon: wait longer next time
        self.rung, self.last_move, self.recent, self.fresh = to, (now, direction), [], True
        return to

    def observe(self, ms: float, now: float) -> int | None:
        """Feed one frame time; returns the new rung index when the policy moves, else None."""
        if self.fresh:
            self.fresh = False
            return None
        self.recent.append(ms)
        del self.recent[:-self.window]
        if len(self.recent) < 3:
            return None
        c = self.costs_ms
        last3 = statistics.median(self.recent[-3:])
        if last3 > self.budget and self.rung < len(c) - 1:
            slow = last3 / c[self.rung]
            fits = [j for j in range(self.rung + 1, len(c)) if c[j] * slow <= self.budget * self.up_at]
            return self._move(fits[0] if fits else len(c) - 1, now)
        med = statistics.median(self.recent)
        if len(self.recent) >= self.window and med <= 1.15 * c[self.rung]:
            self.dwell = self.dwell_s  # running at calibrated speed: whatever slowed the board is gone
        if self.rung > 0 and len(self.recent) >= self.window and now - self.last_move[0] >= self.dwell:
            fits = c[self.rung - 1] * med / c[self.rung] <= self.budget * self.up_at
            probe = med <= self.budget * self.probe_at and c[self.rung - 1] <= self.budget * self.up_at
            if fits or probe:
                return self._move(self.rung - 1, now)
        return None


class Ladder:
    """Engine-compatible: ``upscale`` runs the current rung, times it, and lets the policy move."""

    def __init__(self, rungs: list, costs_ms: list[float], target_fps: float, **policy_kw):
        if len({r.scale for r in rungs}) != 1:
            raise ConfigError("ladder: all rungs must have the same scale")
        self.rungs, self.scale = rungs, rungs[0].scale
        self.policy = Policy(list(costs_ms), target_fps, **policy_kw)
        self.switches = 0
        self.warning = next((r.warning for r in rungs if r.warning), None)

    @property
    def current(self):
        return self.rungs[self.policy.rung]

    @property
    def last_invoke_s(self) -> float:
        return self.current.last_invoke_s

    def upscale(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        eng = self.current
        t0 = time.perf_counter()
        res = eng.upscale(frame, out)
        ms = 1000 * (time.perf_counter() - t0)
        moved = self.policy.observe(ms, time.monotonic())
        if moved is not None:
            self.switches += 1
            log.info("ladder: %s -> %s (%.1f ms/frame, budget %.1f ms)", eng.card.name,
                     self.current.card.name, ms, self.policy.budget)
        return res

    def state(self) -> dict:
        return {**self.current.state(), "ladder_rung": self.policy.rung, "ladder_switches": self.switches}

    def describe(self) -> dict:
        return {"ladder": [r.card.name for r in self.rungs], "costs_ms": self.policy.costs_ms,
                "target_fps": self.policy.target_fps, "scale": self.scale, **self.state()}


def load_table(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable latency table ({e}); run `edgesr calibrate` again") from None


def rungs_from_config(m) -> list:
    """The engines of a ``ModelConfig``'s ladder, each with the config's backend, threads and adaptive tiles."""
    kw = dict(backend=m.backend, threads=m.threads or None, texture_threshold=m.texture_threshold,
              texture_tile=m.texture_tile)
    return [open_rung(n, m.scale, **kw) for n in m.ladder]


def from_config(m, size: tuple[int, int], source_fps: float, seconds: float = 1.0) -> Ladder:
    """The ladder of a ``ModelConfig``; without a fitting latency table the rungs are measured now (slower start)."""
    rungs = rungs_from_config(m)
    names = [r.card.name for r in rungs]
    table = load_table(m.latency_table)
    costs = table_costs(table, names, size, m.backend, m.threads) if table else "not found"
    if isinstance(costs, str):
        log.warning("latency table %s: %s; measuring the ladder now (run `edgesr calibrate CONFIG` once on this "
                    "board to skip this)", m.latency_table, costs)
        costs = [r["ms_median"] for r in calibrate(rungs, size, m.backend, m.threads, seconds)["rungs"]]
    return Ladder(rungs, costs, m.target_fps or source_fps)
