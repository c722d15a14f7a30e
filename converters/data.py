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


def _cache_path(files, scale, patch, per_image, seed, cache_dir, lr_codec=None, teacher=None) -> Path:
    h = hashlib.sha1()
    for f in files + ([Path(teacher)] if teacher else []):
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(f"{scale}:{patch}:{per_image}:{seed}:{lr_codec}".encode())
    return Path(cache_dir) / f"patches_x{scale}_p{patch}_{h.hexdigest()[:12]}.npz"


def parse_lr_codec(spec: str | None):
    """'webp:30-90' -> ('webp', 30, 90): LR patches go through that codec at a random quality in the range (the
    robot upscales decoded, compressed LR frames; docs/link-studies.md). 'h264:20-34': an H.264 intra
    picture at a random QP (lower is better) in the range, through libx264 (PyAV, the `video` extra)."""
    if not spec:
        return None
    try:
        codec, q = spec.split(":")
        lo, hi = (int(v) for v in q.split("-"))
        assert codec in ("jpeg", "webp") and 1 <= lo <= hi <= 100 or codec == "h264" and 0 <= lo <= hi <= 51
        return codec, lo, hi
    except (ValueError, AssertionError):
        raise DataError(f"--lr-codec {spec!r}: expected jpeg|webp:LO-HI (quality 1-100) or h264:LO-HI (QP 0-51), "
                        "e.g. webp:30-90") from None


def through_codec(patch: np.ndarray, codec: str, q: int) -> np.ndarray:
    """``patch`` (uint8 RGB, even sides for h264) as the robot decodes it after ``codec`` at quality/QP ``q``."""
    if codec != "h264":
        from edgesr.codec import decode, encode
        return decode(encode(patch, codec, q))
    from fractions import Fraction

    from edgesr.video import _av

    av = _av()
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = patch.shape[1], patch.shape[0], "yuv420p", Fraction(1, 25)
    enc.options = {"preset": "veryfast", "tune": "zerolatency", "x264-params": f"qp={q}"}
    units = enc.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(patch), format="rgb24")) + enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    pics = [f for u in units for f in dec.decode(u)] + list(dec.decode(None))
    return pics[-1].to_ndarray(format="rgb24")


def make_patches(folders, scale: int, patch: int = 32, per_image: int = 16, seed: int = 0,
                 cache_dir: str | None = None, progress: bool = True, lr_codec: str | None = None,
                 teacher: str | None = None) -> tuple[np.ndarray, ...]:
    """(LR, HR) uint8 arrays of shape (N, patch, patch, 3) and (N, patch*s, patch*s, 3); with ``lr_codec`` each LR
    patch has been through that lossy codec (see ``parse_lr_codec``). With ``teacher`` (a .tflite model run by the
    edgesr runtime on each whole LR image) a third array: the teacher's output at the HR crop."""
    files = list_images(folders)
    codec = parse_lr_codec(lr_codec)
    cache_dir = cache_dir or os.environ.get("EDGESR_CACHE", str(Path.home() / ".cache" / "edgesr"))
    cache = _cache_path(files, scale, patch, per_image, seed, cache_dir, lr_codec, teacher)
    if cache.exists():
        with np.load(cache) as z:
            return (z["lr"], z["hr"]) + ((z["teacher"],) if teacher else ())
    rng = np.random.default_rng(seed)
    lrs, hrs, ts = [], [], []
    from tqdm import tqdm

    eng = None
    if teacher:
        from edgesr.engine import Engine

        eng = Engine(teacher, scale=scale, dtype="as-is")
        if codec:
            raise DataError("--lr-codec and a .tflite teacher together are not supported")
    small = []
    for f in tqdm(files, desc=f"patches x{scale}" + (" + teacher" if teacher else ""), unit="img",
                  disable=not progress):
        hr = mod_crop(read_rgb(f, error=DataError), scale)
        if min(hr.shape[:2]) < patch * scale:  # e.g. half of T91 at 48 px LR patches: skipped, and said so
            small.append(f"{f}: {hr.shape[1]}x{hr.shape[0]}")
            continue
        lr = degrade(hr, scale)
        t = eng.upscale(lr) if eng is not None else None
        ys = rng.integers(0, lr.shape[0] - patch + 1, per_image)
        xs = rng.integers(0, lr.shape[1] - patch + 1, per_image)
        for y, x in zip(ys, xs):
            p = lr[y:y + patch, x:x + patch]
            if codec:
                p = through_codec(p, codec[0], int(rng.integers(codec[1], codec[2] + 1)))
            lrs.append(p)
            hrs.append(hr[y * scale:(y + patch) * scale, x * scale:(x + patch) * scale])
            if t is not None:
                ts.append(t[y * scale:(y + patch) * scale, x * scale:(x + patch) * scale])
    if not lrs:
        raise DataError(f"{small[0]} is smaller than one {patch * scale}px HR crop (and so is every image)")
    if small and progress:
        print(f"skipped {len(small)} of {len(files)} images smaller than one {patch * scale}px HR crop")
    arrays = {"lr": np.stack(lrs), "hr": np.stack(hrs), **({"teacher": np.stack(ts)} if ts else {})}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # two runs may build the same cache at once
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    return tuple(arrays.values())


def dataset(*arrays: np.ndarray, batch: int, seed: int = 0):
    """Infinite shuffled tf.data pipeline of float [0,1] batches of aligned ``arrays`` (LR, HR[, teacher]) with
    the same random flip and 90-degree rotation applied to each."""
    import tensorflow as tf

    def augment(*xs):
        xs = [tf.image.convert_image_dtype(x, tf.float32) for x in xs]
        k = tf.random.uniform([], 0, 4, tf.int32, seed=seed)
        xs = [tf.image.rot90(x, k) for x in xs]
        flip = tf.random.uniform([], seed=seed) < 0.5
        return tf.cond(flip, lambda: tuple(x[:, ::-1] for x in xs), lambda: tuple(xs))

    ds = tf.data.Dataset.from_tensor_slices(arrays).shuffle(min(len(arrays[0]), 20000), seed=seed).repeat()
    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True).prefetch(4)


def load_pairs(folder, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR) for each image of an evaluation folder, under the protocol (mod-crop, MATLAB bicubic)."""
    out = []
    for f in list_images(folder):
        hr = mod_crop(read_rgb(f, error=DataError), scale)
        out.append((f.stem, degrade(hr, scale), hr))
    return out
