"""Exact twins: the int8 and float32 exports of the same weights (each card names the other: ``twin``). Which one is
faster depends on the CPU, not on the file: on an AMD EPYC (AVX2) float32 ran 320x240 x4 in 0.65x the int8 time,
on an Intel Xeon with VNNI int8 won (docs/speed.md). So ``dtype="auto"`` measures both once on this machine (a few
interleaved runs at the frame size and thread count that will be used) and caches the answer per CPU model,
interpreter version, both files' contents, threads and size; ``edgesr calibrate`` or ``refresh=True`` measures again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import ModelError
from .modelcard import load_card

DTYPES = ("auto", "int8", "float32")


def cache_path() -> Path:
    return Path(os.environ.get("EDGESR_CACHE", Path.home() / ".cache" / "edgesr")) / "twins.json"


def twin_of(path: Path) -> Path | None:
    """The exact twin named on ``path``'s card (it must exist and name ``path`` back), or None."""
    card = load_card(path)
    if card is None or not card.twin:
        return None
    twin = path.with_name(card.twin)
    other = load_card(twin) if twin.exists() else None
    if other is None or other.twin != path.name or other.scale != card.scale:
        raise ModelError(f"{path.name}: its twin {card.twin} is missing, has no card, or does not name it back")
    return twin


def _dtype(path: Path) -> str | None:
    card = load_card(path)
    return card.dtype if card is not None else None


def _key(paths, threads: int, size: tuple[int, int]) -> str:
    from .bench import cpu_name
    from .interpreter import interpreter_api

    h = hashlib.sha1()
    for p in sorted(paths):
        h.update(Path(p).read_bytes())
    name = interpreter_api()[0]
    try:
        from importlib.metadata import version
        name += " " + version(name)
    except Exception:  # noqa: BLE001 -- a vendored interpreter without metadata: its name alone
        pass
    return f"{cpu_name()} | {name} | {h.hexdigest()[:16]} | {threads} threads | {size[0]}x{size[1]}"


def measure(paths, threads: int, size: tuple[int, int], rounds: int = 3) -> dict[str, float]:
    """Median ms of each model's upscale at ``size`` (w, h) (``ladder.measure``: 2 warm-up frames, 5 timed), the
    lowest over ``rounds`` interleaved rounds."""
    from .engine import Engine
    from .imageio import sample_frame
    from .ladder import measure as median_ms

    frame = sample_frame(size)
    engines = {Path(p).name: Engine(p, threads=threads, dtype="as-is") for p in paths}
    best = {n: float("inf") for n in engines}
    for _ in range(rounds):
        for n, e in engines.items():
            best[n] = min(best[n], median_ms(e, frame, seconds=0.0)["ms_median"])
    return {n: round(v, 3) for n, v in best.items()}


def choose(path: Path, dtype: str, threads: int, size: tuple[int, int] = (320, 240),
           refresh: bool = False) -> tuple[Path, dict | None]:
    """(the model file to run, what decided it). ``dtype``: 'auto' (the faster twin, measured once and cached),
    'int8' / 'float32' (that twin; ModelError if there is none), 'as-is' (``path``)."""
    if dtype == "as-is":
        return path, None
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be {', '.join(DTYPES)}, not {dtype!r}")
    twin = twin_of(path)
    card = load_card(path)
    if dtype != "auto":
        if card is not None and card.dtype == dtype:
            return path, {"dtype": dtype, "forced": True}
        if twin is not None and _dtype(twin) == dtype:
            return twin, {"dtype": dtype, "forced": True}
        raise ModelError(f"{path.name} has no {dtype} twin (its card names none); use --dtype auto")
    if twin is None:
        return path, None
    key = _key([path, twin], threads, size)
    cache = cache_path()
    try:
        table = json.loads(cache.read_text()) if cache.exists() else {}
    except (OSError, ValueError):
        table = {}  # a corrupt cache is measured again
    hit = key in table and not refresh
    if not hit:
        table[key] = measure([path, twin], threads, size)
        from .imageio import write_text_atomic
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps(table, indent=1))
    ms = table[key]
    fastest = min((path, twin), key=lambda p: ms.get(p.name, float("inf")))
    other = twin if fastest == path else path
    return fastest, {"dtype": _dtype(fastest), "ms": ms, "cached": hit,
                     "ratio": round(ms[fastest.name] / ms[other.name], 3), "key": key}
