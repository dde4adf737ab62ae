"""Resumable training checkpoints (weights, config, optimizer state in separate files).

``<out_dir>/checkpoint/`` holds the latest state: ``model.safetensors`` + ``config.json`` (via
``ml.spinefm.io``) and ``optimizer.pt`` (step, RNG, and the optimizer state under DDP). Under FSDP2
the full weights are gathered to CPU on rank 0, and each rank keeps its own optimizer shard in
``optimizer.rank<r>.pt`` (resume with the same world size). Writes go to a temporary folder that
replaces the previous checkpoint only when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

from ml.spinefm.distributed import get_rank, is_dist, is_main
from ml.spinefm.io import load_weights, save_weights

if TYPE_CHECKING:
    from torch.distributed.checkpoint.state_dict import DictValueType


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP-style wrapper (which holds it as ``.module``), else ``module`` itself."""
    return cast(nn.Module, module.module) if hasattr(module, "module") else module


def is_sharded(module: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in unwrap(module).parameters())


def _barrier() -> None:
    if is_dist():
        dist.barrier()


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with FSDP2 shards gathered to CPU (collective: call on every rank)."""
    module = unwrap(module)
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # typed as any state-dict value; a full (gathered) model state dict holds only plain tensors
        sd = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return cast(dict[str, torch.Tensor], sd)
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


class StateHolder(nn.Module):
    """Lets ``save_weights`` write a plain state dict."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.sd = sd

    # narrower than Module.state_dict on purpose: it always returns the held dict and ignores
    # destination/prefix/keep_vars, which save_weights never passes
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.sd


def save_checkpoint(
    folder: str | Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: dict[str, Any],
    sharded: bool = False,
) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    sd = full_state_dict(module)
    if is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        save_weights(StateHolder(sd), tmp, config)
        meta: dict[str, Any] = {"step": step, "torch_rng": torch.get_rng_state()}
        if not sharded:
            meta["optimizer"] = optimizer.state_dict()
        torch.save(meta, tmp / "optimizer.pt")
    _barrier()
    if sharded:
        torch.save(optimizer.state_dict(), tmp / f"optimizer.rank{get_rank()}.pt")
    _barrier()
    if is_main():
        if folder.exists():
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    _barrier()


def load_model_weights(folder: str | Path, module: nn.Module) -> None:
    """Weights of a checkpoint into an (unwrapped or FSDP2-sharded) module."""
    target = unwrap(module)
    if is_sharded(target):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        sd = load_file(str(Path(folder) / "model.safetensors"), device="cpu")
        # a dict of tensors is a valid state dict; the parameter is typed with the (invariant) wider value type
        set_model_state_dict(target, cast("DictValueType", sd), options=StateDictOptions(full_state_dict=True))
    else:
        load_weights(target, folder)


def load_optimizer_state(folder: str | Path, optimizer: torch.optim.Optimizer, sharded: bool) -> int:
    """Restore optimizer state (this rank's shard under FSDP2); returns the step to continue from."""
    folder = Path(folder)
    meta = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False)
    if sharded:
        optimizer.load_state_dict(torch.load(folder / f"optimizer.rank{get_rank()}.pt", weights_only=False))
    else:
        optimizer.load_state_dict(meta["optimizer"])
    return int(meta["step"])
