"""Edge TPU compatibility report (from the flatbuffer, always) and compilation (when edgetpu_compiler exists).

Rules: Coral's supported-operations table (coral.ai/docs/edgetpu/models-intro) and measured facts (README,
Edge TPU): every tensor int8/uint8, static shapes, batch 1 (only the innermost 3 dims > 1), no DEPTH_TO_SPACE.
The compiler splits the graph once: the first unmappable op and everything after it run on the CPU.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edgesr.errors import ModelError
from edgesr.interpreter import is_edgetpu_model, open_interpreter
from edgesr.modelcard import load_card

SUPPORTED = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD",
    "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}
WHY_NOT = {
    "DEPTH_TO_SPACE": "not supported by the Edge TPU (compiler fails; use the transpose_conv shuffle variant)",
    "DEQUANTIZE": "float output: the Edge TPU runs int8 only",
    "LEAKY_RELU": "not supported (use RELU or PRELU with shared_axes=[1,2])",
    "SHAPE": "dynamic shape computation; export with a fixed tile",
}


def compatibility_report(model_path) -> dict:
    """Per-op table: op, dtypes, shapes, maps (bool), why not, and where it would run after the split."""
    path = Path(model_path)
    it = open_interpreter(path, 1, allocate=False)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    details = it._get_ops_details()
    # activations (graph inputs and op outputs) carry the shape rules; weights are constant 4-D kernels
    activations = {d["index"] for d in it.get_input_details()} | {i for op in details for i in op["outputs"]}
    ops, split_seen = [], False
    for op in details:
        name = op["op_name"]
        idx = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
        dtypes = sorted({np.dtype(tensors[i]["dtype"]).name for i in idx})
        reasons = []
        if name not in SUPPORTED:
            reasons.append(WHY_NOT.get(name, "not in the Edge TPU's supported-operations table"))
        float_t = [d for d in dtypes if d.startswith("float")]
        if float_t and name not in ("QUANTIZE", "DEQUANTIZE"):
            reasons.append(f"{'/'.join(float_t)} tensors: the Edge TPU needs full-integer int8 quantization")
        for i in (i for i in idx if i in activations):
            sig = [int(d) for d in tensors[i].get("shape_signature", tensors[i]["shape"])]
            if any(d < 0 for d in sig):
                reasons.append(f"dynamic shape {sig}: export with a fixed --tile")
                break
            if len(sig) > 3 and any(d > 1 for d in sig[:-3]):
                reasons.append(f"shape {sig}: only the innermost 3 dimensions may exceed 1 (batch 1)")
                break
        maps = not reasons
        split_seen |= not maps
        ops.append({"op": name, "dtypes": dtypes, "maps": maps, "why_not": "; ".join(dict.fromkeys(reasons)),
                    "runs_on": "edgetpu" if maps and not split_seen else "cpu"})
    n_tpu = sum(o["runs_on"] == "edgetpu" for o in ops)
    return {"model": path.name, "ops": ops, "n_ops": len(ops), "n_edgetpu": n_tpu,
            "fully_mapped": n_tpu == len(ops), "already_compiled": is_edgetpu_model(path),
            "rules": "coral.ai/docs/edgetpu/models-intro supported ops + measured facts (README, Edge TPU)"}


def format_report(rep: dict) -> str:
    lines = [f"Edge TPU compatibility of {rep['model']}: {rep['n_edgetpu']}/{rep['n_ops']} ops would run on "
             f"the Edge TPU" + (" (fully mapped)" if rep["fully_mapped"] else "")]
    for i, o in enumerate(rep["ops"]):
        mark = "ok " if o["maps"] else "NO "
        lines.append(f"  {i:3d} {mark}{o['op']:<24} {','.join(o['dtypes']):<14} {o['runs_on']:<8} {o['why_not']}")
    return "\n".join(lines)


def compile_model(model_path, out_dir=None) -> dict:
    """Always write ``<model>.edgetpu_report.json/.txt``; run edgetpu_compiler when on PATH.
    Returns {'report': path, 'compiled': path or None, 'compiler': version or None, 'log': text}."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    out = Path(out_dir) if out_dir else path.parent
    out.mkdir(parents=True, exist_ok=True)
    rep = compatibility_report(path)
    result = {"compiled": None, "compiler": None, "log": None}
    exe = shutil.which("edgetpu_compiler")
    if exe:
        proc = subprocess.run([exe, "-s", "-o", str(out), str(path)], capture_output=True, text=True, timeout=600)
        result["log"] = proc.stdout + proc.stderr
        m = re.search(r"Edge TPU Compiler version ([\w.]+)", result["log"])
        result["compiler"] = m.group(1) if m else "unknown"
        compiled = out / f"{path.stem}_edgetpu.tflite"
        if proc.returncode == 0 and compiled.exists():
            result["compiled"] = str(compiled)
            card = load_card(path)
            if card is not None:
                card.name, card.edgetpu_compiled, card.cpu_twin, card.variant = \
                    compiled.stem, True, path.name, "edgetpu"
                card.save(compiled.with_suffix(".json"))
        rep["compiler_log"] = result["log"]
    rep_path = out / f"{path.stem}.edgetpu_report.json"
    rep_path.write_text(json.dumps(rep, indent=1) + "\n")
    rep_path.with_suffix(".txt").write_text(format_report(rep) + "\n")
    result["report"] = str(rep_path)
    result["summary"] = format_report(rep).splitlines()[0]
    return result
