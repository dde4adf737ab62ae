"""How the consistency check (``consistency``) reads a draft: its sentences, each with the level
label of its line ("L4-5: ..."), the levels and sides a sentence names, the labels the extractor
reads in it, the unfinished sentences a generation left behind, where the whole text still
disagrees with the agents' calls; and how checked sections are written back as report text.

Why apart from the check: these are the rules of reading report text, shared with retrieval and
the benchmarks (``level_spans``, ``same_level``); the check itself decides what to change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ml.agents.analysis import ConditionResult
from ml.conditions import CONDITION_KEYS

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\[(\"']?[A-Z0-9])")
ITEM = re.compile(r"^\s*(\d+)[.)]\s+")
LINE_LEVEL = re.compile(r"^\s*([CTLS]\d{1,2}(?:\s*[-/]\s*[CTLS]?\d{1,2})?)\s*:\s*")
_ON = re.compile(r"\b([CTLS])(\d{1,2})\s+on\s+([CTLS])(\d{1,2})\b")
_DISC = re.compile(r"\b([CTLS])(\d{1,2})\s*[-/]\s*([CTLS]?)(\d{1,2})\b")
_VERT = re.compile(r"\b([CTLS])(\d{1,2})\b")
_SIDE = re.compile(r"\b(left|right|bilateral(?:ly)?)\b", re.IGNORECASE)
_DANGLING = re.compile(r"\b(at|of|and|or|with|to|the|an|on|from|by|for)\W*$", re.I)
TERMINAL = ".!?"


def stated_labels(text: str) -> dict[str, int]:
    """Non-absent labels the extractor reads in one sentence (1 present, -1 hedged)."""
    from ml.agents.labels import extract_labels

    return {k: v for k, v in extract_labels(text).labels.items() if v != 0}


def _norm_disc(a: str, n: str, b: str, m: str) -> str:
    return f"{a}{int(n)}-{b}{int(m)}" if b and b != a else f"{a}{int(n)}-{int(m)}"


def level_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, normalised level) of every level in ``text``: "L4 on L5" and "L4/5" -> "L4-5",
    "L5/S1" -> "L5-S1", a vertebra "L3" -> "L3"."""
    out: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    for rx, norm in (
        (_ON, lambda m: _norm_disc(m[1], m[2], m[3], m[4])),
        (_DISC, lambda m: _norm_disc(m[1], m[2], m[3] or m[1], m[4])),
        (_VERT, lambda m: f"{m[1]}{int(m[2])}"),
    ):
        for m in rx.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            taken.append(m.span())
            out.append((m.start(), m.end(), norm(m)))
    return sorted(out)


def normalise_level(level: str) -> str:
    """A level as ``level_spans`` writes it ("L4/5" -> "L4-5"), or the text unchanged."""
    spans = level_spans(level)
    return spans[0][2] if spans else level


def same_level(stated: str, agent: str) -> bool:
    """A stated level matches the agent's when equal, or a vertebra names the disc below it
    ("anterolisthesis of L4" for a listhesis localised at L4-5, and the reverse)."""
    if stated == agent:
        return True
    up = lambda lv: lv.split("-")[0]  # noqa: E731
    return ("-" in stated) != ("-" in agent) and up(stated) == up(agent)


def sides_in(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "left" | "right" | "bilateral") of every side named in ``text``."""
    return [(m.start(), m.end(), m.group(1).lower().removesuffix("ly")) for m in _SIDE.finditer(text)]


def _terminated(s: str) -> bool:
    s = s.rstrip()
    return bool(s) and (s[-1] in TERMINAL or (s[-1] == ")" and s[:-1].rstrip()[-1:] in TERMINAL))


@dataclass
class Sentence:
    """One sentence of a section body, with where it sits and its line's level label."""

    text: str
    line: int  # index of the body line it sits on
    context: str  # the line's level label, normalised ("L4-5"), "" if none
    label: str = ""  # the label as written at the start of the line ("L4/5: ")


