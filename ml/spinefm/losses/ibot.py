"""iBOT masked-patch self-distillation loss.

Paper: Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer" (ICLR 2022), as used in
DINOv2/DINOv3. The student sees a global crop with some patches replaced by a mask token and must
predict the teacher's (Sinkhorn-centred) prototype distribution of those patches, which the
teacher computed from the unmasked crop. This teaches dense, local features (what segmentation-
like tasks such as localising a disc level rely on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IBOTPatchLoss(nn.Module):
    def __init__(self, student_temp: float = 0.1) -> None:
        super().__init__()
        self.student_temp = student_temp

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """student_logits, teacher_probs: [M, K] for the M masked patches of the batch;
        weights: [M], 1/(masked patches of that image), so each image counts equally.
        Returns the per-image mean cross-entropy, averaged over images."""
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)  # [M, K]
        ce = -(teacher_probs.float() * log_p).sum(dim=-1)  # [M]
        n_images = weights.sum().clamp_min(1e-6)  # sum of 1/m_i over the m_i patches = #images
        return (ce * weights).sum() / n_images
