"""Report text -> sections -> sentences -> clauses, each with its character span.

Spans index the original text, so evidence handed to the UI is ``text[start:end]`` exactly.
Headers are recognised from a vocabulary (the lexicon's ``sections``) or as an all-caps label at
the start of a line ("SPINAL CANAL:"); a level line such as "L4-5: ..." is not a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&,-]{1,40}?)[ \t]*:[ \t]*", re.MULTILINE)
# A known header alone on its line, without a colon ("IMPRESSION", "Findings").
_BARE_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&-]{1,40}?)[ \t]*$", re.MULTILINE)
# An addendum however it is introduced ("ADDENDUM (12/03): ...", "Addendum by Dr X -").
_ADDENDUM = re.compile(r"^[ \t]*(addendum|amendment)\b[^:\n]{0,60}?(:|\s-\s|$)[ \t]*", re.MULTILINE | re.IGNORECASE)
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


def _section_kind(name: str, sections: dict[str, list[str]]) -> str | None:
    low = name.strip().lower()
    for kind, names in sections.items():
        if low in names:
            return kind
    if name.strip().isupper() and len(low) > 2:
        return "findings"  # an unknown all-caps header is a findings sub-section
    return None


def split_sentences(text: str, sections: dict[str, list[str]]) -> list[Sentence]:
    """Sentences of the report with their section; text before any header counts as findings."""
    # section boundaries: (offset where the section's body starts, kind)
    marks: list[tuple[int, int, str]] = []
    for m in _HEADER.finditer(text):
        kind = _section_kind(m.group(1), sections)
        if kind is not None:
            marks.append((m.start(), m.end(), kind))
    for m in _BARE_HEADER.finditer(text):
        low = m.group(1).strip().lower()
        kind = next((k for k, names in sections.items() if low in names), None)
        if kind is not None and not any(a <= m.start() < b for a, b, _ in marks):
            marks.append((m.start(), m.end(), kind))
    if "addendum" in sections:
        for m in _ADDENDUM.finditer(text):
            marks = [mk for mk in marks if not (m.start() <= mk[0] < m.end())]
            marks.append((m.start(), m.end(), "addendum"))
    marks.sort()
    bodies: list[tuple[int, int, str]] = []
    if not marks or marks[0][0] > 0:
        bodies.append((0, marks[0][0] if marks else len(text), "findings"))
    for i, (_, body_start, kind) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        bodies.append((body_start, end, kind))
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
