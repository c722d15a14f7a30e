"""What every output publishes: a JPEG of the frame, its capture time and the image_transport format string."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..codec import encode

# image_transport's compressed format: source encoding; codec "compressed" in-memory order (cv2 writes BGR)
FORMAT = "rgb8; jpeg compressed bgr8"
TYPE = "sensor_msgs/msg/CompressedImage"


@dataclass
class Compressed:
    jpeg: bytes
    sec: int
    nanosec: int
    stamp_ns: int
    frame_id: str
    seq: int


def compress(frame, frame_id: str, quality: int = 80) -> Compressed:
    """JPEG of ``frame.image`` (RGB), stamped with the device's capture time (``frame.timestamp``, seconds).
    Encoded once per frame and quality: ROS 2, Foxglove and MCAP outputs of one receiver share it."""
    ns = int(round(frame.timestamp * 1e9))
    jpeg = frame.encoded.get(quality)
    if jpeg is None:  # two output threads may both encode the first time; the result is the same
        jpeg = frame.encoded[quality] = encode(frame.image, "jpeg", quality)
    return Compressed(jpeg, ns // 1_000_000_000, ns % 1_000_000_000, ns, frame_id, frame.seq)


def quality_of(q: dict, url: str) -> int:
    from ..errors import ConfigError

    try:
        quality = int(q.get("quality", 80))
    except ValueError:
        raise ConfigError(f"{url}: quality must be an integer 1..100") from None
    if not 1 <= quality <= 100:
        raise ConfigError(f"{url}: quality must be 1..100, got {quality}")
    return quality


@functools.lru_cache(maxsize=None)
def typestore(what: str):
    """rosbags' ROS 2 (Jazzy) type store: CDR, message definitions and RIHS01 type hashes, no ROS needed."""
    from ..extras import need

    typesys = need("rosbags.typesys", what)
    return typesys.get_typestore(typesys.Stores.ROS2_JAZZY)


def cdr(store, c: Compressed) -> bytes:
    """sensor_msgs/msg/CompressedImage serialized as CDR (with its 4-byte encapsulation header)."""
    import numpy as np

    t = store.types
    msg = t[TYPE](header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=c.sec, nanosec=c.nanosec),
                                                   frame_id=c.frame_id),
                  format=FORMAT, data=np.frombuffer(c.jpeg, np.uint8))
    return bytes(store.serialize_cdr(msg, TYPE))
