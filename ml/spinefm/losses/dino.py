"""DINO self-distillation loss on the CLS token, with Sinkhorn-Knopp centering.

Papers: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO, 2021);
Oquab et al., "DINOv2" (2023) for replacing the EMA centre by Sinkhorn-Knopp (from SwAV, Caron et
al. 2020); Siméoni et al., "DINOv3" (2025) keeps both. The teacher's softmax targets are balanced
across prototypes so that no prototype swallows the batch (collapse); the student is trained by
cross-entropy towards them, only between *different* views of the same image.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


def _all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temperature: float, n_iters: int = 3) -> torch.Tensor:
    """Balanced soft assignment of B samples to K prototypes.

    teacher_logits: [B, K] (local batch; sums are reduced across ranks under DDP).
    Returns Q: [B, K] with every row summing to 1 and, at convergence, every column to B_total/K.
    """
    logits = teacher_logits.float()
    # The max is subtracted only for numerical range, so it must be one offset for the whole
    # (global) batch: a per-rank max would scale each rank's columns by a different constant and
    # the cross-rank prototype sums below would weight the ranks unequally.
    offset = _all_reduce_max(logits.max().clone())
    q = torch.exp((logits - offset) / temperature).t()  # [K, B]
    k = q.shape[0]
    b = torch.tensor(q.shape[1], device=q.device, dtype=q.dtype)
    b_total = _all_reduce_sum(b.clone())
    q /= _all_reduce_sum(q.sum())
    for _ in range(n_iters):
        # each prototype (row of q) gets total mass 1/K
        q /= _all_reduce_sum(q.sum(dim=1, keepdim=True))
        q /= k
        # each sample (column of q) gets total mass 1/B_total
        q /= q.sum(dim=0, keepdim=True)
        q /= b_total
    return (q * b_total).t()  # [B, K], rows sum to 1


class DINOLoss(nn.Module):
    """Cross-entropy between teacher targets and student predictions over crop pairs."""

    def __init__(self, student_temp: float = 0.1) -> None:
        super().__init__()
        self.student_temp = student_temp

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
        """student_logits: [S, B, K] for S student crops; teacher_probs: [T, B, K] for the T global
        crops (targets, no grad). Pairs (s, t) with s == t (same global view) are skipped."""
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)  # [S, B, K]
        # ce[s, t] = mean_b  -sum_k q[t,b,k] log p[s,b,k]
        ce = -torch.einsum("tbk,sbk->stb", teacher_probs.float(), log_p).mean(dim=-1)  # [S, T]
        s_idx = torch.arange(ce.shape[0], device=ce.device)[:, None]
        t_idx = torch.arange(ce.shape[1], device=ce.device)[None, :]
        keep = s_idx != t_idx  # global crops are the first T student crops
        return ce[keep].mean()
