"""Projection heads for self-supervised pretraining (DINO CLS head, iBOT patch head).

DINO (Caron et al. 2021) / DINOv2 (Oquab et al. 2023): an MLP to a low-dimensional bottleneck,
L2-normalised, then cosine similarity with K learned prototypes. Normalising the prototype rows
(instead of timm/torch weight-norm parametrisations) keeps the logits bounded and the state dict
plain, which matters for safetensors and FSDP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrototypeHead(nn.Module):
    """[*, D] features -> [*, K] prototype logits (cosine similarities, unscaled)."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, layers: int = 3
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        mlp: list[nn.Module] = []
        for i in range(len(dims) - 1):
            mlp.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mlp.append(nn.GELU())
        self.mlp = nn.Sequential(*mlp)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.normal_(self.prototypes, std=bottleneck_dim**-0.5)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)  # [*, bottleneck]
        return z @ F.normalize(self.prototypes, dim=-1).t()  # [*, K]
