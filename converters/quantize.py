"""Keras run -> TFLite (float32, float16, int8) with a fixed tile or dynamic shape, plus its model card.

Conversion follows the measured recipe (docs/workstation.md): ``from_keras_model`` with DEFAULT optimizations, a
representative dataset of training crops, TFLITE_BUILTINS_INT8 and uint8 IO for int8.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgesr.errors import DataError
from edgesr.modelcard import ModelCard

from .archs import build
from .archs.common import copy_weights, with_output_range


def network_cost(model, scale: int) -> tuple[int, float, int]:
    """(params, MACs per output pixel, LR receptive margin) from the layers of a Keras model."""
    import keras

    macs_lr, margin = 0.0, 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            k, cin, cout = layer.kernel_size[0], layer.input.shape[-1], layer.filters
            macs_lr += k * k * cin * cout
            margin += math.ceil((k // 2) / layer.strides[0])
        elif isinstance(layer, keras.layers.Conv2D):
            k, cin, cout = layer.kernel_size[0], layer.input.shape[-1], layer.filters
            macs_lr += k * k * cin * cout
            margin += k // 2
        elif layer.__class__.__name__ == "EDBB":
            macs_lr += 9 * layer.cin * layer.filters
            margin += 1
    return model.count_params(), macs_lr / (scale * scale), margin


def representative_crops(folders, scale: int, shape: tuple[int, int], n: int = 64, seed: int = 1,
                         luma: bool = False):
    """Float [0,1] LR crops of ``shape`` from training images (MATLAB-degraded), for int8 calibration; their Y
    channel (``edgesr.color.luma``) for Y models."""
    from edgesr.color import luma as to_luma
    from edgesr.imageio import read_rgb
    from edgesr.metrics import degrade

    from .data import list_images

    files = list_images(folders)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(files), size=min(n, len(files)), replace=False)
    crops = []
    for i in picks:
        lr = degrade(read_rgb(files[i], error=DataError), scale)
        lr = to_luma(lr) if luma else lr
        h, w = shape
        if lr.shape[0] < h or lr.shape[1] < w:
            lr = np.pad(lr, ((0, max(0, h - lr.shape[0])), (0, max(0, w - lr.shape[1])), (0, 0)), mode="edge")
        y, x = rng.integers(0, lr.shape[0] - h + 1), rng.integers(0, lr.shape[1] - w + 1)
        crops.append(lr[y:y + h, x:x + w].astype(np.float32)[None] / 255.0)
    return crops


def equalize_anchor(model, spec, rep) -> float:
    """Rescale the feature stream of an anchored ReLU network so it spans [0, 1] like the LR input.

    CONCATENATION gives all its inputs one quantization scale, so features reaching ~2 would make the uint8
    input 2x coarser. ReLU networks are positively homogeneous: multiplying the stream by a = 1/max and
    dividing its consumers' input weights by a leaves the function unchanged (tested), only the ranges move.
    Returns a (1.0 when nothing was done)."""
    import keras

    if not spec.anchor or spec.arch not in ("srgan", "efdn") or not rep:
        return 1.0
    concat = model.get_layer("tail_anchor")
    feats = keras.Model(model.input, concat.input[0])
    peak = max(float(np.max(feats(r))) for r in rep[:16])
    if peak <= 0:
        return 1.0
    a = 1.0 / peak
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D) or layer.name == "upsample":
            continue
        k, b = layer.get_weights()
        n = layer.name
        if n == "head":                      # stream source: scale output
            k, b = k * a, b * a
        elif n.endswith("_conv1"):           # reads the stream, writes an internal activation
            k = k / a
        elif n.endswith("_conv2"):           # writes into the stream
            k, b = k * a, b * a
        elif n.startswith("edbb"):           # stream -> stream: kernel unchanged, bias scaled
            b = b * a
        elif n == "tail":                    # consumer: feature input channels only (LR channels are last)
            k = k.copy()
            k[:, :, : k.shape[2] - spec.channels, :] /= a
        else:
            raise ValueError(f"equalize_anchor does not know layer {n!r}")
        layer.set_weights([k, b])
    return a


def residual_range(model, rep, pct: float = 0.01) -> tuple[float, float] | None:
    """(lo, hi) percentiles (``pct`` %, 100 - ``pct`` %) of the split tail's residual over the calibration crops,
    widened to include 0; None for networks without a split anchored tail."""
    import keras

    if "tail_nn_add" not in {layer.name for layer in model.layers}:
        return None
    sub = keras.Model(model.input, model.get_layer("tail").output)
    vals = np.concatenate([np.asarray(sub(r)).ravel() for r in rep])
    lo, hi = np.percentile(vals, [pct, 100 - pct])
    return float(min(lo, 0.0)), float(max(hi, 0.0))


def convert(model, dtype: str, rep=None, io: str = "uint8", batch: int = 1) -> bytes:
    """TFLite bytes. int8 is full-integer (TFLITE_BUILTINS_INT8) with ``io`` = 'uint8', 'int8' or
    'uint8-int8' (uint8 input, int8 output: no QUANTIZE over the big HR output; the runtime's LUT converts);
    representative tensors are repeated to ``batch`` for batched tile models."""
    import tensorflow as tf

    if rep is not None and batch > 1:
        rep = [np.concatenate([rep[(i + j) % len(rep)] for j in range(batch)]) for i in range(len(rep))]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif dtype == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([c] for c in rep)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        types = {"uint8": tf.uint8, "int8": tf.int8}
        i_t, _, o_t = io.partition("-")
        conv.inference_input_type, conv.inference_output_type = types[i_t], types[o_t or i_t]
    elif dtype != "float32":
        raise DataError(f"dtype must be float32, float16 or int8, not {dtype!r}")
    return conv.convert()


def export(run_dir, out_dir, dtype: str, tile: tuple[int, int] | None, data, edgetpu: bool = False,
           name: str | None = None, batch: int = 1) -> Path:
    """Write ``<name>.tflite`` + ``<name>.json`` (card without metrics) and return the model path."""
    from .runs import load_run, read_state

    if edgetpu and (dtype != "int8" or tile is None):
        raise DataError("the Edge TPU variant needs --dtype int8 and a fixed --tile WxH")
    trained, spec = load_run(run_dir)
    shape = (tile[0], tile[1], spec.channels) if tile else (None, None, spec.channels)
    if spec.arch == "efdn":
        from .archs.efdn import reparameterize
        model = reparameterize(trained, spec, input_shape=shape,
                               upsample="transpose_conv" if edgetpu else "depth_to_space", split_anchor=dtype == "int8")
    else:
        model = build(spec, input_shape=shape, upsample="transpose_conv" if edgetpu else "depth_to_space",
                      split_anchor=dtype == "int8")
        copy_weights(trained, model)
    rep = representative_crops(data, spec.scale, tile or (64, 64), luma=spec.channels == 1) if dtype == "int8" else None
    if rep is not None:
        equalize_anchor(model, spec, rep)
        rng = residual_range(model, rep)
        if rng is not None:  # the same network with the residual's int8 range pinned (archs.common.sr_tail)
            pinned = build(spec, input_shape=shape, upsample="transpose_conv" if edgetpu else "depth_to_space",
                           deploy=True, split_anchor=rng)
            copy_weights(model, pinned)
            model = pinned
        model = with_output_range(model)
    if batch > 1:
        import keras
        inp = keras.Input(shape, batch_size=batch)
        model = keras.Model(inp, model(inp))
    blob = convert(model, dtype, rep, io="uint8-int8", batch=batch)
    params, macs, margin = network_cost(trained, spec.scale)
    tag = f"_{tile[1]}x{tile[0]}" if tile else ""  # WxH, like every size on the command line
    shape_tag = f"_w{spec.width}b{spec.blocks}" if spec.arch in ("srgan", "efdn") else ""  # baselines are fixed
    shape_tag += "_y" if spec.channels == 1 else ""
    name = name or f"{spec.arch}{shape_tag}_x{spec.scale}_{dtype}{tag}{'_edgetpu_ready' if edgetpu else ''}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.tflite"
    path.write_bytes(blob)
    state = read_state(run_dir)
    cfg = state.get("config", {})
    card = ModelCard(name=name, scale=spec.scale, variant="edgetpu" if edgetpu else "cpu", dtype=dtype,
                     color="y" if spec.channels == 1 else "rgb",
                     tile=list(tile) if tile else None, margin=margin, arch=spec.to_dict(), params=int(params),
                     macs_per_output_pixel=round(macs, 1),
                     training={"data": cfg.get("data"), "steps": state.get("step"), "command": cfg.get("command"),
                               "val": cfg.get("val"), "best_val_psnr": state.get("best_psnr")})
    card.save(path.with_suffix(".json"))
    return path
