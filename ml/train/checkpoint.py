"""Resumable training checkpoints (weights, config, optimizer state in separate files).

``<out_dir>/checkpoint/`` holds the latest state: ``model.safetensors`` + ``config.json`` (via
``ml.spinefm.io``) and ``optimizer.pt`` (optimizer, step, RNG). Under FSDP2 the full state dict is
gathered to CPU on rank 0 before writing; DDP wrappers are unwrapped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml.spinefm.distributed import is_main
from ml.spinefm.io import load_weights, save_weights


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with FSDP2 shards gathered (collective: call on every rank)."""
    module = unwrap(module)
    if any(type(p).__name__ == "DTensor" for p in module.parameters()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return module.state_dict()


class _StateHolder(nn.Module):
    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.sd = sd

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.sd


def save_checkpoint(
    folder: str | Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: dict[str, Any],
) -> None:
    folder = Path(folder)
    sd = full_state_dict(module)
    if not is_main():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    save_weights(_StateHolder(sd), tmp, config)
    torch.save(
        {"optimizer": optimizer.state_dict(), "step": step, "torch_rng": torch.get_rng_state()},
        tmp / "optimizer.pt",
    )
    if folder.exists():  # atomic-ish swap: never leave a half-written latest checkpoint
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(tmp, folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, folder)


def load_checkpoint(folder: str | Path, module: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Restore weights (and optimizer state); returns the step to continue from."""
    folder = Path(folder)
    target = unwrap(module)
    if any(type(p).__name__ == "DTensor" for p in target.parameters()):
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        sd = load_file(str(folder / "model.safetensors"), device="cpu")
        set_model_state_dict(target, sd, options=StateDictOptions(full_state_dict=True))
    else:
        load_weights(target, folder)
    state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])
