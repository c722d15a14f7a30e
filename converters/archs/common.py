"""Layers shared by every architecture: the pixel-shuffle tail and its Edge TPU-safe twin.

Measured on x86 with XNNPACK (int8, 320x240 -> x4, see docs/speed.md): an explicit output clip (MINIMUM + RELU)
split the delegate partition and doubled latency, and a 48-channel anchor concat+add cost ~8 ms. So the tail
has no clip (uint8 output quantization saturates to 0..255 for free) and the anchor is 3 input channels
concatenated into the tail conv, whose weights start as the nearest-neighbour upsampler.
"""
from __future__ import annotations

import numpy as np


def shuffle_weights(scale: int, channels: int = 3) -> np.ndarray:
    """One-hot transposed-conv kernel (kh, kw, out, in) that reproduces depth_to_space exactly:
    input channel (a*s+b)*C+c -> output pixel offset (a, b), channel c."""
    k = np.zeros((scale, scale, channels, scale * scale * channels), np.float32)
    for a in range(scale):
        for b in range(scale):
            for c in range(channels):
                k[a, b, c, (a * scale + b) * channels + c] = 1.0
    return k


def _static_shuffle_class():
    import keras
    import tensorflow as tf

    class StaticShuffle(keras.layers.Layer):
        """depth_to_space as TRANSPOSE_CONV with a constant output shape (no SHAPE/PACK ops, which would
        push the whole graph off the Edge TPU). Needs a fixed input shape."""

        def __init__(self, scale: int, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, x):
            n, h, w, c = x.shape
            if h is None or w is None:
                raise ValueError("the Edge TPU (transpose_conv) variant needs a fixed input tile shape")
            ch = c // (self.scale * self.scale)
            kernel = tf.constant(shuffle_weights(self.scale, ch))
            out_shape = [1 if n is None else n, h * self.scale, w * self.scale, ch]
            return tf.nn.conv2d_transpose(x, kernel, out_shape, strides=self.scale, padding="VALID")

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    return StaticShuffle


def pixel_shuffle(x, scale: int, upsample: str):
    """depth_to_space on CPU models; a fixed one-hot stride-s transposed conv for the Edge TPU (no D2S there)."""
    import keras

    if upsample == "depth_to_space":
        return keras.ops.depth_to_space(x, scale)
    if upsample == "transpose_conv":
        return _static_shuffle_class()(scale, name="upsample")(x)
    raise ValueError(f"upsample must be 'depth_to_space' or 'transpose_conv', not {upsample!r}")


def anchor_onehot(shape, features: int) -> np.ndarray:
    """The nearest-neighbour part of a tail kernel (kh, kw, features + C, C*s^2): centre tap of LR channel c
    into every output channel k*C + c (C = 3 for RGB, 1 for Y)."""
    k = np.zeros(shape, np.float32)
    channels = shape[2] - features
    for o in range(shape[-1]):
        k[1, 1, features + o % channels, o] = 1.0
    return k


def _anchor_init_class():
    import keras

    class AnchorInit(keras.initializers.Initializer):
        """Tail kernel init: N(0, 1e-3) on everything plus the nearest-neighbour one-hot."""

        def __init__(self, features: int):
            self.features = features

        def __call__(self, shape, dtype=None):
            k = np.random.default_rng(0).normal(0, 1e-3, size=shape).astype(np.float32)
            k += anchor_onehot(shape, self.features)
            return keras.ops.convert_to_tensor(k, dtype=dtype)

        def get_config(self):
            return {"features": self.features}

    return AnchorInit


def _AnchorInit(features: int):
    return _anchor_init_class()(features)