def body_lines(body: str) -> list[str]:
    """The body's non-empty lines, stripped."""
    return [ln.strip() for ln in body.splitlines() if ln.strip()]


def sentences(body: str, impression: bool) -> list[Sentence]:
    """The body's sentences; ``impression``: numbered items lose their numbers."""
    out: list[Sentence] = []
    for i, line in enumerate(body_lines(body)):
        if impression:
            line = ITEM.sub("", line)
        context, label = "", ""
        for piece in _SPLIT.split(line):
            piece = piece.strip()
            if not piece:
                continue
            m = LINE_LEVEL.match(piece)
            if m:  # "L4-5: ..." sets the level of what follows on its line
                context, label = normalise_level(m.group(1)), m.group(0).strip() + " "
            out.append(Sentence(piece, i, context, label))
    return out


def cut_incomplete(body: str, last: bool) -> tuple[str, list[str]]:
    """(body, cut pieces): unfinished sentences cut (the last one of the ``last`` section written,
    an unterminated numbered item, any ending on "at", "of", "and" ...)."""
    cut: list[str] = []
    lines = body_lines(body)
    kept_lines: list[str] = []
    for i, line in enumerate(lines):
        prefix = ""
        m = ITEM.match(line)
        if m:
            prefix, line = line[: m.end()], line[m.end() :]
        pieces = [p.strip() for p in _SPLIT.split(line) if p.strip()]
        keep: list[str] = []
        for j, p in enumerate(pieces):
            final = last and i == len(lines) - 1 and j == len(pieces) - 1
            core = p.rstrip(TERMINAL + ") ")
            if _DANGLING.search(core) or (not _terminated(p) and (final or m)) or LINE_LEVEL.fullmatch(p + " "):
                cut.append(p)
                continue
            keep.append(p if _terminated(p) else p + ".")
        if keep:
            kept_lines.append(prefix + " ".join(keep))
    return "\n".join(kept_lines), cut


_WORD = re.compile(r"[A-Za-z]{2,}")


def is_fragment(text: str) -> bool:
    """A sentence with no word left once its levels and sides are taken out ("L2-3 right;."):
    what remains of a list after the check removed the findings it listed."""
    rest = text
    for a, b, _ in sorted(level_spans(text) + sides_in(text), reverse=True):
        rest = rest[:a] + " " + rest[b:]
    rest = re.sub(r"\b(and|or|at|on|of|the|to|with)\b", " ", rest, flags=re.IGNORECASE)
    return not _WORD.search(rest)


def render_sections(sections: dict[str, str], order: Sequence[str]) -> str:
    """Sections as report text: one "TITLE: body" line, or "TITLE:" and the body's lines (disc
    levels indented two spaces, impression items not)."""
    rows: list[str] = []
    for s in order:
        body = sections.get(s, "")
        lines = body_lines(body)
        if len(lines) > 1:
            indent = "  " if s == "DISCS" else ""
            rows.append(f"{s}:\n" + "\n".join(indent + ln for ln in lines))
        else:
            rows.append(f"{s}: {lines[0] if lines else ''}".rstrip())
    return "\n".join(rows)


def disagreements(text: str, conditions: Sequence[ConditionResult]) -> list[dict[str, object]]:
    """Conditions where the label extractor's reading of ``text`` differs from the agents' calls
    (present -> stated present or hedged; absent -> not stated)."""
    from ml.agents.labels import extract_labels

    labels = extract_labels(text).labels
    by_key = {c.condition: c for c in conditions}
    out: list[dict[str, object]] = []
    for key in CONDITION_KEYS:
        c = by_key.get(key)
        agent = bool(c and c.present)
        draft = labels.get(key, 0)
        if agent != (draft != 0):
            out.append({"condition": key, "agent": int(agent), "draft": int(draft)})
    return out
