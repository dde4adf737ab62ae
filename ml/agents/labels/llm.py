"""LLM label extraction: one prompt per condition (``prompts/<version>/<condition>.txt``), any
local HF causal LM (the paper used Llama-3.3-70B and Phi-4; Gemma-3-270M runs on CPU here).

Two ways to read the answer:
- ``method="generate"`` (default): greedy-generate a few tokens and parse them with
  ``parse_answer`` (present / absent / uncertain and their common variants); an answer that
  cannot be parsed becomes -1 with confidence 0 and is counted in ``LLMExtractor.unparsed``.
- ``method="score"``: compare the model's likelihood of the three answer words after the
  prompt (constrained decoding); always parseable, confidence = the softmax over the three.

The 17 prompts of a report (and several reports) run as one left-padded batch. Evidence for a
non-absent label is the sentence the rule extractor's lexicon finds for that condition (the LLM
gives no span); when it finds none the evidence is left out.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch

from ml.agents.labels.result import LabelResult
from ml.conditions import CONDITION_KEYS

log = logging.getLogger(__name__)

PROMPT_DIR = Path(__file__).parent / "prompts"
ANSWERS = {"present": 1, "absent": 0, "uncertain": -1}

_NEG = re.compile(r"^(absent|no|none|negative|not\s+(present|seen|described|mentioned|identified)|normal|false|0)\b")
_UNC = re.compile(
    r"^(uncertain|unsure|unclear|possible|possibly|maybe|equivocal|indeterminate|questionable|"
    r"probable|borderline|cannot\s+(be\s+)?(determined|excluded|exclude)|can't\s+tell|-1)\b"
)
_POS = re.compile(r"^(present|yes|positive|true|definite|described|seen|1)\b")


def parse_answer(text: str) -> int | None:
    """An LLM's answer -> 1 / 0 / -1, or None when it says nothing recognisable.

    Reads the first answer-like word after stripping quotes, markdown, "Answer:" prefixes and
    punctuation; "not present" is absent, "possibly present" is uncertain.
    """
    t = text.strip().lower()
    t = re.sub(r"^[\s\"'`*_>#:\-\[\(]+", "", t)
    t = re.sub(r"^(the\s+)?(final\s+)?answer\s*(is)?\s*[:=\-]?\s*", "", t)
    t = re.sub(r"^[\s\"'`*_:\-\[\(]+", "", t)
    if not t:
        return None
    for pattern, value in ((_UNC, -1), (_NEG, 0), (_POS, 1)):
        if pattern.match(t):
            return value
    return None


@functools.cache
def load_prompts(version: str = "v1") -> dict[str, str]:
    folder = PROMPT_DIR / version
    if not folder.is_dir():
        known = sorted(p.name for p in PROMPT_DIR.iterdir() if p.is_dir())
        raise FileNotFoundError(f"no prompt version {version!r}; known: {', '.join(known)}")
    prompts = {}
    for key in CONDITION_KEYS:
        path = folder / f"{key}.txt"
        if not path.exists():
            raise FileNotFoundError(f"prompt {path} is missing")
        text = path.read_text().rstrip()
        if "{report}" not in text:
            raise ValueError(f"prompt {path} has no {{report}} placeholder")
        prompts[key] = text
    return prompts


class LLMExtractor:
    """A loaded causal LM + prompts; ``extract`` / ``extract_many`` return ``LabelResult``s."""

    def __init__(
        self,
        model_path: str,
        prompt_version: str = "v1",
        batch_size: int = 4,
        method: str = "generate",
        max_new_tokens: int = 4,
        device: str = "cpu",
        max_report_chars: int = 6000,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if method not in ("generate", "score"):
            raise ValueError(f"method must be 'generate' or 'score', got {method!r}")
        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"LLM folder {path} does not exist")
        self.prompts = load_prompts(prompt_version)
        self.tok = AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        # transformers decorates PreTrainedModel.to with functools.wraps(nn.Module.to), and typeshed's
        # _Wrapped keeps the unbound signature, so mypy reads the device as the ``self`` argument.
        model.to(device)  # type: ignore[arg-type]
        self.model = model.eval()
        self.device = device
        self.batch_size = batch_size
        self.method = method
        self.max_new_tokens = max_new_tokens
        self.max_report_chars = max_report_chars
        self.name = f"llm/{path.name}/prompts-{prompt_version}/{method}"
        self.unparsed = 0
        # first token of " present" / " absent" / " uncertain" (the prompt ends with "Answer:")
        self._answer_ids = {w: self.tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in ANSWERS}

    def _prompt(self, key: str, report: str) -> str:
        return self.prompts[key].replace("{report}", report.strip()[: self.max_report_chars])

    @torch.no_grad()
    def _answer(self, prompts: list[str]) -> list[tuple[int, float, str]]:
        """(label, confidence, raw answer) per prompt."""
        out: list[tuple[int, float, str]] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = prompts[i : i + self.batch_size]
            enc = self.tok(chunk, return_tensors="pt", padding=True).to(self.device)
            if self.method == "score":
                # only the last position's logits: a 262k vocabulary over the whole prompt would not fit
                logits = self.model(**enc, logits_to_keep=1).logits[:, -1]  # [B, V] (left padding)
                ids = torch.tensor(list(self._answer_ids.values()), device=logits.device)
                probs = torch.softmax(logits[:, ids].float(), dim=-1)  # [B, 3]
                for row in probs:
                    j = int(row.argmax())
                    word = list(ANSWERS)[j]
                    out.append((ANSWERS[word], float(row[j]), word))
            else:
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tok.pad_token_id,
                )
                new = gen[:, enc["input_ids"].shape[1] :]
                for raw in self.tok.batch_decode(new, skip_special_tokens=True):
                    label = parse_answer(raw)
                    if label is None:
                        self.unparsed += 1
                        out.append((-1, 0.0, raw))
                    else:
                        out.append((label, 0.7, raw))
        return out

    def extract_many(self, texts: list[str]) -> list[LabelResult]:
        from ml.agents.labels.rules import find_mentions, load_lexicon

        t0 = time.perf_counter()
        prompts = [self._prompt(k, t) for t in texts for k in CONDITION_KEYS]
        answers = self._answer(prompts)
        lex = load_lexicon()
        results = []
        for n, text in enumerate(texts):
            rows = answers[n * len(CONDITION_KEYS) : (n + 1) * len(CONDITION_KEYS)]
            labels = {k: r[0] for k, r in zip(CONDITION_KEYS, rows, strict=True)}
            conf = {k: r[1] for k, r in zip(CONDITION_KEYS, rows, strict=True)}
            evidence: dict[str, str] = {}
            spans: dict[str, tuple[int, int]] = {}
            mentions = find_mentions(text, lex)
            for k, v in labels.items():
                if v == 0:
                    continue
                hit = next((m for m in mentions if m.condition == k and m.polarity == v), None)
                hit = hit or next((m for m in mentions if m.condition == k), None)
                if hit is not None:
                    evidence[k] = hit.sentence.text
                    spans[k] = (hit.sentence.start, hit.sentence.end)
            results.append(LabelResult(labels, evidence, conf, self.name, spans))
        log.info("LLM labels: %d reports in %.1f s", len(texts), time.perf_counter() - t0)
        return results

    def extract(self, text: str) -> LabelResult:
        if not isinstance(text, str):
            raise TypeError(f"report text must be str, got {type(text).__name__}")
        return self.extract_many([text])[0]


@functools.lru_cache(maxsize=2)
def _cached(model: str, **kw: Any) -> LLMExtractor:
    return LLMExtractor(model, **kw)


def extractor_for(model: str, **kw: Any) -> LLMExtractor:
    """A loaded extractor, cached per (model, options) so repeated calls do not reload weights."""
    return _cached(model, **kw)