def sr_tail(features, lr, scale: int, anchor: bool, upsample: str, split_anchor: bool = False, name: str = "tail"):
    """3x3 conv to 3*s^2 channels then pixel shuffle. With ``anchor`` the LR image is concatenated to the
    features and the conv starts as nearest-neighbour upsampling, so the body learns only the residual.

    ``split_anchor`` builds the same function for int8 export: the conv keeps only the residual weights and the
    exact nearest-neighbour term is added after it (LR repeated s^2 times). Inside one conv, the anchor's 1.0
    would set every output channel's int8 weight scale and crush the small residual weights (0.41 dB lost at
    x2); split, each part gets its own scale. ``split_anchor=(lo, hi)`` also pins the residual's int8 range to
    [lo, hi] (FakeQuant; ``quantize.residual_range`` takes it from calibration percentiles): the min/max
    calibration let rare edge pixels stretch it to [-0.43, 1.29] at x2, 1.7 grey levels a step."""
    import keras

    c = int(lr.shape[-1]) * scale * scale
    if anchor:
        feats = int(features.shape[-1])
        features = keras.layers.Concatenate(name=f"{name}_anchor")([features, lr])
        x = keras.layers.Conv2D(c, 3, padding="same", kernel_initializer=_AnchorInit(feats), name=name)(features)
        if isinstance(split_anchor, tuple):
            x = ValueRange(*split_anchor, name=f"{name}_range")(x)
        if split_anchor:
            nn = keras.layers.Concatenate(name=f"{name}_nn_repeat")([lr] * (scale * scale))
            x = keras.layers.Add(name=f"{name}_nn_add")([x, nn])
    else:
        x = keras.layers.Conv2D(c, 3, padding="same", name=name)(features)
    return pixel_shuffle(x, scale, upsample)


def lr_input(input_shape):
    """The LR input; a fully fixed shape also fixes batch 1 (the Edge TPU rejects a dynamic batch)."""
    import keras

    static = all(d is not None for d in input_shape)
    return keras.Input(input_shape, batch_size=1 if static else None, name="lr")


def conv(x, filters: int, k: int = 3, act: str | None = "relu", name: str | None = None):
    import keras

    return keras.layers.Conv2D(filters, k, padding="same", activation=act, name=name)(x)


def ValueRange(lo: float, hi: float, name: str):
    """FakeQuant(lo, hi) as a layer: the int8 converter then uses exactly that range for the tensor."""
    import keras
    import tensorflow as tf

    class _ValueRange(keras.layers.Layer):
        def call(self, x):
            return tf.quantization.fake_quant_with_min_max_args(x, min=float(lo), max=float(hi), num_bits=8)

    return _ValueRange(name=name)


def with_output_range(model):
    """Wrap ``model`` with FakeQuant(0, 1) on its output for int8 export: the converter then uses exactly 256
    levels on [0, 1] (scale 1/255) instead of the calibrated overshoot range, and the clamp costs no op.
    Measured: x4 int8 loss 0.045 -> 0.031 dB (Set5), x2 0.134 -> 0.120 dB."""
    import keras

    return keras.Model(model.inputs, ValueRange(0.0, 1.0, name="output_range")(model.outputs[0]))


def copy_weights(src, dst) -> None:
    """Copy weights between two builds of the same network (e.g. dynamic shape -> fixed tile, D2S -> Edge TPU
    shuffle). Layers are matched by order; the fixed shuffle layer has no counterpart and is skipped."""
    s = [layer for layer in src.layers if layer.weights and layer.name != "upsample"]
    d = [layer for layer in dst.layers if layer.weights and layer.name != "upsample"]
    if len(s) != len(d):
        raise ValueError(f"networks differ: {len(s)} vs {len(d)} weighted layers")
    for a, b in zip(s, d):
        w = a.get_weights()
        if b.name == "tail" and "tail_nn_add" in {x.name for x in dst.layers} and \
                "tail_nn_add" not in {x.name for x in src.layers}:
            # split the anchor out of the conv
            w[0] = w[0] - anchor_onehot(w[0].shape, w[0].shape[2] - int(dst.input.shape[-1]))
        b.set_weights(w)
