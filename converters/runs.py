"""Run folders: ``spec.json`` (the architecture), ``state.json`` (step, best validation PSNR, history, the
command's options), ``last.weights.h5`` + ``last.opt.npz`` (to resume) and ``best.weights.h5``."""
from __future__ import annotations

import json
from pathlib import Path

from edgesr.errors import DataError

from .archs import ArchSpec, build


def read_spec(run_dir) -> ArchSpec:
    p = Path(run_dir) / "spec.json"
    if not p.exists():
        raise DataError(f"{run_dir}: not a training run folder (no spec.json)")
    try:
        return ArchSpec.from_dict(json.loads(p.read_text()))
    except (ValueError, TypeError) as e:
        raise DataError(f"{p}: not a valid architecture spec ({e})") from None


def read_state(run_dir) -> dict:
    """The run's state.json, or {} for a run that has not checkpointed yet."""
    p = Path(run_dir) / "state.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise DataError(f"{p}: corrupt state ({e})") from None


def write_state(run_dir, state: dict) -> None:
    from edgesr.imageio import write_text_atomic

    write_text_atomic(Path(run_dir) / "state.json", json.dumps(state, indent=1))


def load_run(run_dir, which: str = "best", **build_kwargs):
    """(model, spec) from a run folder; ``which`` is 'best' or 'last'."""
    run = Path(run_dir)
    spec = read_spec(run)
    weights = run / f"{which}.weights.h5"
    if not weights.exists():
        weights = run / "last.weights.h5"
    if not weights.exists():
        raise DataError(f"{run}: no weights yet (no {which}.weights.h5 or last.weights.h5)")
    model = build(spec, **build_kwargs)
    model.load_weights(weights)
    return model, spec
