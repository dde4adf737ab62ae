"""Spine adaptation of the dense head's trunk (``DiagnosisConfig.dense_adapt_blocks``): the last
blocks of the generic ImageNet MobileNetV2 fine-tuned jointly with the head on training studies.

Why only blocks 14-17: their input is the block-13 ("fine", stride-16) map that every study's
cached cells already hold, so adaptation never re-encodes a view from pixels; the frozen blocks
before the first adapted one run once per study, the adapted ones on every step (a batch's views
together). The batch norms are folded into the convolutions (``load_trunk``), so the blocks are
plain convolutions: no batch statistics to keep consistent between training and serving, and the
step at epoch 0 starts exactly at the frozen trunk. Same losses as the head (MIL + cell loss),
on the same standardisation as the frozen cells (``mean`` / ``std`` fixed): the head trained on
the frozen cells stays valid at the first step and the served head reads the adapted cells with
the statistics it was trained with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.agents.dense import FIRST_TAIL_BLOCK, PLANES, DenseHead, adapted_arrays, load_trunk, slice_mean_matrix
from ml.agents.diagnosis import DiagnosisConfig

log = logging.getLogger(__name__)

LossFn = Callable[..., torch.Tensor]  # dense_train._batch_loss


def adapt_trunk(
    ds: list[dict[str, Any]],
    head: DenseHead,
    tt: list[torch.Tensor],
    yt: torch.Tensor,
    fit: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    pw: torch.Tensor,
    cfg: DiagnosisConfig,
    loss_fn: LossFn,
) -> tuple[nn.Sequential, DenseHead]:
    """Fine-tune the generic trunk's last ``cfg.dense_adapt_blocks`` blocks with ``head`` (trained
    on the frozen cells) on the studies ``fit``: ``ds`` their cached cells (``dense_cells``: the
    "fine" map is the input), ``tt`` / ``yt`` cell targets and labels, ``mean`` / ``std`` the
    design's standardisation. Returns (the adapted trunk, loaded from its own artifact arrays as
    inference loads it; the jointly trained head, in eval mode)."""
    if any("fine" not in d for d in ds):
        raise ValueError("trunk adaptation needs the block-13 cells of every study (dense_cells' 'fine')")
    t0 = time.perf_counter()
    n = cfg.dense_adapt_blocks
    first = 18 - n
    trunk = load_trunk()
    frozen, blocks = trunk[FIRST_TAIL_BLOCK:first], trunk[first:18]
    blocks.requires_grad_(True)
    mean_t, std_t = torch.from_numpy(mean), torch.from_numpy(std)
    keep = torch.float16 if first == FIRST_TAIL_BLOCK else torch.float32  # the cached "fine" is float16
    with torch.no_grad():  # the frozen blocks before the first adapted one: once per study
        inputs = [frozen(_nchw(d["fine"])).to(keep) for d in ds]
    planes = [torch.tensor([p for p, _, _ in d["views"]], dtype=torch.long) for d in ds]

    def design(i: int, cells: torch.Tensor) -> torch.Tensor:
        """Standardised cell design [V * G * G, F] of study i from its stride-32 cells [V, 320, g, g]
        (the torch twin of ``dense.cell_design``)."""
        c = cells.permute(0, 2, 3, 1)
        if cfg.dense_stride == 16:
            up = c.repeat_interleave(2, 1).repeat_interleave(2, 2)
            c = torch.cat([torch.from_numpy(np.asarray(ds[i]["fine"], np.float32)), up], -1)
        if cfg.dense_slice_contrast:
            ref = torch.einsum("uv,vijc->uijc", torch.from_numpy(slice_mean_matrix(ds[i])), c)
            if cfg.dense_axial_mirror:  # an axial cell against the cell at the mirrored column
                axial = (planes[i] == 1)[:, None, None, None]
                ref = torch.where(axial, c.flip(2), ref)
            c = torch.cat([c, c - ref], -1)
        v, g = c.shape[0], c.shape[1]
        plane = nn.functional.one_hot(planes[i], len(PLANES)).float()[:, None, None, :].expand(v, g, g, len(PLANES))
        x = torch.cat([c, plane], -1).reshape(v * g * g, -1)
        return (x - mean_t) / std_t

    opt = torch.optim.AdamW(
        [
            {"params": head.parameters(), "lr": cfg.dense_lr, "weight_decay": cfg.dense_weight_decay},
            # no decay on pretrained convolutions: shrinking them towards zero is no prior for a spine
            {"params": blocks.parameters(), "lr": cfg.dense_adapt_lr, "weight_decay": 0.0},
        ]
    )
    rng = np.random.default_rng(cfg.seed + 1)
    usable = np.asarray([i for i in fit if len(ds[i]["views"])], int)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one thread per process beats two (no spin-waits)
    torch.manual_seed(cfg.seed)
    try:
        for epoch in range(cfg.dense_adapt_epochs):
            head.train()
            total, steps = 0.0, 0
            for b in np.array_split(rng.permutation(usable), max(1, len(usable) // cfg.dense_batch)):
                x = torch.cat([inputs[i] for i in b]).float().contiguous(memory_format=torch.channels_last)
                cells = torch.split(blocks(x), [len(ds[i]["views"]) for i in b])
                xs = [design(i, c) for i, c in zip(b, cells, strict=True)]
                lengths = np.array([len(x) for x in xs])
                loss = loss_fn(head, xs, [tt[i] for i in b], yt[b], lengths, pw, cfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, steps = total + loss.item(), steps + 1
            log.info("trunk adaptation epoch %d: loss %.4f, %.0f s", epoch + 1, total / max(steps, 1),
                     time.perf_counter() - t0)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    head.eval()
    blocks.requires_grad_(False)
    log.info("trunk adaptation: %d blocks, %d studies, %.1f s", n, len(usable), time.perf_counter() - t0)
    return load_trunk(adapted_arrays(trunk, n)), head


def _nchw(fine: np.ndarray) -> torch.Tensor:
    """Cached block-13 cells [V, h, w, 96] (float16) -> [V, 96, h, w] float32, channels-last."""
    x = torch.from_numpy(np.asarray(fine, np.float32)).permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last)
