"""Next-token cross-entropy on the report tokens only (prompt and image tokens are masked).

The standard causal-LM objective (Radford et al. 2018) as used for LLaVA's visual instruction
tuning (Liu et al. 2023): position t predicts token t+1; labels of -100 are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def report_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, T, V], labels [B, T] (IGNORE where not scored) -> scalar mean over scored tokens;
    with ``weights`` [B, T] (weight of predicting that position's label), the weighted mean."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()  # [B*(T-1), V]
    shift_labels = labels[:, 1:].reshape(-1)  # [B*(T-1)]
    if weights is None:
        return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE)
    per_token = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="none")  # [B*(T-1)]
    w = weights[:, 1:].reshape(-1).to(per_token.dtype) * (shift_labels != IGNORE)
    return (per_token * w).sum() / w.sum().clamp(min=1e-8)
