"""Model registry: ``create_model(name, **overrides)`` for every SpineFM encoder preset.

Presets name a timm DINOv3 architecture plus the sizes we train at. ``tiny`` exists so that the
whole pipeline (five training stages, probes, tests) runs on a 2-core CPU in minutes; ``large`` is
the paper's ViT-L/16. Weights never come from a hub: ``checkpoint=`` loads a local file.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import timm

from ml.spinefm.backbone import SpineViT

if TYPE_CHECKING:
    from timm.models.eva import Eva

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderPreset:
    """Architecture of one encoder size (what is saved next to every checkpoint)."""

    timm_name: str  # a registered timm ``vit_*_patch16_dinov3`` architecture
    embed_dim: int
    depth: int
    num_heads: int
    img_size: int  # global-crop / inference size
    local_img_size: int  # local-crop size for multi-crop SSL
    in_chans: int = 1  # 3 to load RGB DINOv3 checkpoints; 1-channel input is replicated
    drop_path_rate: float = 0.0
    # LayerScale init: DINOv3's 1e-5 suits long schedules; a short CPU run needs the residual
    # branches to matter from step one (with 1e-5 every slice maps to the same CLS token)
    init_values: float = 1e-5
    fsdp: bool = False  # shard with FSDP2 ``fully_shard`` under torchrun


_PRESETS: dict[str, EncoderPreset] = {}


def register_preset(name: str, preset: EncoderPreset) -> None:
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} already registered")
    _PRESETS[name] = preset


register_preset(
    "tiny", EncoderPreset("vit_small_patch16_dinov3", 192, 4, 3, img_size=96, local_img_size=48, init_values=0.1)
)
register_preset("small", EncoderPreset("vit_small_patch16_dinov3", 384, 12, 6, 224, 96, drop_path_rate=0.1))
register_preset("base", EncoderPreset("vit_base_patch16_dinov3", 768, 12, 12, 224, 96, drop_path_rate=0.1))
register_preset(
    "large", EncoderPreset("vit_large_patch16_dinov3", 1024, 24, 16, 224, 96, drop_path_rate=0.3, fsdp=True)
)


def list_models() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str, **overrides: Any) -> EncoderPreset:
    try:
        preset = _PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown SpineFM model {name!r}; known: {', '.join(list_models())}") from None
    fields = set(asdict(preset))
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown overrides {sorted(unknown)} for {name!r}; allowed: {sorted(fields)}")
    return replace(preset, **overrides)


def build_encoder(preset: EncoderPreset) -> SpineViT:
    """Instantiate the architecture with random weights (never ``pretrained=True``)."""
    # create_model is typed as returning a Module; every preset names a ``*_dinov3`` architecture,
    # which timm builds as an Eva
    vit = timm.create_model(
        preset.timm_name,
        pretrained=False,
        num_classes=0,
        global_pool="token",
        in_chans=preset.in_chans,
        img_size=preset.img_size,
        embed_dim=preset.embed_dim,
        depth=preset.depth,
        num_heads=preset.num_heads,
        drop_path_rate=preset.drop_path_rate,
        init_values=preset.init_values,
    )
    return SpineViT(cast("Eva", vit), in_chans=preset.in_chans)


def create_model(name: str, checkpoint: str | Path | None = None, **overrides: Any) -> SpineViT:
    """Build encoder preset ``name`` (with field ``overrides``), optionally loading local weights.

    ``checkpoint`` may be a SpineFM encoder file (our key names) or a Meta DINOv3 file (their
    names: timm's converter maps them); loading is strict and reports mismatches clearly.
    """
    preset = get_preset(name, **overrides)
    model = build_encoder(preset)
    model.preset = preset  # type: ignore[assignment]  # torch types Module attributes as Tensor | Module
    if checkpoint is not None:
        from ml.spinefm.weights import load_encoder_weights

        load_encoder_weights(model, checkpoint, strict=True)
    return model
