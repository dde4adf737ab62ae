"""Stages ``align`` and ``synthesizer``: CLIP-style alignment of case embeddings with reports.

``align``: T1 and T2 encoders (initialised from the SSL runs' teachers) + MIL pools + projections
are trained against the frozen text encoder with symmetric InfoNCE on the case embeddings named
in ``align_keys`` (default: all-series, T1-only and T2-only cases, i.e. image-text-image
"tri-modal" alignment; T1 and T2 are never aligned to each other directly).
``synthesizer``: continual CLIP training from an align run with the encoders frozen; "other"
series go through the router (or, for ``model.router=none``, through one encoder alone), and only
the router and the "other" pooling/projection are trained.
Exports ``<out_dir>/final/``: a SpineFM folder readable by ``ml.spinefm.io.load_spinefm``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file
from torch import nn

from ml.data.datasets import StudyDataset, collate_studies
from ml.spinefm.backbone import SpineViT
from ml.spinefm.io import save_weights
from ml.spinefm.model import SpineFM
from ml.spinefm.registry import get_preset
from ml.spinefm.text import TextEncoder
from ml.train.checkpoint import StateHolder, unwrap
from ml.train.config import AlignConfig, to_dict
from ml.train.data import build_loader, make_dataloader
from ml.train.loop import StepResult, make_param_groups
from ml.train.pretrain import load_encoder_folder


def load_align_weights(model: SpineFM, run_dir: str | Path) -> None:
    """Load an align run into ``model``; synthesizer keys may differ (router kind changes)."""
    folder = Path(run_dir) / "final"
    if not folder.exists():
        folder = Path(run_dir) / "checkpoint"
    sd = load_file(str(folder / "model.safetensors"), device="cpu")
    result = model.load_state_dict(sd, strict=False)
    bad = [k for k in result.missing_keys + result.unexpected_keys if not k.startswith("synthesizer.")]
    if bad:
        raise RuntimeError(f"{folder} does not match the model: {bad[:10]}")


class AlignTask:
    def __init__(self, cfg: AlignConfig, device: torch.device, stage: str) -> None:
        self.cfg, self.device, self.stage = cfg, device, stage
        preset = get_preset(cfg.model.encoder, **cfg.model.encoder_overrides)
        self.fsdp_preferred = preset.fsdp
        self.text = TextEncoder(cfg.model.text_encoder, cfg.model.text_pooling, cfg.model.text_max_length)
        cfg.model.text_dim = self.text.dim
        self.text.to(device)
        self.module = SpineFM(cfg.model)
        for cls, path in (("T1", cfg.t1_encoder), ("T2", cfg.t2_encoder)):
            if path:
                enc = load_encoder_folder(Path(path) / "encoder")
                self.module.encoders[cls].load_state_dict(enc.state_dict())
        if cfg.init_from:
            load_align_weights(self.module, cfg.init_from)
        if cfg.freeze_encoders:
            self.module.freeze_encoders(True)
        if cfg.train_only:
            for name, p in self.module.named_parameters():
                p.requires_grad_(any(name.startswith(pre) for pre in cfg.train_only))
        if cfg.run.grad_checkpointing:
            for encoder in self.module.encoders.values():  # the ModuleDict holds the SpineViTs SpineFM built
                cast(SpineViT, encoder).set_grad_checkpointing(True)

        loader, train, _ = build_loader(cfg.data, preset.img_size)
        self.dataset = StudyDataset(loader, train, cfg.data.max_slices, cfg.series_classes)

    def param_groups(self) -> list[dict[str, Any]]:
        return make_param_groups(self.module, {"encoders.": self.cfg.encoder_lr_scale})

    def batches(self, epoch_seed: int) -> Iterator[Any]:
        dl = make_dataloader(
            self.dataset, self.cfg.optim.batch_size, self.cfg.data.num_workers, epoch_seed, collate_studies
        )
        return iter(dl)

    def step(self, model: nn.Module, batch: list, step: int) -> StepResult:
        core = cast(SpineFM, unwrap(model))  # model is self.module, a SpineFM, possibly DDP-wrapped
        out = model(batch, self.text([st.report for st in batch]))  # text: [B, E]
        losses = {}
        for key in self.cfg.align_keys:
            losses[key] = core.contrastive(out.case[key], out.text, out.valid[key], out.logit_scale)
        loss = sum(losses.values()) / len(losses)
        metrics = {f"nce_{k}": v.item() for k, v in losses.items()}
        metrics["temperature"] = 1.0 / core.contrastive.scale.item()
        metrics["loss"] = loss.item()
        return StepResult(loss=loss, metrics=metrics, samples=len(batch))

    def after_optimizer_step(self, step: int) -> None:
        pass

    def checkpoint_config(self) -> dict[str, Any]:
        return {"model": self.cfg.model.to_dict()}

    def export(self, out_dir: Path, state: dict[str, torch.Tensor]) -> None:
        config = {"model": self.cfg.model.to_dict(), "train": to_dict(self.cfg), "stage": self.stage}
        save_weights(StateHolder(state), out_dir / "final", config)
