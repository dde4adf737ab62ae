"""Provenance of a draft's sentences: which agent call each finding sentence states, and which
sentences of a report as the reader has it now are the AI's and which the reader typed.

Why text matching and not character offsets: the reader edits the report (one section, a
sentence here and there) and offsets move with every keystroke; a sentence kept word for word
is still the AI's sentence, and still states the agent call it stated in the draft. So a link is
keyed by the sentence's text (whitespace collapsed, impression numbering dropped), and survives
any edit that leaves that sentence as it was.

The sentences are read back with the label extractor's public ``extract_labels`` (the same
reading the consistency check applies to every draft), one sentence at a time, and each
non-absent label is linked to the agents' call for that condition (level, side, probability).
The viewer cuts sentences the same way (``ohif-extension/src/provenance.ts``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ml.agents.analysis import ConditionResult
from ml.agents.report.consistency import CHECKED_SECTIONS
from ml.report_sections import split_report

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\[(\"']?[A-Z0-9])")  # as the consistency check cuts sentences
_ITEM = re.compile(r"^\s*\d+[.)]\s+")
_SPACE = re.compile(r"\s+")


@dataclass
class SentenceLink:
    """A finding sentence of the draft and the agent call it states (one per condition stated)."""

    section: str
    sentence: str
    condition: str
    level: str  # the agents' level for the condition ("" when not localised)
    side: str
    probability: float
    present: bool  # the agents' call (a grounded draft states only present ones)
    stated: int  # 1 stated, -1 hedged, as the label extractor reads the sentence

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class AnnotatedSentence:
    """A sentence of the current text: ``origin`` "ai" when it is a draft sentence word for
    word, "typed" otherwise; ``conditions`` the agent calls an AI sentence states."""

    section: str
    sentence: str
    origin: str
    conditions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def normalise(sentence: str) -> str:
    """The matching key of a sentence: impression numbering dropped, whitespace collapsed."""
    return _SPACE.sub(" ", _ITEM.sub("", sentence)).strip()


def report_sentences(text: str) -> list[tuple[str, str]]:
    """(section, sentence) for every sentence of ``text``, in order: each line of each section
    cut at sentence ends; the preamble's section is ""."""
    out: list[tuple[str, str]] = []
    for piece in split_report(text):
        section, body = piece.title, piece.body
        for line in body.splitlines():
            line = _ITEM.sub("", line.strip())
            out.extend((section, p.strip()) for p in _SPLIT.split(line) if p.strip())
    return out


def sentence_links(text: str, conditions: Sequence[ConditionResult]) -> list[SentenceLink]:
    """The finding sentences of ``text`` (FINDINGS sections and IMPRESSION) linked to the agent
    call of each condition they state or hedge. A condition without an agent call gets no link;
    normal and negated sentences get none."""
    from ml.agents.labels import extract_labels

    by_key = {c.condition: c for c in conditions}
    links: list[SentenceLink] = []
    for section, sentence in report_sentences(text):
        if section not in CHECKED_SECTIONS:
            continue
        for key, value in extract_labels(sentence).labels.items():
            c = by_key.get(key)
            if value == 0 or c is None:
                continue
            links.append(
                SentenceLink(section, normalise(sentence), key, c.level, c.side, round(c.probability, 4), c.present,
                             value)
            )  # fmt: skip
    return links


def annotate(current: str, draft: str, links: Sequence[SentenceLink]) -> list[AnnotatedSentence]:
    """Every sentence of ``current`` marked "ai" (identical to a sentence of ``draft``) or
    "typed", an AI sentence with the conditions ``links`` give its text. Sections are not part
    of the key: a draft sentence the reader moved is still the AI's."""
    drafted = {normalise(s) for _, s in report_sentences(draft)}
    linked: dict[str, list[str]] = {}
    for link in links:
        linked.setdefault(link.sentence, []).append(link.condition)
    out: list[AnnotatedSentence] = []
    for section, sentence in report_sentences(current):
        key = normalise(sentence)
        ai = key in drafted
        out.append(AnnotatedSentence(section, key, "ai" if ai else "typed", linked.get(key, []) if ai else []))
    return out


def check_summary(report_check: dict[str, object]) -> dict[str, int]:
    """What the consistency check did, counted by action (removed, cut, fixed_level, fixed_side,
    added, replaced): the reader's one-line "AI draft checked" note."""
    counts: dict[str, int] = {}
    changes = report_check.get("changes")
    for change in changes if isinstance(changes, list) else []:
        if isinstance(change, dict) and change.get("action"):
            counts[str(change["action"])] = counts.get(str(change["action"]), 0) + 1
    return counts


__all__ = ["AnnotatedSentence", "SentenceLink", "annotate", "check_summary", "normalise", "report_sentences",
           "sentence_links"]  # fmt: skip
