"""SpineFM: the T1 and T2 encoders, the synthesizer, MIL pooling and the shared CLIP space.

Slices are encoded by the encoder of their series' sequence class (``T1``/``T2``); ``other``
series go through the synthesizer (or, for the ablation ``router="none"``, through one encoder
alone). Slice features are pooled into a series embedding per class, projected into the shared
space, and series are pooled into case embeddings: one over all series, and one per sequence
class (the tri-modal alignment aligns T1-case<->report and T2-case<->report, which the paper
found better than direct T1<->T2 image alignment). ``forward`` computes no loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml.data.types import SEQUENCE_CLASSES, StudyData
from ml.spinefm.augment import normalize
from ml.spinefm.losses.infonce import ClipLoss
from ml.spinefm.pooling import GatedAttentionPool, pad_bags
from ml.spinefm.registry import create_model, get_preset
from ml.spinefm.synthesizer import Synthesizer


@dataclass
class SpineFMConfig:
    encoder: str = "tiny"  # registry preset of both encoders
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 256  # shared image-text space
    pool_hidden: int = 128
    router: str = "conditioned"  # "conditioned" | "scalar" | "none" (other series use other_fallback)
    router_hidden: int = 64
    other_fallback: str = "T2"  # encoder for "other" series when router == "none"
    text_encoder: str = "minilm"  # alias or local HF folder (BiomedBERT, ...)
    text_pooling: str = "mean"  # "mean" | "cls" (the paper: BiomedBERT CLS)
    text_max_length: int = 256
    text_dim: int = 384  # hidden size of the text encoder
    init_temperature: float = 0.07

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudyBatchOutput:
    """Case embeddings (unnormalised) of a batch of B studies."""

    case: dict[str, torch.Tensor]  # key "all"|"T1"|"T2"|"other" -> [B, E]
    valid: dict[str, torch.Tensor]  # same keys -> [B] bool (study has series of that class)
    series: list[list[torch.Tensor]]  # per study, per kept series: [E]
    slices: list[list[torch.Tensor]]  # per study, per kept series: [S, D] encoder features
    slice_weights: list[list[torch.Tensor]]  # per study, per series: [S] MIL attention
    routes: list[list[str]]  # per study, per series: which encoder/route produced it
    route_weights: list[list[torch.Tensor | None]]  # synthesizer weights [S, depth+2, 2] or None
    text: torch.Tensor | None = None  # [B, E] projected report features, when given
    logit_scale: torch.Tensor | None = None  # scalar: exp of the learned inverse temperature


class SpineFM(nn.Module):
    def __init__(self, cfg: SpineFMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict({c: create_model(cfg.encoder, **cfg.encoder_overrides) for c in ("T1", "T2")})
        preset = get_preset(cfg.encoder, **cfg.encoder_overrides)
        d, e = preset.embed_dim, cfg.embed_dim
        self.img_size = preset.img_size
        self.synthesizer = Synthesizer(preset.depth, d, cfg.router, cfg.router_hidden) if cfg.router != "none" else None
        self.slice_pool = nn.ModuleDict({c: GatedAttentionPool(d, cfg.pool_hidden) for c in SEQUENCE_CLASSES})
        self.series_proj = nn.ModuleDict({c: nn.Linear(d, e) for c in SEQUENCE_CLASSES})
        self.case_pool = GatedAttentionPool(e, cfg.pool_hidden)
        self.text_proj = nn.Linear(cfg.text_dim, e)
        self.contrastive = ClipLoss(cfg.init_temperature)  # holds the learnable temperature only

    # -- routing ---------------------------------------------------------------------------------
    def route(self, sequence_class: str) -> str:
        if sequence_class in ("T1", "T2"):
            return sequence_class
        if self.synthesizer is None:
            return self.cfg.other_fallback
        return f"synthesizer:{self.synthesizer.kind}"

    def encode_slices(
        self, pixels: torch.Tensor, sequence_class: str, chunk: int = 256
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels: [S, 1, H, W] in [0, 1] -> ([S, D] CLS features, routing weights or None)."""
        if pixels.shape[-1] != self.img_size or pixels.shape[-2] != self.img_size:
            pixels = F.interpolate(pixels, size=(self.img_size, self.img_size), mode="bilinear")
        x = normalize(pixels)
        route = self.route(sequence_class)
        feats, weights = [], []
        for i in range(0, x.shape[0], chunk):
            xc = x[i : i + chunk]
            if route.startswith("synthesizer"):
                assert self.synthesizer is not None  # the route names it only when it exists
                out, w = self.synthesizer(self.encoders["T1"], self.encoders["T2"], xc)
                feats.append(out.cls)
                weights.append(w)
            else:
                feats.append(self.encoders[route](xc))
        return torch.cat(feats), (torch.cat(weights) if weights else None)

    def pool_series(self, feats: list[torch.Tensor], sequence_class: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Slice features of n series of one class ([S_i, D] each) -> ([n, E], padded weights)."""
        x, mask = pad_bags(feats)  # [n, S, D], [n, S]
        pooled, w = self.slice_pool[sequence_class](x, mask)  # [n, D]
        return self.series_proj[sequence_class](pooled), w  # [n, E]

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        """Frozen text-encoder features [B, text_dim] -> [B, E]."""
        return self.text_proj(text_features)

    # -- studies ---------------------------------------------------------------------------------
    def forward(
        self, studies: list[StudyData], text_features: torch.Tensor | None = None, chunk: int = 256
    ) -> StudyBatchOutput:
        """Encode a batch of studies (all slices of a class in large batches, then pool) and,
        optionally, their reports' frozen text features [B, text_dim]. Everything trainable is
        touched inside ``forward`` so that DDP tracks it."""
        device = self.text_proj.weight.device
        items = [(si, ri, s) for si, st in enumerate(studies) for ri, s in enumerate(st.series)]
        series_emb: dict[tuple[int, int], torch.Tensor] = {}
        slice_feats: dict[tuple[int, int], torch.Tensor] = {}
        slice_w: dict[tuple[int, int], torch.Tensor] = {}
        route_w: dict[tuple[int, int], torch.Tensor | None] = {}
        for cls in SEQUENCE_CLASSES:
            group = [(si, ri, s) for si, ri, s in items if s.sequence_class == cls]
            if not group:
                continue
            pix = [torch.as_tensor(s.pixels, dtype=torch.float32) for _, _, s in group]
            sizes = [p.shape[0] for p in pix]
            feats, weights = self.encode_slices(torch.cat(pix).unsqueeze(1).to(device), cls, chunk)
            per_series = list(feats.split(sizes))
            rw = list(weights.split(sizes)) if weights is not None else [None] * len(group)
            emb, w = self.pool_series(per_series, cls)
            for j, (si, ri, _) in enumerate(group):
                series_emb[(si, ri)] = emb[j]
                slice_feats[(si, ri)] = per_series[j]
                slice_w[(si, ri)] = w[j, : sizes[j]]
                route_w[(si, ri)] = rw[j]

        e = self.cfg.embed_dim
        case: dict[str, torch.Tensor] = {}
        valid: dict[str, torch.Tensor] = {}
        for key in ("all", *SEQUENCE_CLASSES):
            bags, ok = [], []
            for si, st in enumerate(studies):
                embs = [
                    series_emb[(si, ri)] for ri, s in enumerate(st.series) if key == "all" or s.sequence_class == key
                ]
                ok.append(bool(embs))
                bags.append(torch.stack(embs) if embs else torch.zeros(0, e, device=device))
            x, mask = pad_bags(bags)
            case[key], _ = self.case_pool(x, mask)  # [B, E]
            valid[key] = torch.tensor(ok, device=device)
        keys = [[(si, ri) for ri in range(len(st.series))] for si, st in enumerate(studies)]
        return StudyBatchOutput(
            case=case,
            valid=valid,
            series=[[series_emb[k] for k in ks] for ks in keys],
            slices=[[slice_feats[k] for k in ks] for ks in keys],
            slice_weights=[[slice_w[k] for k in ks] for ks in keys],
            routes=[[self.route(s.sequence_class) for s in st.series] for st in studies],
            route_weights=[[route_w[k] for k in ks] for ks in keys],
            text=None if text_features is None else self.encode_text(text_features.to(device)),
            logit_scale=self.contrastive.scale,
        )

    def freeze_encoders(self, frozen: bool = True) -> None:
        self.encoders.requires_grad_(not frozen)
