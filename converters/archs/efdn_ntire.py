"""The EFDN authors' NTIRE 2022 network at deploy time (Wang 2022; github icandle/EFDN, Apache-2.0), layer for layer,
so their trained weights (``model_zoo/EFDN_gv.pth``) load into Keras: ``edgesr-convert import``.

Head 3x3 conv; four cells (1x1 conv + PReLU, two re-parameterized EDBB 3x3 convs + PReLU, four 1x1 branches
concatenated and fused, ESA attention, residual); local 1x1 fusions between cells; global skip; 3x3 tail and
pixel shuffle. The ESA (enhanced spatial attention) pools a stride-2 copy of the features with a 7x7/3 max-pool
and bilinearly resizes back, so its receptive field spans the whole input: tiles are not exact for this network.
"""
from __future__ import annotations

import numpy as np

from .common import lr_input, pixel_shuffle


def _resize_like_class():
    import keras
    import tensorflow as tf

    class ResizeLike(keras.layers.Layer):
        """Bilinear resize of x to y's spatial size (half-pixel centres: PyTorch's align_corners=False)."""

        def call(self, x, y):
            return tf.image.resize(x, tf.shape(y)[1:3], method="bilinear")

    return ResizeLike


def efdn_ntire(spec, input_shape=(None, None, 3), upsample: str = "depth_to_space", split_anchor=False, **_):
    """The deploy-time EFDN (``spec.width`` features, ``spec.blocks`` cells; the authors' model is w48 b4)."""
    import keras
    from keras import layers as L

    ResizeLike = _resize_like_class()
    n, f = spec.width, spec.width // 4

    def conv(x, c, k, name, stride=1, padding="same"):
        return L.Conv2D(c, k, strides=stride, padding=padding, name=name)(x)

    def prelu(x, name):
        return L.PReLU(shared_axes=[1, 2], name=name)(x)

    def esa(x, p):
        c1_ = conv(x, f, 1, f"{p}_conv1")
        c1 = conv(c1_, f, 3, f"{p}_conv2", stride=2, padding="valid")
        v = L.MaxPooling2D(7, strides=3, padding="valid", name=f"{p}_pool")(c1)
        v = L.ReLU(name=f"{p}_max_relu")(conv(v, f, 3, f"{p}_conv_max"))
        c3 = L.ReLU(name=f"{p}_c3_relu")(conv(v, f, 3, f"{p}_conv3"))
        c3 = ResizeLike(name=f"{p}_resize")(conv(c3, f, 3, f"{p}_conv3_"), x)
        cf = conv(c1_, f, 1, f"{p}_conv_f")
        m = L.Activation("sigmoid", name=f"{p}_sigmoid")(conv(L.Add(name=f"{p}_c3cf")([c3, cf]), n, 1, f"{p}_conv4"))
        return L.Multiply(name=f"{p}_mul")([x, m])

    def cell(x, i):
        p = f"cell{i}"
        o1 = prelu(conv(x, n, 1, f"{p}_conv1"), f"{p}_conv1_act")
        o2 = prelu(conv(o1, n, 3, f"{p}_conv2"), f"{p}_conv2_act")
        o3 = prelu(conv(o2, n, 3, f"{p}_conv3"), f"{p}_conv3_act")
        br = [conv(t, n // 2, 1, f"{p}_branch{j}") for j, t in enumerate((x, o1, o2, o3))]
        out = conv(L.Concatenate(name=f"{p}_cat")(br), n, 1, f"{p}_fuse")
        return L.Add(name=f"{p}_res")([esa(out, f"{p}_att"), x])

    lr = lr_input(input_shape)
    out0 = conv(lr, n, 3, "head")
    outs = [cell(out0, 0)]
    x = outs[0]
    for i in range(1, spec.blocks):
        y = cell(x, i)
        # the authors' wiring: fuse(cells[i-1] out, cells[i] out) feeds the next cell, except that the last two
        # fusions read cell 1's output (out2), not their own predecessor
        prev = outs[0] if i == 1 else outs[1]
        outs.append(y)
        x = conv(L.Concatenate(name=f"local_fuse{i - 1}_cat")([prev, y]), n, 1, f"local_fuse{i - 1}")
    x = L.Add(name="global_skip")([x, out0])
    x = conv(x, 3 * spec.scale ** 2, 3, "tail")
    return keras.Model(lr, pixel_shuffle(x, spec.scale, upsample), name=f"efdn_ntire_w{n}_b{spec.blocks}_x{spec.scale}")


def _torch_names(spec) -> dict[str, str]:
    """Keras layer name -> the PyTorch state-dict prefix it takes its weights from."""
    names = {"head": "head", "tail": "tail.0"}
    for i in range(spec.blocks):
        p, t = f"cell{i}", f"cells.{i}"
        names |= {f"{p}_conv1": f"{t}.conv1.conv1x1", f"{p}_conv1_act": f"{t}.conv1.act",
                  f"{p}_conv2": f"{t}.conv2.rep_conv", f"{p}_conv2_act": f"{t}.conv2.act",
                  f"{p}_conv3": f"{t}.conv3.rep_conv", f"{p}_conv3_act": f"{t}.conv3.act", f"{p}_fuse": f"{t}.fuse"}
        names |= {f"{p}_branch{j}": f"{t}.branch.{j}" for j in range(4)}
        names |= {f"{p}_att_{c}": f"{t}.att.{c}" for c in ("conv1", "conv_f", "conv_max", "conv2", "conv3", "conv3_",
                                                            "conv4")}
    names |= {f"local_fuse{i}": f"local_fuse.{i}" for i in range(spec.blocks - 1)}
    return names


def shuffle_order(scale: int, channels: int = 3) -> np.ndarray:
    """Index map from depth_to_space's channel order ((a*s + b)*C + c) to PixelShuffle's (c*s*s + a*s + b)."""
    s = scale
    return np.array([c * s * s + a * s + b for a in range(s) for b in range(s) for c in range(channels)])


def load_torch_weights(model, spec, state: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch EFDN state dict into ``model`` (conv OIHW -> HWIO; the tail's output channels reordered
    from PixelShuffle's order to depth_to_space's). Every tensor must be used exactly once."""
    from edgesr.errors import DataError

    used = set()
    for layer_name, prefix in _torch_names(spec).items():
        layer = model.get_layer(layer_name)
        try:
            if layer_name.endswith("_act"):
                w = [state[f"{prefix}.weight"].reshape(layer.get_weights()[0].shape)]
                used.add(f"{prefix}.weight")
            else:
                k = state[f"{prefix}.weight"].transpose(2, 3, 1, 0)
                b = state[f"{prefix}.bias"]
                if layer_name == "tail":
                    order = shuffle_order(spec.scale)
                    k, b = k[..., order], b[order]
                w = [k, b]
                used |= {f"{prefix}.weight", f"{prefix}.bias"}
            layer.set_weights(w)
        except KeyError as e:
            raise DataError(f"checkpoint has no tensor {e}: "
                            f"not an EFDN w{spec.width} b{spec.blocks} state dict") from None
        except ValueError as e:
            raise DataError(f"checkpoint tensor for {prefix} has the wrong shape ({e})") from None
    extra = sorted(set(state) - used)
    if extra:
        raise DataError(f"checkpoint has tensors this EFDN does not use: {', '.join(extra[:5])}")
