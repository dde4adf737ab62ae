"""The report vocabulary of a pretrained decoder: the output side limited to the tokens reports use.

Why: Gemma-3's tokenizer has 262,144 tokens, and its tied embedding / output matrix holds about
168 M of the model's 270 M parameters. A spine report uses a few thousand of those tokens. On a
CPU the output projection over all 262k tokens is most of the cost of each generated token, and in
training the logits alone are ``B x T x 262k`` floats (2.3 GB for two 1,100-token sequences).
Restricting the *output* to the tokens of the report corpus and of the training targets cuts both
by more than an order of magnitude, and it means the writer can only emit tokens that appear in
reports (no other scripts, no code).

The *input* keeps the full vocabulary: prompt tokens (a prior reader's report, a history from the
DICOM request) are embedded with the decoder's own embedding before they reach the model, so
nothing is lost on the way in. Inside the decoder, generated tokens are "local" ids (rows of the
restricted output matrix); :class:`LocalEmbedding` maps them back through the same full embedding,
so Gemma's scaled embedding is kept exactly and the local model computes, for every kept token,
the same logit as the full model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

VOCAB_FILE = "vocab.json"


class ReportVocabulary:
    """A sorted set of full-vocabulary token ids; local id ``i`` is ``ids[i]``."""

    def __init__(self, ids: Iterable[int]) -> None:
        self.ids: list[int] = sorted({int(i) for i in ids})
        if not self.ids:
            raise ValueError("a report vocabulary needs at least one token")
        self._local = {t: i for i, t in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, full_id: object) -> bool:
        return full_id in self._local

    @classmethod
    def build(
        cls, tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], always: Iterable[int | None] = ()
    ) -> ReportVocabulary:
        """Every token of ``texts`` (as the agent tokenizes them: no special tokens added) plus the
        ids in ``always`` (bos / eos / pad); ``None`` entries are skipped."""
        ids: set[int] = {int(i) for i in always if i is not None}
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == 256:
                ids.update(_token_ids(tokenizer, batch))
                batch = []
        if batch:
            ids.update(_token_ids(tokenizer, batch))
        return cls(ids)

    def local(self, full_ids: Sequence[int], missing: int | None = None) -> list[int]:
        """Full ids -> local ids; a token outside the vocabulary becomes ``missing`` (or raises)."""
        out = []
        for t in full_ids:
            i = self._local.get(int(t), missing)
            if i is None:
                raise KeyError(f"token {t} is not in the report vocabulary")
            out.append(i)
        return out

    def full(self, local_ids: Sequence[int]) -> list[int]:
        return [self.ids[int(i)] for i in local_ids]

    def save(self, folder: str | Path) -> None:
        (Path(folder) / VOCAB_FILE).write_text(json.dumps({"ids": self.ids}))

    @classmethod
    def load(cls, folder: str | Path) -> ReportVocabulary | None:
        """The folder's vocabulary, or None for an agent that decodes over the full vocabulary."""
        path = Path(folder) / VOCAB_FILE
        return cls(json.loads(path.read_text())["ids"]) if path.exists() else None


def _token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> set[int]:
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {int(t) for row in enc for t in row}


class LocalEmbedding(nn.Module):
    """Embeds local ids through the decoder's full input embedding (``[..] -> [.., H]``)."""

    ids: torch.Tensor

    def __init__(self, full: nn.Embedding, ids: torch.Tensor) -> None:
        super().__init__()
        self.full = full
        self.register_buffer("ids", ids, persistent=False)
        self.embedding_dim = int(full.weight.shape[1])

    def forward(self, local_ids: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.full(self.ids[local_ids]))


def restrict_decoder(decoder: PreTrainedModel, vocab: ReportVocabulary) -> nn.Embedding:
    """Limit ``decoder``'s output (and its own input embedding) to ``vocab``; returns the full
    input embedding, which prompt tokens (full ids) still go through.

    The output matrix becomes a frozen copy of the kept rows of the tied embedding, so a kept
    token's logit is unchanged (softcapping, where a model has it, is elementwise and applies after).
    """
    # every preset's decoder (Llama, Gemma-3's scaled subclass) has an nn.Embedding there
    full = cast(nn.Embedding, decoder.get_input_embeddings())
    weight = full.weight  # [V, H]
    ids = torch.tensor(vocab.ids, dtype=torch.long, device=weight.device)
    head = nn.Linear(weight.shape[1], len(vocab), bias=False, device=weight.device, dtype=weight.dtype)
    head.weight = nn.Parameter(weight.detach()[ids].clone(), requires_grad=False)  # [K, H]
    decoder.config.tie_word_embeddings = False  # never re-tie the [K, H] head to the [V, H] embedding
    decoder.set_output_embeddings(head)
    decoder.set_input_embeddings(LocalEmbedding(full, ids))
    decoder.config.vocab_size = len(vocab)
    return full
