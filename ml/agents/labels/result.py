"""``LabelResult``: what every label-extraction back-end returns.

The review app stores it (``LabelExtraction`` rows) and shows the evidence to annotators, so
evidence strings are exact substrings of the report (``text[a:b] == evidence[key]`` for the
span in ``spans``) that a UI can highlight without re-searching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ml.conditions import CONDITION_KEYS


@dataclass
class LabelResult:
    labels: dict[str, int]  # all 17 CONDITION_KEYS -> -1 uncertain | 0 absent | 1 present
    evidence: dict[str, str]  # condition -> the sentence that decided it (only for decided, mentioned ones)
    confidence: dict[str, float]  # all 17 keys -> [0, 1]
    extractor: str  # name + version, e.g. "rules/lexicon-v1"
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # condition -> (start, end) of evidence

    def __post_init__(self) -> None:
        missing = set(CONDITION_KEYS) - set(self.labels)
        extra = set(self.labels) - set(CONDITION_KEYS)
        if missing or extra:
            raise ValueError(f"labels must have exactly the 17 condition keys; missing {missing}, extra {extra}")
        bad = {k: v for k, v in self.labels.items() if v not in (-1, 0, 1)}
        if bad:
            raise ValueError(f"labels must be -1, 0 or 1, got {bad}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spans"] = {k: list(v) for k, v in self.spans.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelResult:
        data = dict(data)
        data["spans"] = {k: (int(v[0]), int(v[1])) for k, v in data.get("spans", {}).items()}
        return cls(**data)
