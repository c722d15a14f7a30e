"""A ROS 2 MCAP recording (schema encoding ros2msg, message encoding cdr): `ros2 bag play` and Foxglove open it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..extras import need
from .base import Output, parse
from .image import TYPE, cdr, compress, quality_of, typestore


class MCAPOutput(Output):
    def __init__(self, url: str):
        super().__init__(url)
        _, netloc, path, q = parse(url)
        self.path = Path(netloc + path)
        if self.path.suffix != ".mcap":
            raise ConfigError(f"{url}: expected mcap:///path/file.mcap")
        if not self.path.parent.is_dir():
            raise ConfigError(f"{url}: folder {self.path.parent} does not exist")
        self.topic = q.get("topic", "/edgesr/image_sr/compressed")
        self.frame_id, self.quality = q.get("frame_id", "camera"), quality_of(q, url)
        self.writer: Any = None
        self.file: Any = None

    def open(self) -> None:
        writer_mod = need("mcap.writer", "--record")
        self.store = typestore("--record")
        msgdef = self.store.generate_msgdef(TYPE, ros_version=2)[0]
        try:
            self.file = open(self.path, "wb")
        except OSError as e:
            raise ConfigError(f"{self.path}: cannot write ({e.strerror})") from None
        self.writer = writer_mod.Writer(self.file)
        self.writer.start(profile="ros2", library="edgesr")
        schema = self.writer.register_schema(name=TYPE, encoding="ros2msg", data=msgdef.encode())
        self.channel = self.writer.register_channel(topic=self.topic, message_encoding="cdr", schema_id=schema)

    def publish(self, frame) -> None:
        c = compress(frame, self.frame_id, self.quality)
        self.writer.add_message(self.channel, log_time=c.stamp_ns, data=cdr(self.store, c),
                                publish_time=c.stamp_ns, sequence=c.seq & 0xFFFFFFFF)

    def shutdown(self) -> None:
        if self.writer is not None:
            self.writer.finish()
            self.file.close()
            self.writer = None
