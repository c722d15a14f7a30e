"""Frame sources: V4L2/USB cameras (OpenCV), picamera2 (CSI, when importable), video files, image folders, and a
synthetic pan/zoom over a real photo. ``read()`` returns RGB uint8 or raises SourceError (reopen and retry) or
EndOfSource (a finite input ran out)."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import EdgeSRError
from .imageio import SAMPLE, is_image

log = logging.getLogger("edgesr.sources")


class SourceError(EdgeSRError):
    """The source failed (camera unplugged, file gone): the pipeline reopens it with backoff."""


class EndOfSource(Exception):
    """A finite source (file, folder with loop off) has no more frames: the normal end, not an error."""


class Pacer:
    """Sleeps so that successive calls are ``1/fps`` apart (no catch-up burst after a stall); fps 0: no wait."""

    def __init__(self, fps: float | None):
        self.period = 1.0 / fps if fps else 0.0
        self.next_t = time.monotonic()

    def wait(self) -> None:
        if not self.period:
            return
        delay = self.next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_t = max(self.next_t + self.period, time.monotonic() - self.period)


def fit_frame(img: np.ndarray, size: tuple[int, int], how: str = "letterbox") -> np.ndarray:
    """``img`` at ``size`` (w, h): same aspect, a resize; else letterboxed (black bars), cropped to the centre, or
    stretched (distorts)."""
    h, w = img.shape[:2]
    W, H = size
    if (w, h) == (W, H):
        return img
    if how == "stretch" or w * H == h * W:
        return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    s = min(W / w, H / h) if how == "letterbox" else max(W / w, H / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    scaled = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    if how == "crop":
        y, x = (nh - H) // 2, (nw - W) // 2
        return np.ascontiguousarray(scaled[y:y + H, x:x + W])
    out = np.zeros((H, W, 3), np.uint8)
    y, x = (H - nh) // 2, (W - nw) // 2
    out[y:y + nh, x:x + nw] = scaled
    return out


class Source:
    name = "source"
    rate: float | None = None  # frames per second it delivers (None: as they come)

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SyntheticSource(Source):
    """A slow pan and zoom over a real photo (the shipped sample by default): real texture, deterministic."""

    def __init__(self, size=(320, 240), fps: float = 30.0, image: str | None = None):
        from .imageio import read_rgb

        self.name = "synthetic"
        self.photo = read_rgb(image or SAMPLE)
        self.size, self.pacer, self.n, self.rate = tuple(size), Pacer(fps), 0, fps

    def read(self) -> np.ndarray:
        self.pacer.wait()
        h, w = self.photo.shape[:2]
        t = self.n / 30.0
        zoom = 0.75 + 0.2 * math.sin(t * 0.5)
        ch, cw = int(h * zoom), int(w * zoom)
        y = int((h - ch) * (0.5 + 0.5 * math.sin(t * 0.31)))
        x = int((w - cw) * (0.5 + 0.5 * math.cos(t * 0.23)))
        self.n += 1
        return cv2.resize(self.photo[y:y + ch, x:x + cw], self.size, interpolation=cv2.INTER_AREA)


class _CaptureSource(Source):
    """An OpenCV VideoCapture opened on first read and released on close (cameras and video files)."""

    cap: Any = None

    def _grab(self, fail: str | None = None):
        """The next frame as RGB; at a failed read None, or with ``fail``: close and raise SourceError(fail)."""
        if self.cap is None:
            self.open()
        ok, frame = self.cap.read()
        if ok:
            return np.ascontiguousarray(frame[:, :, ::-1])
        if fail:
            self.close()
            raise SourceError(fail)
        return None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class CameraSource(_CaptureSource):
    """A V4L2/USB camera through OpenCV (/dev/videoN or an index)."""

    def __init__(self, device, size=None, fps: float | None = None, fourcc: str | None = None):
        self.device, self.size, self.fps, self.fourcc = device, size, fps, fourcc
        self.name = str(device)

    def open(self) -> None:
        dev = int(self.device) if str(self.device).isdigit() else str(self.device)
        cap = cv2.VideoCapture(dev, cv2.CAP_V4L2) if isinstance(dev, int) or dev.startswith("/dev/") \
            else cv2.VideoCapture(dev)
        if not cap.isOpened():
            raise SourceError(f"{self.device}: cannot open camera (unplugged, busy, or no permission: is the "
                              "user in the 'video' group?)")
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
        if self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self.cap = cap

    def read(self) -> np.ndarray:
        return self._grab(f"{self.device}: camera stopped delivering frames")


class PiCamera2Source(Source):
    """CSI camera through picamera2 (apt install python3-picamera2 on Raspberry Pi OS)."""

    def __init__(self, size=(640, 480), fps: float | None = None):
        self.size, self.fps, self.name = tuple(size or (640, 480)), fps, "picamera2"
        self.cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("picamera2 is not installed (apt install python3-picamera2; create the venv with "
                              "--system-site-packages)") from None
        try:
            cam = Picamera2()
            cfg = cam.create_video_configuration(main={"size": self.size, "format": "RGB888"})
            cam.configure(cfg)
            cam.start()
        except Exception as e:
            raise SourceError(f"picamera2: cannot start the camera ({e})") from None
        self.cam = cam

    def read(self) -> np.ndarray:
        if self.cam is None:
            self.open()
        try:
            # picamera2's "RGB888" is BGR in memory order
            return np.ascontiguousarray(self.cam.capture_array("main")[:, :, 2::-1])
        except Exception as e:
            self.close()
            raise SourceError(f"picamera2: capture failed ({e})") from None

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            except Exception:
                pass
            self.cam = None


class VideoFileSource(_CaptureSource):
    """A video file at its own frame rate (or ``fps``), looped when ``loop``."""

    def __init__(self, path, loop: bool = True, fps: float | None = None):
        self.path, self.loop, self.name = Path(path), loop, str(path)
        self.fps = fps
        self.pacer = Pacer(None)

    def open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file")
        self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            raise SourceError(f"{self.path}: cannot decode video")
        self.rate = self.fps or self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.pacer = Pacer(self.rate)

    def read(self) -> np.ndarray:
        if self.cap is None:
            self.open()
        self.pacer.wait()
        frame = self._grab()
        if frame is None:
            if not self.path.exists():
                self.close()
                raise SourceError(f"{self.path}: file disappeared")
            if not self.loop:
                raise EndOfSource(f"{self.path}: end of video")
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frame = self._grab(f"{self.path}: cannot read frames")
        return frame


class ImageFolderSource(Source):
    """The images of a folder in name order (or one image file), repeated when ``loop``. An unreadable image
    is skipped with one warning per file (not one per pass)."""

    def __init__(self, path, loop: bool = True, fps: float = 10.0):
        self.path, self.loop, self.name, self.i = Path(path), loop, str(path), 0
        self.pacer, self.rate = Pacer(fps), fps
        self.bad: set[Path] = set()

    def _files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.glob("*") if is_image(p))
        return [self.path] if self.path.is_file() else []

    def read(self) -> np.ndarray:
        from .errors import InputError
        from .imageio import read_rgb

        files = self._files()
        if not files:
            raise SourceError(f"{self.path}: no images (missing, deleted or empty)")
        self.pacer.wait()
        for _ in range(len(files)):
            if self.i >= len(files):
                if not self.loop:
                    raise EndOfSource(f"{self.path}: all images sent")
                self.i = 0
            f = files[self.i]
            self.i += 1
            try:
                img = read_rgb(f)
                self.bad.discard(f)
                return img
            except InputError as e:
                if f not in self.bad:
                    log.warning("%s (skipped)", e)
                    self.bad.add(f)
        raise SourceError(f"{self.path}: no readable image ({len(self.bad)} unreadable)")


def open_source(spec: str, size=None, fps: float | None = None, loop: bool = True) -> Source:
    """'synthetic', 'picamera2', '/dev/videoN' or an index, a video file, or a folder of images."""
    if spec == "synthetic":
        return SyntheticSource(size or (320, 240), fps if fps is not None else 30.0)
    if spec == "picamera2":
        return PiCamera2Source(size, fps)
    if spec.startswith("/dev/video") or spec.isdigit():
        return CameraSource(spec, size, fps)
    p = Path(spec)
    if p.is_dir() or is_image(p):
        return ImageFolderSource(p, loop, fps or 10.0)
    return VideoFileSource(p, loop, fps)
