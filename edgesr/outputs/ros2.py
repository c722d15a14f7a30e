"""sensor_msgs/CompressedImage on a ROS 2 topic over rmw_zenoh's wire format, with no ROS installation.

Follows ros2/rmw_zenoh docs/design.md (Jazzy and later; Humble differs only where noted):
  data key   <domain>/<topic>/sensor_msgs::msg::dds_::CompressedImage_/<type hash>   (topic = <base>/compressed,
             no leading slash; type hash RIHS01_... from rosbags, Humble: TypeHashNotSupported)
  payload    CDR with its 4-byte encapsulation header (rosbags)
  attachment 33 bytes: int64 sequence, int64 source timestamp (ns since the epoch), uint8 GID length (16), GID,
             little-endian
  liveliness @ros2_lv/<domain>/<zid>/<node id>/<node id>/NN/%/<ns>/<node> and
             @ros2_lv/<domain>/<zid>/<node id>/<entity id>/MP/%/<ns>/<node>/<mangled topic>/<type>/<hash>/<qos>,
             declared at start and undeclared at shutdown ('/' mangled to '%'; empty namespace and enclave '%')
The session is a zenoh client of a router (`ros2 run rmw_zenoh_cpp rmw_zenohd` or `zenohd`).
"""
from __future__ import annotations

import functools
import json
import os
import struct
import time
from typing import Any

from ..errors import ConfigError
from ..extras import need
from .base import Output, parse
from .image import TYPE, cdr, compress, quality_of, typestore

DDS_TYPE = "sensor_msgs::msg::dds_::CompressedImage_"
DISTROS = ("humble", "jazzy", "kilted", "rolling")
QOS = "::,10:,:,:,,"  # rmw_zenoh's compact QoS: defaults (reliable, volatile), keep last 10
ATTACHMENT = struct.Struct("<qqB16s")
NODE_NAME = "edgesr_receiver"


def mangle(name: str) -> str:
    return name.replace("/", "%") or "%"


@functools.lru_cache(maxsize=None)
def type_hash(distro: str) -> str:
    if distro == "humble":
        return "TypeHashNotSupported"
    return typestore("ros2://").hash_rihs01(TYPE)


class ROS2Output(Output):
    def __init__(self, url: str):
        super().__init__(url)
        _, netloc, path, q = parse(url)
        unknown = sorted(set(q) - {"router", "domain", "distro", "frame_id", "quality", "namespace"})
        if unknown:
            raise ConfigError(f"{url}: unknown parameter {unknown[0]!r} (router, domain, distro, frame_id, "
                              "quality, namespace)")
        base = "/" + (netloc + path).strip("/")
        if base == "/" or "//" in base:
            raise ConfigError(f"{url}: expected ros2:///TOPIC, e.g. ros2:///robot/camera/image_sr")
        self.topic = base + "/compressed"  # image_transport's compressed transport
        self.router = q.get("router", "tcp/127.0.0.1:7447")
        try:
            self.domain = int(q.get("domain", os.environ.get("ROS_DOMAIN_ID", "0")))
        except ValueError:
            raise ConfigError(f"{url}: domain must be an integer 0..232") from None
        if not 0 <= self.domain <= 232:
            raise ConfigError(f"{url}: domain must be 0..232, got {self.domain}")
        self.distro = q.get("distro", "jazzy")
        if self.distro not in DISTROS:
            raise ConfigError(f"{url}: distro must be one of {', '.join(DISTROS)}")
        self.frame_id, self.quality = q.get("frame_id", "camera"), quality_of(q, url)
        self.namespace = q.get("namespace", "")
        self.session: Any = None
        self.tokens: Any = None
        self.publisher: Any = None
        self.seq = 0

    def key(self) -> str:
        return f"{self.domain}/{self.topic.lstrip('/')}/{DDS_TYPE}/{type_hash(self.distro)}"

    def liveliness_keys(self, zid: str) -> list[str]:
        ns = mangle(self.namespace)
        node = f"@ros2_lv/{self.domain}/{zid}/0/0/NN/%/{ns}/{NODE_NAME}"
        pub = (f"@ros2_lv/{self.domain}/{zid}/0/1/MP/%/{ns}/{NODE_NAME}/{mangle(self.topic)}/{DDS_TYPE}/"
               f"{type_hash(self.distro)}/{QOS}")
        return [node, pub]

    def open(self) -> None:
        zenoh = need("zenoh", "ros2://")
        self.store = typestore("ros2://")
        cfg = zenoh.Config()
        cfg.insert_json5("mode", '"client"')
        cfg.insert_json5("connect/endpoints", json.dumps([self.router]))
        cfg.insert_json5("scouting/multicast/enabled", "false")
        try:
            self.session = zenoh.open(cfg)
        except zenoh.ZError as e:
            raise ConfigError(f"{self.url}: cannot reach the zenoh router at {self.router} ({e}); start one with "
                              "`ros2 run rmw_zenoh_cpp rmw_zenohd` or `zenohd`") from None
        zid = str(self.session.zid())
        self.gid = bytes.fromhex(zid.rjust(32, "0"))[:16]
        self.tokens = [self.session.liveliness().declare_token(k) for k in self.liveliness_keys(zid)]
        self.publisher = self.session.declare_publisher(self.key())

    def publish(self, frame) -> None:
        c = compress(frame, self.frame_id, self.quality)
        self.seq += 1
        attachment = ATTACHMENT.pack(self.seq, time.time_ns(), 16, self.gid)
        self.publisher.put(cdr(self.store, c), attachment=attachment)

    def shutdown(self) -> None:
        if self.session is None:
            return
        for t in self.tokens or []:
            t.undeclare()
        if self.publisher is not None:
            self.publisher.undeclare()
        self.session.close()
        self.session = None
