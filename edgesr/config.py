"""`edgesr serve` configuration: TOML (plus command-line overrides) -> dataclasses, validated and resolved at load.

``load`` returns a config that needs no further interpretation: each sink's URL parsed (``endpoint``), its HMAC
key read (``key``), its topology decided (``resolved_topology``), the model's scale taken from its card, and
paths (``key_file``, ``latency_table``) relative to the config file. Errors are one line naming the key.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, EdgeSRError
from .interpreter import BACKENDS
from .modelcard import SCALES
from .schema import from_dict

FITS = ("letterbox", "crop", "stretch")  # source.fit (edgesr.sources.fit_frame)

HEALTH_PORT = 9480  # 9100 is node_exporter's
SOURCE_KEYWORDS = ("synthetic", "picamera2")  # source.url values that are not paths


@dataclass
class SourceConfig:
    url: str = "synthetic"          # synthetic | picamera2 | /dev/videoN | video file | image folder
    width: int = 0                  # 0: the source's own size (a file's; a camera's default; synthetic 320x240)
    height: int = 0
    fps: float = 0.0                # 0: the source's own rate (a video file's; synthetic 30; a folder 10)
    fit: str = "letterbox"          # width/height of another aspect than the source: letterbox | crop | stretch
    loop: bool = True


@dataclass
class ModelConfig:
    name: str = ""                  # shipped name or .tflite path; "" = default real-time model of `scale`
    scale: int = 4
    backend: str = "auto"           # auto | cpu | edgetpu
    threads: int = 0                # 0 = all cores
    # latency-aware ladder (docs/ladder.md): models best first, e.g. [..., "bicubic"]; [] = off
    ladder: list = field(default_factory=list)
    target_fps: float = 0.0         # ladder: frame rate to hold; 0 = source.fps
    latency_table: str = ""         # ladder: `edgesr calibrate` output; "" = <config>.latency.json beside it
    # adaptive tiles (docs/adaptive-tiles.md): SR only tiles whose mean |gradient| exceeds this; 0 = off
    texture_threshold: float = 0.0
    texture_tile: int = 64          # adaptive tiles: LR tile size for dynamic-shape models
    dtype: str = "auto"             # auto: the faster exact twin on this CPU (edgesr.twins) | int8 | float32


@dataclass
class SinkConfig:
    url: str = ""
    topology: str = "auto"          # source | receiver | measured | auto (docs/link-studies.md)
    codec: str = "jpeg"             # tiles: jpeg | webp | png; h264: temporal coding (`video` extra)
    quality: int = 80
    tile: int = 64
    bitrate: float = 0              # bits/s; 0 = unlimited (serial sinks default to 80% of baud)
    fps: float = 10.0               # target frame rate for rate control
    mtu: int = 0                    # 0 = transport default (UDP 1200, serial 256)
    key_file: str = ""              # shared HMAC key (file contents); packets are signed when set
    stream: int = 0
    replenish: float = 0.0          # > 0: send only tiles that changed by more than this (levels) + `refresh`
    refresh: int = 2                # stale tiles re-sent per frame when replenishing
    fec: float = 0.0                # parity packets per frame as a share of its data packets (0 = off; `fec` extra)
    feedback: bool = True           # obey robots' refresh requests (an IDR after a loss; udp, serial)
    # resolved at load, not settable
    endpoint: Any = field(default=None, repr=False, metadata={"resolved": True})  # transports.Endpoint
    key: bytes | None = field(default=None, repr=False, metadata={"resolved": True})
    resolved_topology: str = field(default="", metadata={"resolved": True})


@dataclass
class HealthConfig:
    listen: str = f"127.0.0.1:{HEALTH_PORT}"  # /healthz /metrics /state; "" disables


@dataclass
class ServeConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sinks: list[SinkConfig] = field(default_factory=list)
    health: HealthConfig = field(default_factory=HealthConfig)
    status_every: float = 5.0
    device_wait: float = 10.0       # seconds a /dev device may take to appear at start-up before exit code 2


@dataclass
class ReceiverConfig:
    """The robot side (`edgesr receive --config robot.toml`, table [receiver])."""
    url: str = ""
    publish: list[str] = field(default_factory=list)   # ros2:///..., foxglove://HOST:PORT (docs/robots.md)
    record: str = ""                                    # an .mcap file
    key_file: str = ""
    model: str = ""
    upscale: bool = True
    fec_wait: float = 5.0  # seconds an H.264 unit with a lost packet may wait for parity (0: never wait)
    feedback: bool = True  # ask the device for an IDR after a unit lost for good (udp, serial: the back channel)


def load_receiver(path) -> ReceiverConfig:
    """The [receiver] table of ``path``, paths relative to the file; other tables are ignored."""
    data = read_toml(path)
    rc = from_dict(ReceiverConfig, data.get("receiver", {}), f"{path}: receiver", ConfigError)
    if not 0 <= rc.fec_wait <= 60:
        raise ConfigError(f"{path}: receiver.fec_wait must be 0..60 seconds, got {rc.fec_wait:g}")
    base = Path(path).parent
    if rc.key_file and not Path(rc.key_file).is_absolute():
        rc.key_file = str(base / rc.key_file)
    if rc.record and not Path(rc.record).is_absolute():
        rc.record = str(base / rc.record)
    return rc


def resolve_topology(sink: SinkConfig) -> str:
    """'auto': links with a bit budget (serial radios, `bitrate` set) get 'measured' -- the camera frame as it is
    or at 1/scale for SR at the robot, whichever measures better now (edgesr.modechoice; the video link study
    showed no fixed rule holds); HTTP viewers (browsers) and unlimited links get upscaled frames."""
    if sink.topology != "auto":
        return sink.topology
    scheme = sink.url.split(":", 1)[0].lower()
    if scheme == "http":
        return "source"
    return "measured" if sink.bitrate > 0 or scheme == "serial" else "source"


def read_key(path, base: Path | None = None) -> bytes | None:
    """The HMAC key in file ``path`` (relative to ``base``), or None for ""."""
    if not path:
        return None
    p = Path(base or ".") / path if not Path(path).is_absolute() else Path(path)
    try:
        key = p.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the key file ({e.strerror})") from None
    if len(key) < 8:
        raise ConfigError(f"{p}: key too short (use at least 16 random bytes)")
    return key


def _check_source(s: SourceConfig, where: str) -> None:
    if (s.width, s.height) != (0, 0) and not (16 <= s.width <= 4096 and 16 <= s.height <= 4096):
        raise ConfigError(f"{where}: source.width/height must be 16..4096 (or both 0: the source's own "
                          f"size), got {s.width}x{s.height}")
    if not 0 <= s.fps <= 240:
        raise ConfigError(f"{where}: source.fps must be in (0, 240] (or 0: the source's own rate), "
                          f"got {s.fps}")
    if s.fit not in FITS:
        raise ConfigError(f"{where}: source.fit must be {', '.join(FITS)}, got {s.fit!r}")


def _check_model(m: ModelConfig, where: str) -> None:
    if m.backend not in BACKENDS:
        raise ConfigError(f"{where}: model.backend must be auto, cpu or edgetpu, got {m.backend!r}")
    if m.scale not in SCALES:
        raise ConfigError(f"{where}: model.scale must be 2, 3 or 4, got {m.scale}")
    if m.threads < 0:
        raise ConfigError(f"{where}: model.threads must be >= 0")
    if m.ladder:
        if m.name:
            raise ConfigError(f"{where}: set model.name or model.ladder, not both")
        if len(m.ladder) < 2 or not all(isinstance(n, str) and n for n in m.ladder):
            raise ConfigError(f"{where}: model.ladder must list at least two model names, best first")
    if m.target_fps < 0 or m.target_fps > 240:
        raise ConfigError(f"{where}: model.target_fps must be 0..240, got {m.target_fps}")
    if not 0 <= m.texture_threshold <= 255:
        raise ConfigError(f"{where}: model.texture_threshold must be 0..255 (mean |gradient| in levels)")
    if not 8 <= m.texture_tile <= 1024:
        raise ConfigError(f"{where}: model.texture_tile must be 8..1024, got {m.texture_tile}")
    if m.dtype not in ("auto", "int8", "float32"):
        raise ConfigError(f"{where}: model.dtype must be auto, int8 or float32, got {m.dtype!r}")


def _derive_model_scale(m: ModelConfig, where: str, explicit_scale: bool) -> None:
    """model.scale from the model's card (a ladder's cards must agree with it); an explicit scale must match."""
    from .modelcard import load_card, resolve_model
    from .upscaler import BICUBIC

    for name in m.ladder or [m.name]:
        if not name or name == BICUBIC:
            continue
        try:
            path = resolve_model(name, m.scale)
        except EdgeSRError:
            continue  # not on this machine yet (e.g. compiled on the board): `serve` says so when it starts
        try:
            card = load_card(path)
        except EdgeSRError as e:
            raise ConfigError(f"{where}: model: {e}") from None
        if card is None:
            continue
        if card.scale != m.scale and (explicit_scale or m.ladder):
            raise ConfigError(f"{where}: model {name} is x{card.scale}, model.scale is {m.scale}")
        m.scale = card.scale


def _needs(where: str, module: str, what: str) -> None:
    from .extras import need

    try:
        need(module, what)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _derive_sink(k: SinkConfig, w: str, base: Path | None) -> None:
    """The values a sink's keys imply: its parsed endpoint, its key's bytes, its resolved topology."""
    from .transports import parse_url

    try:
        k.endpoint = parse_url(k.url)
    except ConfigError as e:
        raise ConfigError(f"{w}.url: {e}") from None
    try:
        k.key = read_key(k.key_file, base)
    except ConfigError as e:
        raise ConfigError(f"{w}.key_file: {e}") from None
    k.resolved_topology = resolve_topology(k)


def _check_sink(k: SinkConfig, w: str) -> None:
    """Raise ConfigError for a sink key out of range (after _derive_sink: the endpoint is parsed)."""
    from .encoder import TOPOLOGIES

    if k.topology not in ("auto", *TOPOLOGIES):
        raise ConfigError(f"{w}.topology must be 'auto', 'source' or 'receiver' (or 'measured'), got {k.topology!r}")
    if k.codec not in ("jpeg", "webp", "png", "h264"):
        raise ConfigError(f"{w}.codec must be jpeg, webp, png or h264, got {k.codec!r}")
    if k.codec == "h264":
        if k.endpoint.scheme == "http":
            raise ConfigError(f"{w}.codec: an http (MJPEG) sink sends JPEG; h264 is for udp, tcp and serial")
        _needs(f"{w}.codec", "av", "H.264 (PyAV)")
    if not 1 <= k.quality <= 100:
        raise ConfigError(f"{w}.quality must be 1..100, got {k.quality}")
    if not 16 <= k.tile <= 1024:
        raise ConfigError(f"{w}.tile must be 16..1024, got {k.tile}")
    if k.bitrate < 0 or k.fps <= 0:
        raise ConfigError(f"{w}: bitrate must be >= 0 and fps > 0")
    if k.mtu and not 128 <= k.mtu <= 65000:
        raise ConfigError(f"{w}.mtu must be 128..65000, got {k.mtu}")
    if not 0 <= k.replenish <= 255 or not 0 <= k.refresh <= 64:
        raise ConfigError(f"{w}: replenish must be 0..255 (levels) and refresh 0..64 (tiles per frame)")
    if not 0 <= k.fec <= 1:
        raise ConfigError(f"{w}.fec must be 0..1 (parity packets per data packet), got {k.fec}")
    if k.fec:
        _needs(f"{w}.fec", "zfec", "FEC (fec = ...)")
    if not 0 <= k.stream <= 65535:
        raise ConfigError(f"{w}.stream must be 0..65535, got {k.stream}")
    if k.resolved_topology == "measured" and k.endpoint.scheme not in ("serial",) and not k.bitrate:
        raise ConfigError(f"{w}: topology 'measured' needs a bit budget (bitrate = ...)")


def _check_ports(cfg: ServeConfig, where: str) -> None:
    """Two listeners on one TCP port (health and an http/tcp sink) cannot both bind."""
    seen: dict[str, str] = {}
    listeners = [("health.listen", cfg.health.listen)] if cfg.health.listen else []
    listeners += [(f"sink[{i}].url", f"{k.endpoint.host}:{k.endpoint.port}") for i, k in enumerate(cfg.sinks)
                  if k.endpoint.scheme in ("tcp", "http")]
    for key, hostport in listeners:
        port = hostport.rsplit(":", 1)[-1]
        if port in seen and port != "0":
            raise ConfigError(f"{where}: {key} uses TCP port {port}, already taken by {seen[port]}")
        seen[port] = key


def _check_health(listen: str, where: str) -> None:
    if not listen:
        return
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: health.listen must be HOST:PORT (port 0..65535) or \"\", got {listen!r}")


def resolve(data: dict, where: str = "config", base: Path | None = None) -> ServeConfig:
    """A complete ServeConfig from TOML-shaped ``data``; ``base`` is the folder relative paths start from."""
    top = ({f.name for f in fields(ServeConfig)} - {"sinks"}) | {"sink"}
    for k in data:
        if k not in top:
            raise ConfigError(f"{where}: unknown key {k!r} (known: {', '.join(sorted(top))})")
    sinks = data.get("sink", [])
    if not isinstance(sinks, list):
        raise ConfigError(f"{where}: use [[sink]] tables for sinks")
    model_data = data.get("model", {})
    cfg = ServeConfig(
        source=from_dict(SourceConfig, data.get("source", {}), f"{where}: source", ConfigError),
        model=from_dict(ModelConfig, model_data, f"{where}: model", ConfigError),
        sinks=[from_dict(SinkConfig, s, f"{where}: sink[{i}]", ConfigError) for i, s in enumerate(sinks)],
        health=from_dict(HealthConfig, data.get("health", {}), f"{where}: health", ConfigError),
    )
    for k in ("status_every", "device_wait"):
        if k in data:
            if not isinstance(data[k], (int, float)) or isinstance(data[k], bool) or data[k] < 0:
                raise ConfigError(f"{where}: {k} must be a number >= 0, got {data[k]!r}")
            setattr(cfg, k, float(data[k]))
    _check_source(cfg.source, where)
    _check_model(cfg.model, where)
    _derive_model_scale(cfg.model, where, isinstance(model_data, dict) and "scale" in model_data)
    if cfg.model.ladder:
        if not (cfg.source.width and cfg.source.fps):
            raise ConfigError(f"{where}: model.ladder needs source.width, source.height and source.fps "
                              "(the ladder is calibrated at that size and rate)")
        t = cfg.model.latency_table
        default = Path(where).with_suffix(".latency.json") if base else Path("edgesr.latency.json")
        cfg.model.latency_table = str((base or Path(".")) / t) if t else str(default)
    if not cfg.sinks:
        raise ConfigError(f"{where}: no [[sink]] configured (e.g. url = \"udp://192.168.1.20:5600\")")
    for i, k in enumerate(cfg.sinks):
        _derive_sink(k, f"{where}: sink[{i}]", base)
        _check_sink(k, f"{where}: sink[{i}]")
    _check_health(cfg.health.listen, where)
    _check_ports(cfg, where)
    return cfg


def read_toml(path) -> dict:
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e.strerror})") from None


def load(path=None, overrides: dict | None = None) -> ServeConfig:
    """The config file at ``path`` (None: defaults) with ``overrides`` (same shape: {"source": {...}, "sink":
    [...], ...}; a table is merged key by key, a list replaces), resolved and validated."""
    data = read_toml(path) if path else {}
    for k, v in (overrides or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    where = str(path) if path else "command line"
    return resolve(data, where, Path(path).parent if path else None)
