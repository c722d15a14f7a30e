"""HR image folders -> aligned (LR, HR) training patches with the literature's degradation.

LR = MATLAB-style antialiased bicubic downscale (``edgesr.metrics.degrade``) of the whole image, then aligned
random crops; patches are cached as .npz so later runs (and ``--resume``) start in seconds.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgesr.errors import DataError
from edgesr.imageio import IMAGE_EXTS, is_image, read_rgb
from edgesr.metrics import degrade, mod_crop


def list_images(folders) -> list[Path]:
    """All images below the given folders, sorted; a clear error for a missing or empty folder."""
    files: list[Path] = []
    for folder in [folders] if isinstance(folders, (str, os.PathLike)) else folders:
        root = Path(folder)
        if not root.is_dir():
            raise DataError(f"{root}: not a folder")
        found = sorted(p for p in root.rglob("*") if is_image(p))
        if not found:
            raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTS))}) found")
        files += found
    return files


def _cache_path(files, scale, patch, per_image, seed, cache_dir, lr_codec=None) -> Path:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(f"{scale}:{patch}:{per_image}:{seed}:{lr_codec}".encode())
    return Path(cache_dir) / f"patches_x{scale}_p{patch}_{h.hexdigest()[:12]}.npz"


def parse_lr_codec(spec: str | None):
    """'webp:30-90' -> ('webp', 30, 90): LR patches go through that codec at a random quality in the range (the
    robot upscales decoded, compressed LR frames; README, the link study on video)."""
    if not spec:
        return None
    try:
        codec, q = spec.split(":")
        lo, hi = (int(v) for v in q.split("-"))
        assert codec in ("jpeg", "webp") and 1 <= lo <= hi <= 100
        return codec, lo, hi
    except (ValueError, AssertionError):
        raise DataError(f"--lr-codec {spec!r}: expected jpeg|webp:LO-HI, e.g. webp:30-90") from None


def make_patches(folders, scale: int, patch: int = 32, per_image: int = 16, seed: int = 0,
                 cache_dir: str | None = None, progress: bool = True,
                 lr_codec: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 arrays of shape (N, patch, patch, 3) and (N, patch*s, patch*s, 3); with ``lr_codec`` each LR
    patch has been through that lossy codec (see ``parse_lr_codec``)."""
    files = list_images(folders)
    codec = parse_lr_codec(lr_codec)
    cache_dir = cache_dir or os.environ.get("EDGESR_CACHE", str(Path.home() / ".cache" / "edgesr"))
    cache = _cache_path(files, scale, patch, per_image, seed, cache_dir, lr_codec)
    if cache.exists():
        with np.load(cache) as z:
            return z["lr"], z["hr"]
    rng = np.random.default_rng(seed)
    lrs, hrs = [], []
    from tqdm import tqdm

    for f in tqdm(files, desc=f"patches x{scale}", unit="img", disable=not progress):
        hr = mod_crop(read_rgb(f, error=DataError), scale)
        if min(hr.shape[:2]) < patch * scale:
            raise DataError(f"{f}: {hr.shape[1]}x{hr.shape[0]} is smaller than one {patch * scale}px HR crop")
        lr = degrade(hr, scale)
        ys = rng.integers(0, lr.shape[0] - patch + 1, per_image)
        xs = rng.integers(0, lr.shape[1] - patch + 1, per_image)
        for y, x in zip(ys, xs):
            p = lr[y:y + patch, x:x + patch]
            if codec:
                from edgesr.codec import decode, encode
                p = decode(encode(p, codec[0], int(rng.integers(codec[1], codec[2] + 1))))
            lrs.append(p)
            hrs.append(hr[y * scale:(y + patch) * scale, x * scale:(x + patch) * scale])
    lr_arr, hr_arr = np.stack(lrs), np.stack(hrs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # two runs may build the same cache at once
    np.savez(tmp, lr=lr_arr, hr=hr_arr)
    os.replace(tmp, cache)
    return lr_arr, hr_arr


def dataset(lr: np.ndarray, hr: np.ndarray, batch: int, seed: int = 0):
    """Infinite shuffled tf.data pipeline of float [0,1] batches with random flips and 90-degree rotations."""
    import tensorflow as tf

    def augment(a, b):
        a, b = tf.image.convert_image_dtype(a, tf.float32), tf.image.convert_image_dtype(b, tf.float32)
        k = tf.random.uniform([], 0, 4, tf.int32, seed=seed)
        a, b = tf.image.rot90(a, k), tf.image.rot90(b, k)
        flip = tf.random.uniform([], seed=seed) < 0.5
        return tf.cond(flip, lambda: (a[:, ::-1], b[:, ::-1]), lambda: (a, b))

    ds = tf.data.Dataset.from_tensor_slices((lr, hr)).shuffle(min(len(lr), 20000), seed=seed).repeat()
    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True).prefetch(4)


def load_pairs(folder, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR) for each image of an evaluation folder, under the protocol (mod-crop, MATLAB bicubic)."""
    out = []
    for f in list_images(folder):
        hr = mod_crop(read_rgb(f, error=DataError), scale)
        out.append((f.stem, degrade(hr, scale), hr))
    return out
