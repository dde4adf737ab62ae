"""Loading encoder weights from local files, with a strict and readable key report.

A hospital may hold Meta's DINOv3 release files (``.pth``/``.safetensors``, Meta key names) or
our own SpineFM encoder files (``vit.*`` keys). Silent partial loads are the classic way to train
on a random backbone by accident, so mismatches raise unless ``strict=False`` is asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from timm.models.eva import checkpoint_filter_fn

from ml.spinefm.backbone import SpineViT

log = logging.getLogger(__name__)

# keys a foreign checkpoint legitimately lacks: our iBOT mask token, and non-persistent RoPE buffers
_OPTIONAL = ("mask_token",)


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"missing ({len(self.missing)}): {self.missing[:20]}"]
        lines.append(f"unexpected ({len(self.unexpected)}): {self.unexpected[:20]}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "teacher"):  # common wrappers
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    return obj


def _to_spinefm_keys(sd: dict[str, torch.Tensor], model: SpineViT, report: LoadReport) -> dict:
    if any(k.startswith("vit.") for k in sd):
        return sd
    # a timm- or Meta-named ViT: let timm's converter rename (storage_tokens -> reg_token, ...)
    converted = checkpoint_filter_fn(sd, model.vit)
    proj = converted.get("patch_embed.proj.weight")
    if proj is not None and proj.shape[1] != model.in_chans:
        if model.in_chans == 1:
            # grey = sum of RGB filters keeps the response to a replicated grey image identical
            converted["patch_embed.proj.weight"] = proj.sum(dim=1, keepdim=True)
            report.notes.append(f"patch_embed summed over {proj.shape[1]} input channels -> 1")
        else:
            raise ValueError(f"checkpoint has {proj.shape[1]} input channels, model {model.in_chans}")
    report.notes.append("converted foreign (timm/DINOv3) key names")
    return {f"vit.{k}": v for k, v in converted.items()}


def load_encoder_weights(model: SpineViT, path: str | Path, strict: bool = True) -> LoadReport:
    """Load ``path`` into ``model``; raise with a key report on any mismatch when ``strict``."""
    report = LoadReport()
    sd = _to_spinefm_keys(read_state_dict(path), model, report)
    result = model.load_state_dict(sd, strict=False)
    report.missing = [k for k in result.missing_keys if not k.endswith(_OPTIONAL)]
    report.unexpected = list(result.unexpected_keys)
    if strict and (report.missing or report.unexpected):
        raise RuntimeError(f"checkpoint {path} does not match the model:\n{report}")
    log.info("loaded encoder weights from %s\n%s", path, report)
    return report
