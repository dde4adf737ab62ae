"""SpineFM checkpoints: safetensors weights + the resolved config as JSON, side by side.

Layout of a checkpoint folder::

    model.safetensors   # weights only (no pickles: safe to load from untrusted sources)
    config.json         # {"model": SpineFMConfig, "train": resolved training config, "stage": ...}
    optimizer.pt        # optimizer/scheduler/step state for resuming (training folders only)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def _contiguous_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_weights(module: nn.Module, folder: str | Path, config: dict[str, Any]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous_state(module), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "config.json").read_text())


def load_weights(module: nn.Module, folder: str | Path, strict: bool = True) -> None:
    sd = load_file(str(Path(folder) / "model.safetensors"), device="cpu")
    result = module.load_state_dict(sd, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise RuntimeError(
            f"checkpoint {folder} does not match: missing={result.missing_keys[:10]} "
            f"unexpected={result.unexpected_keys[:10]}"
        )


def load_spinefm(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild a ``SpineFM`` from a checkpoint folder written by the align/synthesizer stages."""
    from ml.spinefm.model import SpineFM, SpineFMConfig

    cfg = read_config(folder)
    model = SpineFM(SpineFMConfig(**cfg["model"]))
    load_weights(model, folder)
    return model.to(map_location).eval()
