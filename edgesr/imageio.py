"""Reading and writing images as RGB uint8 with clear errors and atomic writes (no half-written files);
the shipped sample photos."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
SAMPLES = Path(__file__).parent / "samples"
SAMPLE = SAMPLES / "nature_640x480.png"


def is_image(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def sample_frame(size: tuple[int, int]) -> np.ndarray:
    """The shipped sample photo resized (area) to ``size`` = (w, h): real texture, not noise."""
    import cv2

    return np.ascontiguousarray(cv2.resize(read_rgb(SAMPLE), size, interpolation=cv2.INTER_AREA))


def truncated(data: bytes) -> bool:
    """A JPEG without its end-of-image marker or a PNG without its IEND chunk: the decoders would fill the
    missing part with grey and say nothing (JPEG) or print a libpng line (PNG)."""
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-64:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


MAX_IMAGE_PIXELS = 7680 * 4320  # 8K: what read_rgb decodes at most (the header says it before decoding)


def read_rgb(path, error=InputError, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """HxWx3 RGB uint8; greyscale becomes 3 channels, alpha is dropped. Raises ``error`` naming the file when it
    is missing, truncated, not an image, or larger than ``max_pixels`` (read from its header, not decoded)."""
    import cv2

    from .codec import image_size
    from .interpreter import quiet_native_stderr

    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: no such file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise error(f"{p}: cannot read ({e.strerror})") from None
    if truncated(data):
        raise error(f"{p}: truncated image (the file ends before the image does)")
    size = image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise error(f"{p}: {size[0]}x{size[1]} is over the {max_pixels / 1e6:.0f} MP this reads (8K); "
                    "downscale or crop it first")
    with quiet_native_stderr(force=True):  # libpng/libjpeg warnings: our one line says it instead
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise error(f"{p}: not a readable image")
    if img.dtype != np.uint8:
        top = 2 ** (8 * img.dtype.itemsize) - 1  # e.g. 65535 for 16-bit PNGs
        img = (img / (top / 255.0)).round().astype(np.uint8) if img.dtype.kind == "u" \
            else np.clip(img * 255.0, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, 2::-1])


def atomic_path(path) -> tuple[Path, Path]:
    """(temporary path beside ``path`` with the same suffix, final path). Rename the first onto the second."""
    final = Path(path)
    if not final.parent.exists():
        raise InputError(f"{final.parent}: output folder does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp), final


def write_atomic(path, write) -> None:
    """``write(tmp_path)`` to a temporary file beside ``path``, then rename it onto ``path``."""
    try:
        tmp, final = atomic_path(path)
    except PermissionError:
        raise InputError(f"{path}: output path is not writable") from None
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_rgb(path, img: np.ndarray) -> None:
    """Write an RGB uint8 image atomically; the format follows the suffix."""
    import cv2

    if not cv2.haveImageWriter(str(path)):
        raise InputError(f"{path}: cannot encode an image with suffix {Path(path).suffix!r} (use .png or .jpg)")

    def write(tmp):
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(img[:, :, ::-1])):
            raise InputError(f"{path}: cannot encode an image with suffix {Path(path).suffix!r}")
    write_atomic(path, write)


def write_text_atomic(path, text: str) -> None:
    """Write a small text file (a latency table, a report, a model card) atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text))
