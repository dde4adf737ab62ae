"""Label extraction: ternary labels for the 17 conditions from report text.

One interface, several back-ends::

    from ml.agents.labels import extract_labels
    res = extract_labels(report_text)                                  # rules (default, runs anywhere)
    res = extract_labels(report_text, backend="llm", model="/path/to/hf-causal-lm")

``res.labels`` maps all 17 ``CONDITION_KEYS`` to -1/0/1, ``res.evidence[key]`` is the sentence
that decided a non-absent label (exactly as in the text; ``res.spans[key]`` is its offsets).
"""

from __future__ import annotations

from typing import Any

from ml.agents.labels.result import LabelResult

BACKENDS = ("rules", "llm")


def extract_labels(text: str, backend: str = "rules", **kw: Any) -> LabelResult:
    """Extract labels with the named back-end.

    rules: ``lexicon_version`` (int, default ``rules.DEFAULT_LEXICON``; older versions stay loadable).
    llm: ``model`` (path of a local HF causal LM, required), ``prompt_version`` ("v1"),
    ``batch_size``, ``device``; see ``ml.agents.labels.llm.LLMExtractor`` (load it once and call
    ``.extract`` / ``.extract_many`` when labelling many reports).
    """
    if backend == "rules":
        from ml.agents.labels.rules import extract_rules

        return extract_rules(text, **kw)
    if backend == "llm":
        from ml.agents.labels.llm import extractor_for

        model = kw.pop("model", None)
        if not model:
            raise ValueError("backend='llm' needs model=<path of a local HF causal LM>")
        return extractor_for(str(model), **kw).extract(text)
    raise ValueError(f"unknown label backend {backend!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LabelResult", "extract_labels"]
