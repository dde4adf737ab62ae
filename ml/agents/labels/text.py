"""Report text -> sections -> sentences -> clauses, each with its character span.

Spans index the original text, so evidence handed to the UI is ``text[start:end]`` exactly.
Sections come from the report's one splitter (``ml.report_sections.split_report``), which also
knows the lexicon's ``sections`` words; a header's kind is looked up in the lexicon (an unknown
capitalised header is a findings sub-section), and a level line such as "L4-5: ..." is not a
header but part of the section it is written in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ml.report_sections import ADDENDUM, Section, split_report

# Sentence ends, but not after an abbreviation that radiologists write with a full stop.
_SENT_END = re.compile(
    r"(?<=[.!?])(?<!\s\?)(?<!^\?)(?<!\(\?)(?<!\bvs\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bapprox\.)(?<!\bcf\.)(?<!\bDr\.)\s+(?=\S)|\n+",
    re.IGNORECASE | re.MULTILINE,
)
_LIST_ITEM = re.compile(r"^\s*(\d+[.)]|[-*•])\s+")


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int
    end: int
    section: str  # "history" | "technique" | "comparison" | "impression" | "findings" | "addendum"


def _section_kind(section: Section, sections: dict[str, list[str]]) -> str:
    """The lexicon's kind of a header: by its words as written, else by its canonical title; an
    addendum is "addendum"; any other header is a findings sub-section."""
    if section.title == ADDENDUM and "addendum" in sections:
        return "addendum"
    for name in (section.label, section.title):
        low = " ".join(name.split()).lower()
        for kind, names in sections.items():
            if low in names:
                return kind
    return "findings"


def split_sentences(text: str, sections: dict[str, list[str]]) -> list[Sentence]:
    """Sentences of the report with their section; text before any header counts as findings."""
    words = [n for names in sections.values() for n in names]
    bodies = [
        (s.body_start, s.end, _section_kind(s, sections) if s.title else "findings")
        for s in split_report(text, extra=words, addendum="addendum" in sections)
    ]
    out: list[Sentence] = []
    for a, b, kind in bodies:
        pos = a
        chunk = text[a:b]
        for piece_m in [*_SENT_END.finditer(chunk), None]:
            stop = a + piece_m.start() if piece_m is not None else b
            piece = text[pos:stop]
            lead = _LIST_ITEM.match(piece)
            s = pos + (lead.end() if lead else len(piece) - len(piece.lstrip()))
            e = stop - (len(piece) - len(piece.rstrip()))
            if e > s:
                out.append(Sentence(text[s:e], s, e, kind))
            if piece_m is not None:
                pos = a + piece_m.end()
    return out


def clauses(sentence: Sentence) -> list[tuple[int, int]]:
    """Clause spans (relative to the sentence) split at ';' and at a level label ("L4-5:")."""
    out: list[tuple[int, int]] = []
    start = 0
    for m in re.finditer(r";", sentence.text):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(sentence.text)))
    return [(a, b) for a, b in out if sentence.text[a:b].strip()]
