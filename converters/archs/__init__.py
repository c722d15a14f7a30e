"""SR network definitions. ``build(spec)`` is the one way to get a Keras model from an :class:`ArchSpec`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

ARCHS = ("srgan", "efdn", "espcn", "fsrcnn", "efdn_ntire")


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to rebuild a network: stored in checkpoints and model cards."""

    arch: str
    scale: int
    width: int = 32
    blocks: int = 4
    anchor: bool = True  # add the nearest-neighbour-upsampled input before pixel shuffle (ABPN)
    extra: dict = field(default_factory=dict)
    channels: int = 3    # 3: RGB in and out; 1: luminance (Y of YCrCb) in and out, chroma resized by the runtime

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, not {self.scale}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (Y) or 3 (RGB), not {self.channels}")
        if self.width < 1 or self.blocks < 0:
            raise ValueError("width must be >= 1 and blocks >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchSpec":
        return cls(**d)


def build(spec: ArchSpec, input_shape=(None, None, 3), upsample: str = "depth_to_space", deploy: bool = False,
          split_anchor: bool = False):
    """Keras model for ``spec``. ``upsample='transpose_conv'`` makes the Edge TPU variant (no DEPTH_TO_SPACE);
    ``deploy=True`` builds EFDN with its blocks already re-parameterised into single 3x3 convs;
    ``split_anchor=True`` is the int8 export form of the anchored tail (see ``common.sr_tail``)."""
    from . import baselines, efdn, efdn_ntire, srgan

    makers = {"srgan": srgan.generator, "efdn": efdn.efdn, "espcn": baselines.espcn, "fsrcnn": baselines.fsrcnn,
              "efdn_ntire": efdn_ntire.efdn_ntire}
    kwargs = {"deploy": deploy} if spec.arch == "efdn" else {}
    input_shape = (*input_shape[:2], spec.channels)
    return makers[spec.arch](spec, input_shape=input_shape, upsample=upsample, split_anchor=split_anchor, **kwargs)
