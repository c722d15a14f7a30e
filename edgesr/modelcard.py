"""Model cards: the JSON beside each ``.tflite`` that tells the runtime how to use it and what it measured."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ModelError
from .schema import from_dict

CARD_VERSION = 1
SCALES = (2, 3, 4)


@dataclass
class ModelCard:
    name: str
    scale: int
    variant: str = "cpu"                 # "cpu" or "edgetpu"
    dtype: str = "float32"               # weights/activations: float32, float16, int8
    tile: list[int] | None = None        # [h, w] of the fixed LR input, None for dynamic shape
    margin: int = 4                      # LR pixels of context a tile needs on each side (receptive field)
    color_order: str = "RGB"
    color: str = "rgb"                   # "rgb": RGB in and out; "y": luminance in and out (edgesr.color)
    arch: dict = field(default_factory=dict)
    params: int = 0
    macs_per_output_pixel: float = 0.0
    edgetpu_compiled: bool = False
    cpu_twin: str | None = None          # file name of a CPU model to fall back to
    twin: str | None = None              # file name of the exact twin (int8 <-> float32, same weights): edgesr.twins
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    version: int = CARD_VERSION

    def save(self, path) -> None:
        """The one way a card is written (atomically, beside its model)."""
        from .imageio import write_text_atomic

        write_text_atomic(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict, where: str = "card") -> "ModelCard":
        card = from_dict(cls, d, where, ModelError)
        if card.scale not in SCALES:
            raise ModelError(f"{where}: scale must be 2, 3 or 4, not {card.scale!r}")
        if card.tile is not None and (len(card.tile) != 2 or min(card.tile) < 1):
            raise ModelError(f"{where}: tile must be [h, w] or null")
        if card.color not in ("rgb", "y"):
            raise ModelError(f"{where}: color must be \"rgb\" or \"y\", not {card.color!r}")
        if card.color_order not in ("RGB", "BGR"):
            raise ModelError(f"{where}: color_order must be RGB or BGR")
        if not 0 <= card.margin <= 256:
            raise ModelError(f"{where}: margin must be 0..256 LR pixels, not {card.margin}")
        bad = [k for k, v in card.metrics.items() if not isinstance(v, dict)]
        if bad:
            raise ModelError(f"{where}.metrics.{bad[0]}: expected an object of measurements")
        return card


def card_path(model_path) -> Path:
    p = Path(model_path)
    return p.with_suffix(".json")


def load_card(model_path) -> ModelCard | None:
    """The card beside ``model_path`` (``x.tflite`` -> ``x.json``), or None if there is none."""
    p = card_path(model_path)
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{p}: expected a JSON object")
    return ModelCard.from_dict(data, where=str(p))


MODELS_DIR = Path(__file__).parent / "models"
DEFAULTS = {4: "efdn_w16b2_x4_int8", 2: "srgan_w16b1_x2_int8"}
# the robot's default for LR frames that came through a lossy video codec: trained on what that codec leaves
CODEC_DEFAULTS = {("h264", 4): "efdn_w16b2_x4_h264_int8"}


def shipped_models() -> list[Path]:
    return sorted(MODELS_DIR.glob("*.tflite"))


def resolve_model(name_or_path: str | None, scale: int = 4, codec: str = "") -> Path:
    """A shipped model's name (with or without .tflite) or a path; None gives the default for ``scale`` (for LR
    frames that came as ``codec``, its own default where one is shipped)."""
    if name_or_path is None:
        if scale not in DEFAULTS:
            raise ModelError(f"no shipped default model for x{scale}; pass --model")
        name_or_path = CODEC_DEFAULTS.get((codec, scale), DEFAULTS[scale])
    p = Path(name_or_path)
    if p.suffix == ".tflite" and p.exists():
        return p
    for cand in (MODELS_DIR / f"{name_or_path}.tflite", MODELS_DIR / str(name_or_path)):
        if cand.is_file():
            return cand
    if p.exists():
        return p
    names = ", ".join(m.stem for m in shipped_models()) or "none"
    raise ModelError(f"{name_or_path}: no such model file or shipped model (shipped: {names})")
