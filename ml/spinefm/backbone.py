"""SpineViT: timm's DINOv3 ViT (RoPE, register tokens) with a masked-token forward.

We reuse the architecture of ``timm.models.eva`` (``vit_*_patch16_dinov3``) so that real DINOv3
weights and our own SpineFM weights load into the same module tree. What timm does not offer is
the iBOT input masking (masked patches replaced by a learned token *before* the blocks), and a
block-by-block entry point that the synthesizer needs to interleave two encoders; both live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from timm.models.eva import Eva


@dataclass
class ViTOutput:
    """Token groups after the final norm. B=batch, R=register tokens, N=patches, D=width."""

    cls: torch.Tensor  # [B, D]
    registers: torch.Tensor  # [B, R, D]
    patches: torch.Tensor  # [B, N, D]
    grid: tuple[int, int]  # (h, w) patch grid of this input


class SpineViT(nn.Module):
    """A DINOv3-style ViT over single- (or three-) channel MR slices.

    ``forward`` returns the CLS feature (what most callers want); ``forward_tokens`` returns all
    token groups and accepts an iBOT patch mask.
    """

    def __init__(self, vit: Eva, in_chans: int = 1) -> None:
        super().__init__()
        self.vit = vit  # a timm Eva built with dynamic_img_size=True, num_classes=0
        self.in_chans = in_chans
        self.embed_dim: int = vit.embed_dim
        self.num_prefix_tokens: int = vit.num_prefix_tokens
        self.num_registers: int = self.num_prefix_tokens - 1
        self.patch_size: int = vit.patch_embed.patch_size[0]
        # learned stand-in for masked patches (iBOT); unused at inference
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, self.embed_dim))

    @property
    def blocks(self) -> nn.ModuleList:
        return self.vit.blocks

    @property
    def depth(self) -> int:
        return len(self.vit.blocks)

    def _adapt_channels(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, H, W]; MR slices are single channel, DINOv3 checkpoints expect RGB
        if x.shape[1] == self.in_chans:
            return x
        if x.shape[1] == 1:
            return x.expand(-1, self.in_chans, -1, -1)
        raise ValueError(f"expected {self.in_chans} or 1 input channels, got {x.shape[1]}")

    def embed(
        self, x: torch.Tensor, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
        """Patchify, mask, prepend CLS+registers. Returns (tokens [B, 1+R+N, D], rope, grid)."""
        x = self._adapt_channels(x)
        x = self.vit.patch_embed(x)  # [B, h, w, D] (dynamic_img_size => NHWC)
        grid = (x.shape[1], x.shape[2])
        if masks is not None:
            # masks: [B, h*w] bool, True = masked patch
            m = masks.view(x.shape[0], grid[0], grid[1], 1)
            x = torch.where(m, self.mask_token.to(x.dtype), x)
        tokens, rope = self.vit._pos_embed(x)  # [B, 1+R+N, D]
        tokens = self.vit.norm_pre(tokens)
        return tokens, rope, grid

    def run_block(self, i: int, x: torch.Tensor, rope: torch.Tensor | None) -> torch.Tensor:
        """Apply block ``i``: [B, T, D] -> [B, T, D]."""
        return self.vit.blocks[i](x, rope=rope)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.norm(x)

    def split(self, x: torch.Tensor, grid: tuple[int, int]) -> ViTOutput:
        p = self.num_prefix_tokens
        return ViTOutput(cls=x[:, 0], registers=x[:, 1:p], patches=x[:, p:], grid=grid)

    def forward_tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> ViTOutput:
        """x: [B, C, H, W] -> token groups; ``masks`` [B, N] bool marks iBOT-masked patches."""
        tokens, rope, grid = self.embed(x, masks)
        use_ckpt = self.vit.grad_checkpointing and self.training and torch.is_grad_enabled()
        for i in range(self.depth):
            if use_ckpt:  # trade compute for memory on large presets
                tokens = checkpoint(self.run_block, i, tokens, rope, use_reentrant=False)
            else:
                tokens = self.run_block(i, tokens, rope)
        return self.split(self.final_norm(tokens), grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> CLS feature [B, D]."""
        return self.forward_tokens(x).cls

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vit.set_grad_checkpointing(enable)
