"""Gated-attention MIL pooling (slices -> series, series -> case).

Paper: Ilse, Tomczak & Welling, "Attention-based Deep Multiple Instance Learning" (ICML 2018).
A study is a bag of series and a series a bag of slices; a finding may be visible on two slices
out of twenty, so a learned, input-dependent weighting beats mean pooling, and the weights double
as a key-slice saliency that the localisation agents can show.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedAttentionPool(nn.Module):
    """a_i = w^T (tanh(V h_i) * sigmoid(U h_i)); weights = softmax over the bag's valid items."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, N, D]; mask: [B, N] bool (True = real item). Returns pooled [B, D], weights [B, N]."""
        scores = self.w(torch.tanh(self.v(x)) * torch.sigmoid(self.u(x))).squeeze(-1)  # [B, N]
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1).to(x.dtype)  # [B, N]
        if mask is not None:
            weights = weights * mask  # empty bags pool to zero
        return torch.einsum("bn,bnd->bd", weights, x), weights


def pad_bags(bags: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of [N_i, D] -> padded [B, max N, D] and mask [B, max N]."""
    n_max = max(1, max((b.shape[0] for b in bags), default=1))
    d = bags[0].shape[-1]
    out = bags[0].new_zeros(len(bags), n_max, d)
    mask = torch.zeros(len(bags), n_max, dtype=torch.bool, device=bags[0].device)
    for i, b in enumerate(bags):
        out[i, : b.shape[0]] = b
        mask[i, : b.shape[0]] = True
    return out, mask
