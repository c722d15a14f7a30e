"""Sinks (device side) and packet readers (robot side), one small class each, chosen by URL scheme:

    udp://host:port[?ttl=N]        datagrams, unicast or multicast (224.0.0.0/4)
    tcp://host:port                server on the device; many clients; slow clients drop frames
    serial:///dev/ttyUSB0?baud=57600   pyserial (serial_for_url: loop://, socket:// work too)
    http://host:port/              MJPEG: /stream, /snapshot.jpg and a page at /
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from ..errors import ConfigError


def parse_url(url: str) -> tuple[str, str, int | None, dict]:
    """(scheme, host or device path, port, query) with a clear error for unsupported URLs."""
    u = urlparse(url)
    scheme = u.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(u.query).items()}
    if scheme in ("udp", "tcp", "http"):
        if not u.hostname or u.port is None:
            raise ConfigError(f"{url}: expected {scheme}://HOST:PORT")
        return scheme, u.hostname, u.port, query
    if scheme == "serial":
        dev = url[len("serial://"):].split("?")[0]
        if not dev:
            raise ConfigError(f"{url}: expected serial:///dev/ttyUSB0?baud=57600 or serial://loop://")
        return scheme, dev, None, query
    raise ConfigError(f"{url}: unsupported scheme {u.scheme!r} (udp, tcp, serial, http)")


def open_sink(url: str, **opts):
    scheme, host, port, query = parse_url(url)
    if scheme == "udp":
        from .udp import UDPSink
        return UDPSink(url, host, port, ttl=int(query.get("ttl", 1)), **opts)
    if scheme == "tcp":
        from .tcp import TCPSink
        return TCPSink(url, host, port, **opts)
    if scheme == "serial":
        from .serial import SerialSink
        return SerialSink(url, host, baud=int(query.get("baud", 57600)), **opts)
    from .http_mjpeg import MJPEGSink
    return MJPEGSink(url, host, port, **{k: v for k, v in opts.items() if k in ("quality", "topology")})


def open_reader(url: str):
    """Robot side: an object with ``read(timeout) -> list[bytes]`` (packets) and ``close()``."""
    scheme, host, port, query = parse_url(url)
    if scheme == "udp":
        from .udp import UDPReader
        return UDPReader(host, port)
    if scheme == "tcp":
        from .tcp import TCPReader
        return TCPReader(host, port)
    if scheme == "serial":
        from .serial import SerialReader
        return SerialReader(host, baud=int(query.get("baud", 57600)))
    raise ConfigError(f"{url}: http:// streams are MJPEG; read them with Receiver (no packets)")
