"""Upscaling whole inputs: one image, a folder of images, or a video file (same fps), written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .imageio import IMAGE_EXTS, atomic_path, is_image, read_rgb, write_rgb

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}


def kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if is_image(path):
        return "image"
    if path.suffix.lower() in VIDEO_FOURCC or path.suffix.lower() in {".webm", ".m4v", ".mpg", ".h264"}:
        return "video"
    raise InputError(f"{path}: unknown input type {path.suffix!r} (images: {', '.join(sorted(IMAGE_EXTS))}; "
                     f"videos: {', '.join(sorted(VIDEO_FOURCC))})")


MAX_OUTPUT_MP = 256.0  # megapixels an upscaled image may have (3 bytes each in memory); --max-output-mp


def check_output_size(h: int, w: int, scale: int, max_mp: float, what) -> None:
    """InputError naming the limit when the upscaled image would exceed ``max_mp`` megapixels."""
    mp = h * w * scale * scale / 1e6
    if mp > max_mp:
        raise InputError(f"{what}: {w}x{h} x{scale} would be {w * scale}x{h * scale} = {mp:.0f} MP, over the "
                         f"limit of {max_mp:g} MP (~{3 * max_mp:.0f} MB); raise --max-output-mp or use a smaller input")


def upscale_image(engine, src: Path, dst: Path, max_mp: float = MAX_OUTPUT_MP) -> None:
    img = read_rgb(src)
    check_output_size(img.shape[0], img.shape[1], engine.scale, max_mp, src)
    write_rgb(dst, engine.upscale(img))


def upscale_folder(engine, src: Path, dst: Path, progress, max_mp: float = MAX_OUTPUT_MP) -> tuple[int, list[str]]:
    """Upscale every image of ``src`` into ``dst``; a bad image is reported and skipped, not fatal.
    Returns (images written, one line per image that failed)."""
    files = sorted(p for p in src.iterdir() if is_image(p))
    if not files:
        raise InputError(f"{src}: no images in folder")
    dst.mkdir(parents=True, exist_ok=True)
    failed = []
    with progress(files, label=f"upscaling {len(files)} images") as bar:
        for f in bar:
            try:
                upscale_image(engine, f, dst / f"{f.stem}.png", max_mp)
            except InputError as e:
                failed.append(str(e))
    return len(files) - len(failed), failed


def upscale_video(engine, src: Path, dst: Path, progress, max_mp: float = MAX_OUTPUT_MP) -> int:
    import cv2

    fourcc = VIDEO_FOURCC.get(dst.suffix.lower())
    if fourcc is None:
        raise InputError(f"{dst}: unsupported output video type {dst.suffix!r} ({', '.join(sorted(VIDEO_FOURCC))})")
    cap = cv2.VideoCapture(str(src))
    ok, frame = cap.read()
    if not ok:
        raise InputError(f"{src}: cannot decode video (unsupported codec or not a video)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    h, w = frame.shape[:2]
    s = engine.scale
    check_output_size(h, w, s, max_mp, src)
    tmp, final = atomic_path(dst)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*fourcc), fps, (w * s, h * s))
    if not writer.isOpened():
        tmp.unlink(missing_ok=True)
        raise InputError(f"{dst}: cannot open a {fourcc} video writer for it")
    out = np.empty((h * s, w * s, 3), np.uint8)
    n = 0
    try:
        with progress(length=total, label="upscaling video") as bar:
            while ok:
                engine.upscale(np.ascontiguousarray(frame[:, :, ::-1]), out=out)
                writer.write(np.ascontiguousarray(out[:, :, ::-1]))
                n += 1
                bar.update(1)
                ok, frame = cap.read()
        writer.release()
        os.replace(tmp, final)
    finally:
        writer.release()
        cap.release()
        tmp.unlink(missing_ok=True)
    return n
