"""Stages ``pretrain`` and ``gram``: DINOv3-style SSL of one encoder per sequence class.

``pretrain``: DINO (CLS, Sinkhorn-Knopp) + iBOT (masked patches) + KoLeo on multi-crop views of
T1 (or T2) slices. ``gram``: continues the same state and adds Gram anchoring of the student's
patch similarities to the teacher of an earlier run (the "Gram teacher"), as in DINOv3 phase 2.
Exports ``<out_dir>/encoder/`` (the EMA teacher backbone: the encoder used downstream).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml.spinefm.augment import MultiCrop, MultiCropConfig, sample_masks
from ml.spinefm.backbone import SpineViT
from ml.spinefm.io import load_weights, save_weights
from ml.spinefm.losses import DINOLoss, IBOTPatchLoss, gram_loss, koleo_loss, sinkhorn_knopp
from ml.spinefm.registry import create_model, get_preset
from ml.spinefm.ssl import SSLModel
from ml.train.config import PretrainConfig
from ml.train.data import build_loader, make_dataloader
from ml.train.loop import StepResult, make_param_groups

# which manifest classes feed each encoder: T2 includes STIR and Dixon water/fat, which the
# series classifier already maps to "T2"
ENCODER_CLASSES = {"T1": ("T1",), "T2": ("T2",)}


class MultiCropCollate:
    """List of MultiCrop dicts -> view-major tensors + iBOT masks (picklable for workers)."""

    def __init__(self, n_patches: int, ratio: tuple[float, float], prob: float) -> None:
        self.n_patches, self.ratio, self.prob = n_patches, ratio, prob

    def __call__(self, items: list[dict[str, list[torch.Tensor]]]) -> dict[str, torch.Tensor]:
        glob = torch.stack([it["global"][v] for v in range(2) for it in items])  # [2B, 1, H, W]
        n_local = len(items[0]["local"])
        loc = (
            torch.stack([it["local"][v] for v in range(n_local) for it in items])  # [nB, 1, h, w]
            if n_local
            else torch.empty(0)
        )
        masks = sample_masks(glob.shape[0], self.n_patches, self.ratio, self.prob)  # [2B, N]
        return {"global": glob, "local": loc, "masks": masks}


class PretrainTask:
    def __init__(self, cfg: PretrainConfig, device: torch.device, stage: str) -> None:
        self.cfg, self.device, self.stage = cfg, device, stage
        s = cfg.ssl
        if s.sequence_class not in ENCODER_CLASSES:
            raise ValueError("ssl.sequence_class must be T1 or T2")
        self.preset = get_preset(s.encoder, **s.encoder_overrides)
        self.fsdp_preferred = self.preset.fsdp
        backbone = create_model(s.encoder, checkpoint=s.init_checkpoint, **s.encoder_overrides)
        self.module = SSLModel(backbone, s.out_dim, s.patch_out_dim, s.head_hidden, s.head_bottleneck)
        if cfg.run.grad_checkpointing:
            backbone.set_grad_checkpointing(True)
        if s.resume_from:  # gram stage continues the full student/teacher/heads state
            load_weights(self.module, Path(s.resume_from) / "checkpoint")
        self.gram_teacher: SpineViT | None = None
        if s.gram_weight > 0:
            if not s.gram_teacher:
                raise ValueError("ssl.gram_weight > 0 needs ssl.gram_teacher (an earlier run folder)")
            self.gram_teacher = load_encoder_folder(Path(s.gram_teacher) / "encoder").to(device).eval()
            self.gram_teacher.requires_grad_(False)
        self.dino = DINOLoss(s.student_temp)
        self.ibot = IBOTPatchLoss(s.student_temp)

        loader, train, _ = build_loader(cfg.data, self.preset.img_size)
        from ml.data.datasets import SliceDataset

        crops = MultiCropConfig(self.preset.img_size, self.preset.local_img_size, s.n_local)
        self.dataset = SliceDataset(loader, train, ENCODER_CLASSES[s.sequence_class], transform=MultiCrop(crops))
        n_patches = (self.preset.img_size // 16) ** 2
        self.collate = MultiCropCollate(n_patches, s.mask_ratio, s.mask_prob)

    # -- TrainTask ------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        return make_param_groups(self.module.student)

    def batches(self, epoch_seed: int) -> Iterator[Any]:
        dl = make_dataloader(
            self.dataset, self.cfg.optim.batch_size, self.cfg.data.num_workers, epoch_seed, self.collate
        )
        return iter(dl)

    def _teacher_temp(self, step: int) -> float:
        s = self.cfg.ssl
        if step >= s.teacher_temp_warmup:
            return s.teacher_temp
        return s.teacher_temp_start + (s.teacher_temp - s.teacher_temp_start) * step / s.teacher_temp_warmup

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepResult:
        s = self.cfg.ssl
        glob = batch["global"].to(self.device, non_blocking=True)
        loc = batch["local"].to(self.device, non_blocking=True) if batch["local"].numel() else None
        masks = batch["masks"].to(self.device)
        out = model(glob, loc, masks)
        tt = self._teacher_temp(step)
        b = glob.shape[0] // 2
        t_cls = sinkhorn_knopp(out.teacher_cls_logits.flatten(0, 1), tt, s.sinkhorn_iters).view(2, b, -1)
        t_patch = sinkhorn_knopp(out.teacher_patch_logits, tt, s.sinkhorn_iters)
        # each masked patch weighs 1/(masked patches of its image): images count equally
        per_image = masks.sum(1, keepdim=True).clamp_min(1).expand_as(masks)[masks].float()
        dino = self.dino(out.student_cls_logits, t_cls)
        ibot = self.ibot(out.student_patch_logits, t_patch, 1.0 / per_image)
        koleo = (koleo_loss(out.student_cls[0]) + koleo_loss(out.student_cls[1])) / 2
        loss = s.dino_weight * dino + s.ibot_weight * ibot + s.koleo_weight * koleo
        metrics = {"dino": dino.detach().item(), "ibot": ibot.detach().item(), "koleo": koleo.item()}
        if self.gram_teacher is not None:
            with torch.no_grad():
                anchor = self.gram_teacher.forward_tokens(glob).patches  # [2B, N, D]
            gram = gram_loss(out.student_patches, anchor)
            loss = loss + s.gram_weight * gram
            metrics["gram"] = gram.item()
        metrics["loss"] = loss.item()
        return StepResult(loss=loss, metrics=metrics, samples=b)

    def after_optimizer_step(self, step: int) -> None:
        s = self.cfg.ssl
        t = step / max(1, self.cfg.optim.max_steps - 1)
        m = s.momentum_end - (s.momentum_end - s.momentum_start) * (math.cos(math.pi * t) + 1) / 2
        # self.module is the SSLModel itself: the loop wraps (DDP) a separate reference
        self.module.update_teacher(m)

    def checkpoint_config(self) -> dict[str, Any]:
        return {"encoder_preset": self.preset.__dict__, "sequence_class": self.cfg.ssl.sequence_class}

    def export(self, out_dir: Path, state: dict[str, torch.Tensor]) -> None:
        """The EMA teacher backbone, rebuilt from the gathered full state (works under FSDP2)."""
        prefix = "teacher.backbone."
        teacher = create_model(self.cfg.ssl.encoder, **self.cfg.ssl.encoder_overrides)
        teacher.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        save_encoder_folder(teacher, out_dir / "encoder", self.cfg.ssl.encoder, self.cfg.ssl.encoder_overrides,
                            self.cfg.ssl.sequence_class)  # fmt: skip


def save_encoder_folder(
    encoder: SpineViT, folder: Path, preset: str, overrides: dict[str, Any], sequence_class: str
) -> None:
    save_weights(encoder, folder, {"preset": preset, "overrides": overrides, "sequence_class": sequence_class})


def load_encoder_folder(folder: str | Path) -> SpineViT:
    """Rebuild an exported encoder (``<run>/encoder``) from its config + weights."""
    from ml.spinefm.io import read_config

    cfg = read_config(folder)
    enc = create_model(cfg["preset"], **cfg.get("overrides", {}))
    load_weights(enc, folder)
    return enc
