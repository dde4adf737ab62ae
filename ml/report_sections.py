"""Report text -> sections: the one definition of a report section header.

Every consumer cuts a report with ``split_report``: the server's per-section edit distance
(``reviewer.research.metrics``), the label extractor (``ml.agents.labels.text``), the Medical Report
Agent (``ml.agents.report.prompt``) and, through the section titles the viewer's study context
carries (``viewer_vocabulary``), the viewer's section editor, which applies the same three
rules in TypeScript (``ohif-extension/src/reportText.ts``). A section a reader edits in the
viewer is therefore the section whose edit distance the server stores.

A header is, at the start of a line (leading spaces allowed):

1. a label of letters, spaces and ``/&,-`` followed by a colon (``"IMPRESSION:"``,
   ``"Neural foramina:"``), when the label is a known title or alias (any case) or is written
   in capitals (at least three characters: an unknown capitalised header is its own section);
2. a known title or alias alone on its line, without a colon (``"IMPRESSION"``, ``"Findings"``);
3. an addendum however it is introduced (``"ADDENDUM (12/03): ..."``, ``"Addendum by Dr X -"``).

A level line such as ``"L4-5: mild disc bulge"`` is *not* a header (labels have no digits): it
belongs to the section it is written in, normally DISCS. Numbered list items ("1. ...") are not
headers either.

Pieces keep their header text exactly, so ``"".join(s.head + s.body for s in sections) == text``:
editing one section never reformats another. Titles are the canonical upper-case names of
``REPORT_SECTIONS`` (``"IMPRESSION"``); ``section_key`` derives the stable lower-case key that
stored edit distances and exports use (``"impression"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ml.conditions import REPORT_SECTIONS

# Header words other reports use for a template section (looked up case-insensitively), and two
# sections the template does not write but readers do (FINDINGS, ADDENDUM).
ALIASES: dict[str, str] = {
    "HISTORY": "CLINICAL HISTORY",
    "INDICATION": "CLINICAL HISTORY",
    "INDICATIONS": "CLINICAL HISTORY",
    "CLINICAL INFORMATION": "CLINICAL HISTORY",
    "CLINICAL INDICATION": "CLINICAL HISTORY",
    "PROTOCOL": "TECHNIQUE",
    "COMPARISONS": "COMPARISON",
    "CONCLUSION": "IMPRESSION",
    "CONCLUSIONS": "IMPRESSION",
    "FINDINGS": "FINDINGS",
    "ADDENDUM": "ADDENDUM",
}

ADDENDUM = "ADDENDUM"

# Rule 1: "LABEL:" (letters, no digits: "L4-5:" never matches); the head takes the rest of the
# line's blanks and the line break when nothing follows the colon.
_COLON = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&,-]{1,40}?)[ \t]*:[ \t]*\n?", re.MULTILINE)
# Rule 2: a known title alone on its line.
_BARE = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&-]{1,40}?)[ \t]*(?:\n|$)", re.MULTILINE)
# Rule 3: an addendum, whatever follows the word up to a colon, " - " or the end of the line.
_ADDENDUM = re.compile(r"^[ \t]*(addendum|amendment)\b[^:\n]{0,60}?(:|\s-\s|$)[ \t]*\n?", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Section:
    """One piece of a report: ``head`` (the header exactly as written, "" for the text before
    the first header) and ``body``, with ``start`` / ``body_start`` / ``end`` offsets into the
    report. ``title`` is the canonical title ("IMPRESSION"), the capitalised label of an unknown
    header, or "" before the first header; ``label`` is the header's words as written."""

    title: str
    label: str
    head: str
    body: str
    start: int
    body_start: int
    end: int


def _canonical(label: str) -> str:
    return " ".join(label.split()).upper()


def vocabulary(extra: Iterable[str] = ()) -> dict[str, str]:
    """Known header words (upper case) -> canonical title: the template's titles, ``ALIASES`` and
    ``extra`` (which map to themselves unless already known)."""
    known = {t: t for t in REPORT_SECTIONS}
    known.update(ALIASES)
    for word in extra:
        known.setdefault(_canonical(word), _canonical(word))
    return known


def _title(label: str, known: Mapping[str, str]) -> str | None:
    word = _canonical(label)
    if word in known:
        return known[word]
    if label.strip().isupper() and len(word) > 2:
        return word
    return None


def split_report(text: str, *, extra: Iterable[str] = (), addendum: bool = True) -> list[Section]:
    """The report's sections in order (see the module docstring for what a header is).

    ``extra``: more header words to know (the label extractor's lexicon); ``addendum=False``
    leaves rule 3 out (a lexicon without an addendum section). Text before the first header is
    a section with title "" (absent when a header opens the report; a report without headers,
    even an empty one, is that one section).
    """
    known = vocabulary(extra)
    marks: list[tuple[int, int, str, str]] = []  # (start, body_start, title, label)
    for m in _COLON.finditer(text):
        title = _title(m.group(1), known)
        if title is not None:
            marks.append((m.start(), m.end(), title, m.group(1).strip()))
    for m in _BARE.finditer(text):
        word = _canonical(m.group(1))
        if word in known and not any(a <= m.start() < b for a, b, _, _ in marks):
            marks.append((m.start(), m.end(), known[word], m.group(1).strip()))
    if addendum:
        for m in _ADDENDUM.finditer(text):
            marks = [mk for mk in marks if not (m.start() <= mk[0] < m.end())]
            marks.append((m.start(), m.end(), ADDENDUM, m.group(0).strip().rstrip(":-").strip()))
    marks.sort()
    out: list[Section] = []
    first = marks[0][0] if marks else len(text)
    if first > 0 or not marks:
        out.append(Section("", "", "", text[:first], 0, 0, first))
    for i, (start, body_start, title, label) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        out.append(Section(title, label, text[start:body_start], text[body_start:end], start, body_start, end))
    return out


def section_key(title: str) -> str:
    """``"VERTEBRAL BODIES/MARROW"`` -> ``"vertebral_bodies_marrow"``: the stable key of a
    section in stored edit distances and exports."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def sections_by_title(text: str, titles: Sequence[str] = REPORT_SECTIONS) -> dict[str, str]:
    """Title -> stripped body for the sections whose title is in ``titles`` (the report template's
    view: the report agent's prompt and grounding). Text before the first header is under "";
    a header outside ``titles`` stays, as written, in the body of the section it interrupts, and
    a title that repeats appends to the earlier body, so no text is dropped."""
    wanted = set(titles)
    raw: dict[str, str] = {}
    current = ""
    for s in split_report(text):
        if s.title in wanted:
            current = s.title
            raw[current] = raw[current] + "\n" + s.body if current in raw else s.body
        else:
            raw[current] = raw.get(current, "") + s.head + s.body
    return {k: v.strip() for k, v in raw.items() if k or v.strip()}


def viewer_vocabulary() -> list[dict[str, object]]:
    """What the viewer needs to cut a report exactly as ``split_report`` does: each known title
    with its aliases, in template order (the viewer's study context sends it)."""
    titles = [*REPORT_SECTIONS, *(t for t in dict.fromkeys(ALIASES.values()) if t not in REPORT_SECTIONS)]
    return [{"title": t, "aliases": sorted(a for a, c in ALIASES.items() if c == t and a != t)} for t in titles]
