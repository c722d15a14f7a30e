"""Trained weights from elsewhere -> a run folder (``converters.runs``) that quantize/evaluate/distill take as is."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np

from edgesr.errors import DataError

from .archs import ArchSpec, build
from .runs import write_state
from .torchfile import read_state_dict


def max_difference(model, reference) -> float:
    """Max |Keras - reference| over the reference's SR output, on [0, 1] (``reference``: .npz with lr, sr)."""
    with np.load(reference) as z:
        lr, sr = z["lr"], z["sr"].astype(np.float32)
    out = np.clip(np.asarray(model(lr[None].astype(np.float32) / 255.0, training=False))[0], 0, 1)  # theirs clamps
    if out.shape != sr.shape:
        raise DataError(f"{reference}: reference output is {sr.shape}, the imported model gives {out.shape}")
    return float(np.max(np.abs(out - sr)))


def import_efdn(checkpoint, out, scale: int = 4, width: int = 48, blocks: int = 4, reference=None) -> dict:
    """The EFDN authors' state dict -> ``out``/best.weights.h5 (and last), spec.json, state.json."""
    from .archs.efdn_ntire import load_torch_weights

    spec = ArchSpec("efdn_ntire", scale, width, blocks, anchor=False)
    model = build(spec)
    load_torch_weights(model, spec, read_state_dict(checkpoint))
    info = {"out": str(out), "params": int(model.count_params()), "source": str(checkpoint)}
    if reference:
        info["max_abs_diff"] = max_difference(model, reference)
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1))
    model.save_weights(run / "best.weights.h5")
    model.save_weights(run / "last.weights.h5")
    write_state(run, {"step": 0, "best_psnr": None, "history": [], "imported": info,
                      "config": {"command": shlex.join(["edgesr-convert", *sys.argv[1:]]),
                                 "data": ["DIV2K + Flickr2K (the authors' training; imported weights)"]}})
    return info
