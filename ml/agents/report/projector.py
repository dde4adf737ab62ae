"""Attention-pooling projector: slice features of T1 and T2 series -> 64 image tokens.

Why attention pooling (and not LLaVA's per-patch MLP): a study has a variable number of series
and slices (tens to hundreds), the decoder wants a fixed, short visual prefix. 64 learned queries
cross-attend over all slices of all T1 and T2 series (with a sequence-class embedding and a
slice-position embedding so the queries can tell T1 from T2 and left from right), then a 2-layer
MLP maps each pooled query into the decoder's hidden size (Perceiver-resampler / Q-Former style).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ml.agents.report.config import ProjectorConfig


class AttentionPoolProjector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, hidden_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size = hidden_size
        self.inp = nn.Sequential(nn.LayerNorm(cfg.slice_dim), nn.Linear(cfg.slice_dim, cfg.dim))
        self.seq_embed = nn.Embedding(2, cfg.dim)  # 0 = T1, 1 = T2
        self.pos_embed = nn.Embedding(cfg.max_slices, cfg.dim)
        self.queries = nn.Parameter(torch.randn(cfg.n_queries, cfg.dim) * 0.02)
        self.attn = nn.MultiheadAttention(cfg.dim, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(
            nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
        )

    def pack(
        self, batch: list[tuple[list[np.ndarray], list[np.ndarray]]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stack variable-length studies: features [B, N, D], seq ids [B, N], positions [B, N], pad mask [B, N]."""
        rows = []
        for t1, t2 in batch:
            feats, seq, pos = [], [], []
            for cls_id, series in ((0, t1), (1, t2)):
                for s in series:
                    a = np.asarray(s, dtype=np.float32)
                    if a.ndim != 2 or a.shape[1] != self.cfg.slice_dim:
                        raise ValueError(
                            f"slice features must be [S, {self.cfg.slice_dim}] arrays, got shape {a.shape}"
                        )
                    a = a[: self.cfg.max_slices]
                    feats.append(a)
                    seq.append(np.full(len(a), cls_id))
                    pos.append(np.arange(len(a)))
            if not feats:
                raise ValueError("the report agent needs at least one T1 or T2 series with slices")
            rows.append((np.concatenate(feats), np.concatenate(seq), np.concatenate(pos)))
        n = max(len(r[0]) for r in rows)
        b = len(rows)
        x = torch.zeros(b, n, self.cfg.slice_dim)
        sq = torch.zeros(b, n, dtype=torch.long)
        ps = torch.zeros(b, n, dtype=torch.long)
        pad = torch.ones(b, n, dtype=torch.bool)  # True = padding (ignored by attention)
        for i, (f, s, p) in enumerate(rows):
            x[i, : len(f)] = torch.from_numpy(f)
            sq[i, : len(f)] = torch.from_numpy(s)
            ps[i, : len(f)] = torch.from_numpy(p)
            pad[i, : len(f)] = False
        return x.to(device), sq.to(device), ps.to(device), pad.to(device)

    def forward(self, x: torch.Tensor, seq: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], seq/pos [B, N] long, pad [B, N] bool -> image tokens [B, n_queries, hidden]."""
        kv = self.inp(x) + self.seq_embed(seq) + self.pos_embed(pos)  # [B, N, dim]
        q = self.norm_q(self.queries).unsqueeze(0).expand(x.shape[0], -1, -1)  # [B, Q, dim]
        pooled, _ = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)  # [B, Q, dim]
        return self.mlp(pooled + q)  # [B, Q, hidden]
