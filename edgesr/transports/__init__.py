"""Sinks (device side) and packet readers (robot side), one small class each, chosen by URL scheme:

    udp://host:port[?ttl=N]            datagrams, unicast or multicast (224.0.0.0/4); ttl 0..255 (default 1)
    tcp://host:port                    server on the device; many clients; slow clients drop frames
    serial:///dev/ttyUSB0?baud=57600   pyserial (serial_for_url: loop://, socket:// work too); &rs=16: Reed-Solomon
                                       bytes per 255 inside each frame (both ends), for links that corrupt bytes
    http://host:port[/stream]          MJPEG: /stream, /snapshot.jpg and a page at /
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from ..errors import ConfigError

SCHEMES = ("udp", "tcp", "serial", "http")
QUERY = {"udp": {"ttl": (0, 255)}, "tcp": {}, "http": {}, "serial": {"baud": (50, 20_000_000), "rs": (0, 64)}}


@dataclass(frozen=True)
class Endpoint:
    """A parsed, validated transport URL."""
    url: str
    scheme: str
    host: str                     # host name/address, or the serial device (path or pyserial URL)
    port: int | None = None
    params: dict = field(default_factory=dict)  # validated integer query parameters (ttl, baud)
    path: str = ""

    @property
    def ttl(self) -> int:
        return self.params.get("ttl", 1)

    @property
    def baud(self) -> int:
        return self.params.get("baud", 57600)


def _params(url: str, scheme: str, query: str) -> dict:
    out = {}
    for k, v in parse_qs(query, keep_blank_values=True).items():
        if k not in QUERY[scheme]:
            known = ", ".join(QUERY[scheme]) or "none"
            raise ConfigError(f"{url}: unknown parameter {k!r} for {scheme}:// (known: {known})")
        lo, hi = QUERY[scheme][k]
        try:
            n = int(v[-1])
        except ValueError:
            raise ConfigError(f"{url}: {k} must be an integer, got {v[-1]!r}") from None
        if not lo <= n <= hi:
            raise ConfigError(f"{url}: {k} must be {lo}..{hi}, got {n}")
        out[k] = n
    return out


def parse_url(url) -> Endpoint:
    """The Endpoint of ``url`` (an Endpoint passes through), or ConfigError saying what is wrong."""
    if isinstance(url, Endpoint):
        return url
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{url!r}: expected a URL like udp://HOST:PORT")
    u = urlparse(url)
    scheme = u.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{url}: unsupported scheme {u.scheme!r} (udp, tcp, serial, http)")
    if scheme == "serial":
        dev, _, query = url[len("serial://"):].partition("?")
        if not dev:
            raise ConfigError(f"{url}: expected serial:///dev/ttyUSB0?baud=57600 or serial://loop://")
        return Endpoint(url, scheme, dev, None, _params(url, scheme, query))
    try:
        port = u.port
    except ValueError:
        raise ConfigError(f"{url}: port must be 0..65535") from None
    if not u.hostname or port is None:
        raise ConfigError(f"{url}: expected {scheme}://HOST:PORT")
    path = u.path.rstrip("/")
    if path and scheme != "http":
        raise ConfigError(f"{url}: {scheme}:// takes no path")
    if path not in ("", "/stream"):
        raise ConfigError(f"{url}: the MJPEG stream is at http://HOST:PORT/stream")
    return Endpoint(url, scheme, u.hostname, port, _params(url, scheme, u.query), path)


def open_sink(url, **opts):
    """A started-later Sink for ``url`` (a string or Endpoint); ``opts`` as in ``transports.base.Sink``."""
    e = parse_url(url)
    if e.scheme == "udp":
        from .udp import UDPSink
        return UDPSink(e, **opts)
    if e.scheme == "tcp":
        from .tcp import TCPSink
        return TCPSink(e, **opts)
    if e.scheme == "serial":
        from .serial import SerialSink
        return SerialSink(e, **opts)
    from .http_mjpeg import MJPEGSink
    return MJPEGSink(e, **{k: v for k, v in opts.items() if k in ("quality", "topology")})  # whole JPEGs


def open_reader(url):
    """Robot side: an object with ``read(timeout) -> list[bytes]`` (packets) and ``close()``."""
    e = parse_url(url)
    if e.scheme == "udp":
        from .udp import UDPReader
        return UDPReader(e)
    if e.scheme == "tcp":
        from .tcp import TCPReader
        return TCPReader(e)
    if e.scheme == "serial":
        from .serial import SerialReader
        return SerialReader(e)
    raise ConfigError(f"{e.url}: http:// streams are MJPEG; read them with Receiver (no packets)")
