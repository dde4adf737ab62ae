"""Gram anchoring loss (DINOv3 phase 2).

Paper: Siméoni et al., "DINOv3" (2025), Sec. 4. Long SSL schedules degrade dense features: patch
similarities drift although the global objective keeps improving. Gram anchoring regularises the
*pairwise similarity structure* of the student's patch features towards that of an earlier
teacher (the "Gram teacher"), leaving the features themselves free to move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gram_matrix(patches: torch.Tensor) -> torch.Tensor:
    """patches: [B, N, D] -> [B, N, N] cosine-similarity (Gram) matrix of L2-normalised patches."""
    x = F.normalize(patches.float(), dim=-1)
    return x @ x.transpose(1, 2)


def gram_loss(student_patches: torch.Tensor, gram_teacher_patches: torch.Tensor) -> torch.Tensor:
    """Mean squared Frobenius distance between Gram matrices; both inputs [B, N, D]."""
    if student_patches.shape[:2] != gram_teacher_patches.shape[:2]:
        raise ValueError(f"shape mismatch {student_patches.shape} vs {gram_teacher_patches.shape}")
    g_s = gram_matrix(student_patches)  # [B, N, N]
    g_t = gram_matrix(gram_teacher_patches.detach())  # [B, N, N]
    return (g_s - g_t).pow(2).mean()
