"""Training losses: L1, L2 (fine-tune), EFDN's edge-enhanced gradient-variance loss, adversarial, distillation."""
from __future__ import annotations

import numpy as np


def l1(sr, hr):
    import tensorflow as tf

    return tf.reduce_mean(tf.abs(sr - hr))


def l2(sr, hr):
    """Mean squared error: the short fine-tune after L1 that PSNR (an MSE measure) rewards."""
    import tensorflow as tf

    return tf.reduce_mean(tf.square(sr - hr))


def _grad_maps(x):
    import tensorflow as tf

    gray = tf.reduce_mean(x, axis=-1, keepdims=True)
    sx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    k = tf.constant(np.stack([sx, sx.T], -1)[:, :, None, :])
    return tf.nn.conv2d(gray, k, 1, "VALID")


def gradient_variance(sr, hr, patch: int = 8):
    """EFDN's edge-enhanced gradient-variance loss: MSE between the per-patch variances of the Sobel
    gradient maps of SR and HR (sharp edges have high gradient variance; blurry outputs lose it)."""
    import tensorflow as tf

    def patch_var(g):
        p = tf.image.extract_patches(g, [1, patch, patch, 1], [1, patch, patch, 1], [1, 1, 1, 1], "VALID")
        return tf.math.reduce_variance(tf.reshape(p, tf.concat([tf.shape(p)[:3], [patch * patch, 2]], 0)), axis=3)

    return tf.reduce_mean(tf.square(patch_var(_grad_maps(sr)) - patch_var(_grad_maps(hr))))


def adversarial(real_logits, fake_logits, relativistic: bool = True):
    """(generator loss, discriminator loss). Relativistic average GAN (ESRGAN) or standard non-saturating."""
    import tensorflow as tf

    def bce(labels, logits):
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
    if relativistic:
        r = real_logits - tf.reduce_mean(fake_logits)
        f = fake_logits - tf.reduce_mean(real_logits)
        d = bce(tf.ones_like(r), r) + bce(tf.zeros_like(f), f)
        g = bce(tf.zeros_like(r), r) + bce(tf.ones_like(f), f)
        return g, d
    d = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
    return bce(tf.ones_like(fake_logits), fake_logits), d


def distillation(student_out, teacher_out, student_feats=(), teacher_feats=()):
    """L1 to the teacher's output, plus L1 between matched intermediate feature maps when given."""
    import tensorflow as tf

    loss = l1(student_out, teacher_out)
    for s, t in zip(student_feats, teacher_feats):
        loss += tf.reduce_mean(tf.abs(s - t))
    return loss
