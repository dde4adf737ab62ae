"""Symmetric InfoNCE (CLIP) loss with a learnable temperature, gathered across ranks.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(CLIP, 2021); InfoNCE from van den Oord et al. 2018. Each image embedding must pick its own
report among all reports of the (global) batch, and each report its own image. Larger batches
give harder negatives, hence the all-gather under DDP: the local part keeps its gradient, the
remote parts are constants. Every rank evaluates all W*B query rows, so the gradient reaching its
own embeddings is exactly that of the full-batch loss (``local_loss=True`` evaluates only the
local rows: cheaper, but drops the gradient of local embeddings as other ranks' negatives).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ml.spinefm.distributed import all_gather_with_grad, get_rank


def infonce(
    img: torch.Tensor,
    txt: torch.Tensor,
    logit_scale: torch.Tensor,
    valid: torch.Tensor | None = None,
    row_offset: int = 0,
    n_rows: int | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between matched pairs.

    img, txt: [N, E] L2-normalised embeddings (N = global batch); row i of img matches row i of txt.
    logit_scale: scalar tensor, the *exp* of the learned log-temperature.
    valid: optional [N] bool; invalid pairs are neither queries nor candidates (a study without
    a T1 series has no T1 case embedding).
    row_offset/n_rows: compute the loss only for query rows [offset, offset+n_rows) (local rows
    under DDP); candidates are always all N.
    """
    n = img.shape[0]
    if valid is None:
        valid = torch.ones(n, dtype=torch.bool, device=img.device)
    n_rows = n if n_rows is None else n_rows
    rows = torch.arange(row_offset, row_offset + n_rows, device=img.device)
    rows = rows[valid[rows]]
    if rows.numel() == 0:
        return img.sum() * 0.0  # keeps the graph connected for DDP
    neg_inf = torch.finfo(torch.float32).min
    col_mask = torch.where(valid, 0.0, neg_inf)  # [N]
    logits_i2t = logit_scale * img[rows].float() @ txt.float().t() + col_mask  # [R, N]
    logits_t2i = logit_scale * txt[rows].float() @ img.float().t() + col_mask  # [R, N]
    return 0.5 * (F.cross_entropy(logits_i2t, rows) + F.cross_entropy(logits_t2i, rows))


class ClipLoss(nn.Module):
    """Holds the learnable temperature; gathers embeddings from all ranks in ``forward``."""

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0, local_loss: bool = False) -> None:
        super().__init__()
        self.local_loss = local_loss
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_scale = max_scale

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def forward(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        valid: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """img, txt: [B, E] local (unnormalised ok); valid: [B] bool. Same B on every rank.
        ``scale``: the temperature's exp as computed inside a DDP-wrapped forward (so that DDP
        sees the parameter used); defaults to this module's own."""
        scale = self.scale if scale is None else scale
        b = img.shape[0]
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        if valid is None:
            valid = torch.ones(b, dtype=torch.bool, device=img.device)
        all_img = all_gather_with_grad(img)  # [W*B, E]
        all_txt = all_gather_with_grad(txt)
        all_valid = all_gather_with_grad(valid.to(torch.uint8)).bool()  # gloo has no bool
        if self.local_loss:
            return infonce(all_img, all_txt, scale, all_valid, row_offset=get_rank() * b, n_rows=b)
        return infonce(all_img, all_txt, scale, all_valid)
