"""Helpers of the grounded-draft tests: the agents' calls and a draft's finding sentences."""

from __future__ import annotations

import re

from ml.agents.analysis import ConditionResult
from ml.agents.report.prompt import split_sections
from ml.conditions import CONDITION_KEYS


def calls(present: dict[str, tuple[str, str]]) -> list[ConditionResult]:
    """All 17 calls: the named ones present at (level, side), the rest absent."""
    return [
        ConditionResult(k, 0.9, True, 0.5, level=present[k][0], side=present[k][1])
        if k in present
        else ConditionResult(k, 0.1, False, 0.5)
        for k in CONDITION_KEYS
    ]


def finding_sentences(text: str) -> list[str]:
    """Every sentence of the finding sections and impression items (section headers dropped)."""
    out = []
    for title, body in split_sections(text).items():
        if title in ("", "CLINICAL HISTORY", "TECHNIQUE", "COMPARISON"):
            continue
        for line in body.splitlines():
            line = re.sub(r"^\s*\d+[.)]\s+", "", line.strip())
            out += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", line) if s.strip()]
    return out
