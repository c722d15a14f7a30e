"""H.264 anchors for the link study: what a robot team would otherwise stream (GStreamer/ffmpeg, mediamtx).

libx264 through PyAV, veryfast/zerolatency, CBR-like (bitrate = vbv-maxrate, 1 s VBV buffer), a keyframe every
4 s, no scene-cut keyframes. Loss: each frame's bytes go in <= 1200-byte packets; a frame with a lost packet is
lost (not given to the decoder) and the last shown frame stays on screen; the frames after it are decoded as they
come (the decoder conceals from its references), as a plain RTP receiver would.
"""
from __future__ import annotations

import random
from fractions import Fraction

import numpy as np

MTU = 1200


def encode(frames: list[np.ndarray], fps: float, bitrate: float, tune: str = "zerolatency",
           preset: str = "veryfast") -> list[bytes]:
    """Encoded access units, one per input RGB frame, at ``bitrate`` bit/s (``tune``, ``preset``: x264's, for
    anchor_tuning.py; the study's anchor keeps the defaults)."""
    import av

    h, w = frames[0].shape[:2]
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = Fraction(1, 1000)
    ctx.framerate = Fraction(fps).limit_denominator(1000)
    ctx.bit_rate = int(bitrate)
    ctx.thread_count = 1  # deterministic (frame threads moved the anchor by up to 0.1 dB between runs)
    kbps = max(1, int(bitrate / 1000))
    keyint = max(1, int(round(4 * fps)))
    ctx.options = {"preset": preset, "tune": tune,
                   "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:vbv-maxrate={kbps}:"
                                  f"vbv-bufsize={kbps}:nal-hrd=none:rc-lookahead=0"}
    out = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
        vf.pts = int(round(i * 1000 / fps))
        out.append(b"".join(bytes(p) for p in ctx.encode(vf)))
    tail = b"".join(bytes(p) for p in ctx.encode(None))
    if tail:  # zerolatency emits every frame at once; anything left belongs to the last frame
        out[-1] += tail
    return out


def deliver(units: list[bytes], loss: float, seed: int = 0) -> list[np.ndarray | None]:
    """Decoded RGB frames as the robot shows them under ``loss`` (packet loss probability); None before the
    first decodable frame."""
    import av

    rnd = random.Random(seed)
    dec = av.CodecContext.create("h264", "r")
    shown, out = None, []
    for u in units:
        npk = max(1, -(-len(u) // MTU))
        lost = any(rnd.random() < loss for _ in range(npk))
        if not lost and u:
            try:
                for fr in dec.decode(av.Packet(u)):
                    shown = fr.to_ndarray(format="rgb24")
            except av.error.InvalidDataError:
                pass
        out.append(shown)
    return out


def kbps(units: list[bytes], fps: float) -> float:
    return sum(map(len, units)) * 8 * fps / len(units) / 1000
