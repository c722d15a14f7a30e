"""SRGAN-style (EdgeSRGAN-like) generator and a patch discriminator.

Generator: head conv, ``blocks`` residual blocks without batch-norm, global skip, pixel-shuffle tail (the
body-out conv of SRGAN is dropped: at 16-24 channels it costs a fifth of the frame time).
Only CONV_2D, ADD, RELU, CONCATENATION and the shuffle: all int8-quantizable and Edge TPU-mappable.
"""
from __future__ import annotations

from .common import conv, lr_input, sr_tail


def generator(spec, input_shape=(None, None, 3), upsample: str = "depth_to_space", split_anchor: bool = False):
    import keras

    lr = lr_input(input_shape)
    head = conv(lr, spec.width, act="relu" if spec.blocks == 0 else None, name="head")
    x = head
    for i in range(spec.blocks):
        y = conv(x, spec.width, name=f"block{i}_conv1")
        y = conv(y, spec.width, act=None, name=f"block{i}_conv2")
        x = keras.layers.Add(name=f"block{i}_add")([x, y])
    if spec.blocks:
        x = keras.layers.ReLU(name="global_skip_relu")(keras.layers.Add(name="global_skip")([x, head]))
    out = sr_tail(x, lr, spec.scale, spec.anchor, upsample, split_anchor)
    return keras.Model(lr, out, name=f"srgan_w{spec.width}_b{spec.blocks}_x{spec.scale}")


def discriminator(width: int = 32, input_shape=(None, None, 3)):
    """PatchGAN-style critic: strided convs with LeakyReLU, one logit per patch (training only, never deployed)."""
    import keras

    hr = keras.Input(input_shape, name="hr")
    x = hr
    for i, (mult, stride) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)]):
        x = keras.layers.Conv2D(width * mult, 3, strides=stride, padding="same", name=f"d_conv{i}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    out = keras.layers.Conv2D(1, 3, padding="same", name="d_logit")(x)
    return keras.Model(hr, out, name=f"patch_discriminator_w{width}")
