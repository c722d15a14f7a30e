"""Published baselines, trained on the same data as our models so the comparison is fair.

ESPCN (Shi et al. 2016): 5x5/64 tanh, 3x3/32 tanh, 3x3 -> pixel shuffle.
FSRCNN (Dong et al. 2016): 5x5/56, 1x1 shrink 12, 4x 3x3/12, 1x1 expand 56 (PReLU), 9x9 stride-s deconvolution.
Both on RGB here (the papers used Y only); no anchor unless the spec asks for one.
"""
from __future__ import annotations

from .common import conv, lr_input, sr_tail


def espcn(spec, input_shape=(None, None, 3), upsample: str = "depth_to_space", split_anchor: bool = False):
    import keras

    lr = lr_input(input_shape)
    x = conv(lr, 64, 5, act="tanh")
    x = conv(x, 32, 3, act="tanh")
    return keras.Model(lr, sr_tail(x, lr, spec.scale, spec.anchor, upsample, split_anchor), name=f"espcn_x{spec.scale}")


def fsrcnn(spec, input_shape=(None, None, 3), upsample: str = "depth_to_space", split_anchor: bool = False):
    import keras

    def prelu(x):
        return keras.layers.PReLU(shared_axes=[1, 2])(x)

    d, s, m = 56, 12, 4
    lr = lr_input(input_shape)
    x = prelu(conv(lr, d, 5, act=None))
    x = prelu(conv(x, s, 1, act=None))
    for _ in range(m):
        x = prelu(conv(x, s, 3, act=None))
    x = prelu(conv(x, d, 1, act=None))
    x = keras.layers.Conv2DTranspose(3, 9, strides=spec.scale, padding="same", name="deconv")(x)
    return keras.Model(lr, x, name=f"fsrcnn_x{spec.scale}")
