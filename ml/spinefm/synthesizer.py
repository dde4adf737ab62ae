"""The synthesizer: a layer-wise router between the frozen T1 and T2 encoders.

For series that are neither T1 nor T2 (post-contrast, DWI, GRE, unknown), the paper runs both
encoders side by side and, at every layer, mixes the T1 block's and the T2 block's outputs; the
fused state is what *both* encoders' next blocks receive. The released code learns one scalar per
layer, the same for every input. Our default router is input-conditioned: a small MLP looks at
the mean-pooled tokens entering the layer and picks the mixture, so a STIR can lean on the T2
encoder and a post-contrast T1 on the T1 encoder. ``router="scalar"`` keeps the paper's ablation.
"""

from __future__ import annotations

import torch
from torch import nn

from ml.spinefm.backbone import SpineViT, ViTOutput


class ScalarRouter(nn.Module):
    """One learned logit per mixing point; weights (sigmoid(l), 1 - sigmoid(l)) for every input."""

    def __init__(self, n_points: int, dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_points))  # 0 -> 0.5/0.5 at start

    def forward(self, i: int, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, T, D] -> weights [B, 2] (T1, T2)."""
        p = torch.sigmoid(self.logits[i]).expand(tokens.shape[0])
        return torch.stack([p, 1 - p], dim=-1)


class ConditionedRouter(nn.Module):
    """Per mixing point, MLP(mean-pooled tokens) -> softmax over (T1, T2)."""

    def __init__(self, n_points: int, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 2)) for _ in range(n_points)
        )
        for mlp in self.mlps:  # start at the 0.5/0.5 mixture, like the scalar router
            assert isinstance(mlp, nn.Sequential)
            assert isinstance(mlp[-1], nn.Linear)
            nn.init.zeros_(mlp[-1].weight)
            nn.init.zeros_(mlp[-1].bias)

    def forward(self, i: int, tokens: torch.Tensor) -> torch.Tensor:
        summary = self.norm(tokens.mean(dim=1))  # [B, D]
        return torch.softmax(self.mlps[i](summary).float(), dim=-1).to(tokens.dtype)  # [B, 2]


ROUTERS = {"scalar": ScalarRouter, "conditioned": ConditionedRouter}


class Synthesizer(nn.Module):
    """Owns only the router; the encoders are passed in (they belong to ``SpineFM``)."""

    def __init__(self, depth: int, dim: int, router: str = "conditioned", hidden: int = 64) -> None:
        super().__init__()
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {sorted(ROUTERS)}, got {router!r}")
        self.kind = router
        self.depth = depth
        # mixing points: after patch embedding, after each of the depth blocks, after the final norm
        self.router = ROUTERS[router](depth + 2, dim, hidden)

    @staticmethod
    def _mix(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # w: [B, 2]; a, b: [B, T, D]
        return w[:, 0, None, None] * a + w[:, 1, None, None] * b

    def forward(self, t1: SpineViT, t2: SpineViT, x: torch.Tensor) -> tuple[ViTOutput, torch.Tensor]:
        """x: [B, C, H, W] -> (fused token groups, routing weights [B, depth+2, 2])."""
        if t1.depth != self.depth or t2.depth != self.depth:
            raise ValueError("synthesizer depth must match both encoders")
        a, rope1, grid = t1.embed(x)
        b, rope2, _ = t2.embed(x)
        weights = []
        w = self.router(0, 0.5 * (a + b))
        h = self._mix(w, a, b)
        weights.append(w)
        for i in range(self.depth):
            w = self.router(i + 1, h)
            h = self._mix(w, t1.run_block(i, h, rope1), t2.run_block(i, h, rope2))
            weights.append(w)
        w = self.router(self.depth + 1, h)
        h = self._mix(w, t1.final_norm(h), t2.final_norm(h))
        weights.append(w)
        return t1.split(h, grid), torch.stack(weights, dim=1)
