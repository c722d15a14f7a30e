"""`edgesr serve` configuration: TOML -> dataclasses, validated at load with one-line errors naming the key."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError


@dataclass
class SourceConfig:
    url: str = "synthetic"          # synthetic | picamera2 | /dev/videoN | video file | image folder
    width: int = 320
    height: int = 240
    fps: float = 30.0
    loop: bool = True


@dataclass
class ModelConfig:
    name: str = ""                  # shipped name or .tflite path; "" = default real-time model of `scale`
    scale: int = 4
    backend: str = "auto"           # auto | cpu | edgetpu
    threads: int = 0                # 0 = all cores
    # latency-aware ladder (README "Holding the frame rate"): models best first, e.g. [..., "bicubic"]; [] = off
    ladder: list = field(default_factory=list)
    target_fps: float = 0.0         # ladder: frame rate to hold; 0 = source.fps
    latency_table: str = ""         # ladder: `edgesr calibrate` output; "" = <config>.latency.json beside it
    # adaptive tiles (README "Adaptive tiles"): SR only tiles whose mean |gradient| exceeds this; 0 = off
    texture_threshold: float = 0.0
    texture_tile: int = 64          # adaptive tiles: LR tile size for dynamic-shape models


@dataclass
class SinkConfig:
    url: str = ""
    topology: str = "auto"          # source: send upscaled frames | receiver: send LR, robot upscales | auto
    codec: str = "jpeg"
    quality: int = 80
    tile: int = 64
    bitrate: float = 0              # bits/s; 0 = unlimited (serial sinks default to 80% of baud)
    fps: float = 10.0               # target frame rate for rate control
    mtu: int = 0                    # 0 = transport default (UDP 1200, serial 256)
    key_file: str = ""              # shared HMAC key (file contents); packets are signed when set
    stream: int = 0


@dataclass
class HealthConfig:
    listen: str = "127.0.0.1:9100"  # /healthz /metrics /state; "" disables


@dataclass
class ServeConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sinks: list[SinkConfig] = field(default_factory=list)
    health: HealthConfig = field(default_factory=HealthConfig)
    status_every: float = 5.0
    device_wait: float = 10.0       # seconds a /dev device may take to appear at start-up before exit code 2


def _fill(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    for k in data:
        if k not in known:
            raise ConfigError(f"{where}: unknown key {k!r} (known: {', '.join(known)})")
    kw = {}
    for k, v in data.items():
        t = type(getattr(cls(), k)) if k != "url" or cls is not SinkConfig else str
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise ConfigError(f"{where}.{k}: expected {t.__name__}, got {type(v).__name__} {v!r}")
        kw[k] = v
    return cls(**kw)


def validate(cfg: ServeConfig, where: str = "config") -> ServeConfig:
    from .transports import parse_url

    s = cfg.source
    if not (16 <= s.width <= 4096 and 16 <= s.height <= 4096):
        raise ConfigError(f"{where}: source.width/height must be 16..4096, got {s.width}x{s.height}")
    if not 0 < s.fps <= 240:
        raise ConfigError(f"{where}: source.fps must be in (0, 240], got {s.fps}")
    m = cfg.model
    if m.backend not in ("auto", "cpu", "edgetpu"):
        raise ConfigError(f"{where}: model.backend must be auto, cpu or edgetpu, got {m.backend!r}")
    if m.scale not in (2, 3, 4):
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
    if not cfg.sinks:
        raise ConfigError(f"{where}: no [[sink]] configured (e.g. url = \"udp://192.168.1.20:5600\")")
    for i, k in enumerate(cfg.sinks):
        w = f"{where}: sink[{i}]"
        parse_url(k.url)
        if k.topology not in ("auto", "source", "receiver"):
            raise ConfigError(f"{w}.topology must be 'auto', 'source' or 'receiver', got {k.topology!r}")
        if k.codec not in ("jpeg", "webp", "png"):
            raise ConfigError(f"{w}.codec must be jpeg, webp or png, got {k.codec!r}")
        if not 1 <= k.quality <= 100:
            raise ConfigError(f"{w}.quality must be 1..100, got {k.quality}")
        if not 16 <= k.tile <= 1024:
            raise ConfigError(f"{w}.tile must be 16..1024, got {k.tile}")
        if k.bitrate < 0 or k.fps <= 0:
            raise ConfigError(f"{w}: bitrate must be >= 0 and fps > 0")
        if k.mtu and not 128 <= k.mtu <= 65000:
            raise ConfigError(f"{w}.mtu must be 128..65000, got {k.mtu}")
        if k.key_file and not Path(k.key_file).is_file():
            raise ConfigError(f"{w}.key_file: {k.key_file}: no such file")
    if cfg.health.listen and ":" not in cfg.health.listen:
        raise ConfigError(f"{where}: health.listen must be HOST:PORT or \"\"")
    return cfg


def load(path) -> ServeConfig:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    top = ({f.name for f in fields(ServeConfig)} - {"sinks"}) | {"sink"}
    for k in data:
        if k not in top:
            raise ConfigError(f"{p}: unknown key {k!r} (known: {', '.join(sorted(top))})")
    sinks = data.get("sink", [])
    if not isinstance(sinks, list):
        raise ConfigError(f"{p}: use [[sink]] tables for sinks")
    cfg = ServeConfig(
        source=_fill(SourceConfig, data.get("source", {}), f"{p}: source"),
        model=_fill(ModelConfig, data.get("model", {}), f"{p}: model"),
        sinks=[_fill(SinkConfig, s, f"{p}: sink[{i}]") for i, s in enumerate(sinks)],
        health=_fill(HealthConfig, data.get("health", {}), f"{p}: health"),
    )
    if cfg.model.ladder:
        t = cfg.model.latency_table  # relative to the config file
        cfg.model.latency_table = str(p.parent / t if t else p.with_suffix(".latency.json"))
    for k in ("status_every", "device_wait"):
        if k in data:
            if not isinstance(data[k], (int, float)) or isinstance(data[k], bool) or data[k] < 0:
                raise ConfigError(f"{p}: {k} must be a number >= 0, got {data[k]!r}")
            setattr(cfg, k, float(data[k]))
    return validate(cfg, str(p))


def resolve_topology(sink: SinkConfig) -> str:
    """'auto' from the link study (README, Streaming): links with a bit budget (serial radios, `bitrate` set)
    get LR frames upscaled on the robot -- SR at the robot matched or beat SR at the source at every bitrate
    measured, with 2-7x fewer bytes; HTTP viewers (browsers) and unlimited links get upscaled frames."""
    if sink.topology != "auto":
        return sink.topology
    scheme = sink.url.split(":", 1)[0].lower()
    if scheme == "http":
        return "source"
    return "receiver" if sink.bitrate > 0 or scheme == "serial" else "source"


def read_key(path: str) -> bytes | None:
    if not path:
        return None
    key = Path(path).read_bytes().strip()
    if len(key) < 8:
        raise ConfigError(f"{path}: key too short (use at least 16 random bytes)")
    return key

