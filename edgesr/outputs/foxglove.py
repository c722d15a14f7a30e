"""A Foxglove WebSocket server (foxglove-sdk) with one ``foxglove.CompressedImage`` channel. The per-client
backlog is a few messages, so a robot on Wi-Fi never queues seconds of video."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..extras import need
from .base import Output, parse
from .image import compress, quality_of

BACKLOG = 4  # messages a slow client may have queued before the server drops for it


class FoxgloveOutput(Output):
    def __init__(self, url: str):
        super().__init__(url)
        _, netloc, path, q = parse(url)
        host, _, port = netloc.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{url}: expected foxglove://HOST:PORT[/topic]")
        self.host, self.port = host, int(port)
        self.topic = path.rstrip("/") or "/edgesr/image_sr"
        self.frame_id, self.quality = q.get("frame_id", "camera"), quality_of(q, url)
        self.server: Any = None

    def open(self) -> None:
        foxglove = need("foxglove", "foxglove://")
        channels = need("foxglove.channels", "foxglove://")
        self.messages = need("foxglove.messages", "foxglove://")
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name="edgesr", host=self.host, port=self.port, context=self.context,
                                                message_backlog_size=BACKLOG)
        except RuntimeError as e:
            raise ConfigError(f"{self.url}: cannot listen on {self.host}:{self.port} ({e})") from None
        self.port = self.server.port
        self.channel = channels.CompressedImageChannel(self.topic, context=self.context)

    def publish(self, frame) -> None:
        c = compress(frame, self.frame_id, self.quality)
        m = self.messages
        self.channel.log(m.CompressedImage(timestamp=m.Timestamp(c.sec, c.nanosec), frame_id=c.frame_id,
                                           data=c.jpeg, format="jpeg"), log_time=c.stamp_ns)

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
