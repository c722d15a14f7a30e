"""Image <-> bytes: whole-frame JPEG/WebP/PNG and independently decodable tiles for lossy links."""
from __future__ import annotations

import cv2
import numpy as np

from .errors import ConfigError, InputError, ProtocolError

CODECS = {"jpeg": 1, "webp": 2, "png": 3}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
_EXT = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}


def encode(image_rgb: np.ndarray, codec: str = "jpeg", quality: int = 80) -> bytes:
    """RGB uint8 -> compressed bytes."""
    if codec not in CODECS:
        raise ConfigError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
    params = {"jpeg": [cv2.IMWRITE_JPEG_QUALITY, int(quality)],
              "webp": [cv2.IMWRITE_WEBP_QUALITY, int(max(1, quality))], "png": [cv2.IMWRITE_PNG_COMPRESSION, 3]}
    ok, buf = cv2.imencode(_EXT[codec], np.ascontiguousarray(image_rgb[:, :, ::-1]), params[codec])
    if not ok:
        raise InputError(f"{codec} encoding failed for an image of shape {image_rgb.shape}")
    return buf.tobytes()


def image_size(data: bytes) -> tuple[int, int] | None:
    """(w, h) a JPEG/PNG/WebP/BMP header declares, read without decoding (a hostile header must not make the
    decoder allocate); None when the header is not one of those or is cut short."""
    b = bytes(data[:65536])
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(b):
            if b[i] != 0xFF:
                return None
            marker = b[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            length = int.from_bytes(b[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
            i += 2 + length
        return None
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP" and len(b) >= 30:
        kind = b[12:16]
        if kind == b"VP8 ":
            return int.from_bytes(b[26:28], "little") & 0x3FFF, int.from_bytes(b[28:30], "little") & 0x3FFF
        if kind == b"VP8L":
            v = int.from_bytes(b[21:25], "little")
            return (v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
    if b[:2] == b"BM" and len(b) >= 26:  # BITMAPINFOHEADER; a negative height is a top-down bitmap
        return abs(int.from_bytes(b[18:22], "little", signed=True)), abs(int.from_bytes(b[22:26], "little",
                                                                                          signed=True))
    return None


def decode(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Compressed bytes -> RGB uint8; ProtocolError if undecodable or not of the expected (h, w). With ``shape``
    the header's size is checked before decoding, so a payload cannot make the decoder allocate more."""
    if shape is not None:
        declared = image_size(data)
        if declared != (shape[1], shape[0]):
            raise ProtocolError(f"tile header says {declared}, packet says {shape[1]}x{shape[0]}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise ProtocolError("tile payload does not decode as an image")
    if shape is not None and img.shape[:2] != tuple(shape):
        raise ProtocolError(f"tile decodes to {img.shape[1]}x{img.shape[0]}, header says {shape[1]}x{shape[0]}")
    return img[:, :, ::-1]


def tile_grid(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of tiles covering the frame; JPEG-friendly multiples of 16 except at the edges."""
    tile = max(16, tile - tile % 16)
    return [(x, y, min(tile, w - x), min(tile, h - y)) for y in range(0, h, tile) for x in range(0, w, tile)]
