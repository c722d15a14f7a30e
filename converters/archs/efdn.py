"""EFDN-style network built from EDBB blocks (edge-enhanced diverse branch blocks, Wang 2022).

Each EDBB sums, at train time: 3x3 conv, 1x1 conv, 1x1 -> 3x3, 1x1 -> Sobel-x, 1x1 -> Sobel-y, 1x1 -> Laplacian
(fixed masks with learned per-channel scales) and the identity when shapes allow. All branches are linear, so
``fused()`` folds them into one 3x3 kernel + bias; the deployed model is plain CONV_2D + RELU.
The 1x1 convs that feed other convs have no bias, which keeps the folding exact at zero-padded borders.
"""
from __future__ import annotations

import numpy as np

from .common import conv, lr_input, sr_tail

SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
SOBEL_Y = SOBEL_X.T.copy()
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
MASKS = {"sobel_x": SOBEL_X, "sobel_y": SOBEL_Y, "laplacian": LAPLACIAN}


def _edbb_class():
    import keras
    from keras import ops

    class EDBB(keras.layers.Layer):
        """Train-time EDBB. ``branchwise=True`` computes every branch separately (the definition);
        the default evaluates the folded kernel, which is the same function and trains ~5x faster."""

        def __init__(self, filters: int, branchwise: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.branchwise = filters, branchwise

        def build(self, input_shape):
            cin, c = int(input_shape[-1]), self.filters
            self.cin = cin
            def w(n, s, init="glorot_uniform"):
                return self.add_weight(name=n, shape=s, initializer=init)
            self.k3, self.b3 = w("k3", (3, 3, cin, c)), w("b3", (c,), "zeros")
            self.k1, self.b1 = w("k1", (1, 1, cin, c)), w("b1", (c,), "zeros")
            self.seq_1x1, self.seq_k3 = w("seq_1x1", (1, 1, cin, c)), w("seq_k3", (3, 3, c, c))
            self.seq_b = w("seq_b", (c,), "zeros")
            self.edge = {}
            for m in MASKS:
                self.edge[m] = (w(f"{m}_1x1", (1, 1, cin, c)), w(f"{m}_scale", (c,), "ones"),
                                w(f"{m}_bias", (c,), "zeros"))

        def fused(self):
            """(3x3 kernel, bias) equal to the sum of all branches."""
            k = self.k3 + ops.pad(self.k1, [[1, 1], [1, 1], [0, 0], [0, 0]])
            b = self.b3 + self.b1 + self.seq_b
            # 1x1 (cin->c) then 3x3 (c->c): K[y,x,i,o] = sum_m W1[i,m] K3[y,x,m,o]
            k = k + ops.einsum("im,yxmo->yxio", self.seq_1x1[0, 0], self.seq_k3)
            for m, (w1, scale, bias) in self.edge.items():
                mask = ops.convert_to_tensor(MASKS[m])
                k = k + ops.einsum("yx,io,o->yxio", mask, w1[0, 0], scale)
                b = b + bias
            if self.cin == self.filters:
                k = k + ops.convert_to_tensor(np.pad(np.eye(self.cin, dtype=np.float32)[None, None],
                                                     [[1, 1], [1, 1], [0, 0], [0, 0]]))
            return k, b

        def call(self, x):
            if not self.branchwise:
                k, b = self.fused()
                return ops.conv(x, k, padding="same") + b
            y = ops.conv(x, self.k3, padding="same") + self.b3
            y = y + ops.conv(x, self.k1, padding="same") + self.b1
            y = y + ops.conv(ops.conv(x, self.seq_1x1), self.seq_k3, padding="same") + self.seq_b
            for m, (w1, scale, bias) in self.edge.items():
                t = ops.conv(x, w1)
                dw = ops.tile(ops.convert_to_tensor(MASKS[m])[:, :, None, None], (1, 1, self.filters, 1))
                y = y + ops.depthwise_conv(t, dw, padding="same") * scale + bias
            if self.cin == self.filters:
                y = y + x
            return y

        def get_config(self):
            return {**super().get_config(), "filters": self.filters, "branchwise": self.branchwise}

    return EDBB


def efdn(spec, input_shape=(None, None, 3), upsample: str = "depth_to_space", split_anchor: bool = False,
         deploy: bool = False,
         branchwise: bool = False):
    """Head conv, ``blocks`` EDBB+ReLU blocks with a skip over the body, pixel-shuffle tail."""
    import keras

    EDBB = _edbb_class()
    lr = lr_input(input_shape)
    head = conv(lr, spec.width, act=None, name="head")
    x = head
    for i in range(spec.blocks):
        if deploy:
            x = keras.layers.Conv2D(spec.width, 3, padding="same", name=f"edbb{i}")(x)
        else:
            x = EDBB(spec.width, branchwise=branchwise, name=f"edbb{i}")(x)
        x = keras.layers.ReLU(name=f"edbb{i}_relu")(x)
    x = keras.layers.Add(name="global_skip")([x, head])
    out = sr_tail(x, lr, spec.scale, spec.anchor, upsample, split_anchor)
    return keras.Model(lr, out, name=f"efdn_w{spec.width}_b{spec.blocks}_x{spec.scale}")


def reparameterize(model, spec, input_shape=(None, None, 3), upsample: str = "depth_to_space",
                   split_anchor: bool = False):
    """Deploy model (plain 3x3 convs) computing the same function as the train-time EFDN ``model``."""
    from .common import anchor_onehot

    input_shape = (*input_shape[:2], spec.channels)
    deploy = efdn(spec, input_shape=input_shape, upsample=upsample, deploy=True, split_anchor=split_anchor)
    for layer in deploy.layers:
        if not layer.weights or layer.name == "upsample":
            continue
        src = model.get_layer(layer.name)
        if layer.name.startswith("edbb"):
            k, b = src.fused()
            layer.set_weights([np.asarray(k), np.asarray(b)])
        else:
            w = src.get_weights()
            if layer.name == "tail" and split_anchor:
                w[0] = w[0] - anchor_onehot(w[0].shape, w[0].shape[2] - spec.channels)
            layer.set_weights(w)
    return deploy
