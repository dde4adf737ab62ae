"""The consistency check every draft goes through, whoever wrote it: the draft must say what the
agents found, and nothing else.

Why a check rather than trust in the writer: a decoder imitating a report corpus writes the
corpus's findings ("Grade 1 degenerative anterolisthesis of L4 on L5" when the panel says
spondylolisthesis 0 %); even a decoder that reads its prompt can drift, repeat or stop mid-
sentence. The check reads the draft back with the label extractor (``ml.agents.labels``, the same
one that labels signed reports), sentence by sentence, and compares with the agents' calls:

1. **truncation**: a sentence the generation stopped in is cut at the last sentence boundary;
2. **unsupported**: a sentence stating (or hedging) a condition the agents called absent is
   removed, as is one saying a present condition is absent at its level (or its level normal),
   or hedging a present one (re-stated by step 4 with the agents' probability, their hedge);
3. **level and side**: a sentence about one present condition gets the Localization Agent's level
   and side (a sentence mixing several conditions at another level is removed instead);
4. **omitted**: a present condition no finding sentence (or impression item) states is added in
   the structured template's wording, with level, side and probability;
5. repeats are dropped, impression items renumbered, empty sections get the template's sentence.

Every change is a ``Change`` (action, section, sentence, condition, reason), stored with the
draft so the viewer can show the reader what the check did and why. The final text is read back
once more; any condition where it still disagrees with the agents is listed in ``residual``.
How a draft is read (sentences, levels, sides, truncation) is ``ml.agents.report.sentences``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from ml.agents.analysis import ConditionResult
from ml.agents.report.sentences import (
    ITEM,
    LINE_LEVEL,
    TERMINAL,
    Sentence,
    cut_incomplete,
    disagreements,
    is_fragment,
    level_spans,
    normalise_level,
    render_sections,
    same_level,
    sentences,
    sides_in,
    stated_labels,
)
from ml.agents.template import NORMAL, SECTION_OF, _phrase
from ml.conditions import BY_KEY, DISC_LEVELS, IMPRESSION_ORDER, WRITER_SECTIONS

FINDING_SECTIONS, CHECKED_SECTIONS = WRITER_SECTIONS[:-1], WRITER_SECTIONS


_NEGATION = re.compile(
    r"\b(no evidence of|there is no|there are no|without|negative for|free of|no|not|nor)\b", re.IGNORECASE
)
_NORMAL_LINE = re.compile(
    r"\b(normal|unremarkable|patent|no abnormalit(y|ies)"
    r"|no (significant|acute) (abnormalit(y|ies)|changes?|findings?))\b",
    re.I,
)
_LEVEL_SECTIONS = ("DISCS", "SPINAL CANAL", "NEURAL FORAMINA")


@dataclass
class Change:
    """One edit of the check: ``action`` is removed | cut | fixed_level | fixed_side | added |
    replaced; ``sentence`` the text as the writer wrote it (for "added": the new sentence),
    ``replacement`` the text after a fix."""

    action: str
    section: str
    sentence: str
    condition: str
    reason: str
    replacement: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class CheckResult:  # the checked finding sections + IMPRESSION, the changes, what still disagrees
    sections: dict[str, str]
    changes: list[Change] = field(default_factory=list)
    residual: list[dict[str, object]] = field(default_factory=list)  # {condition, agent, draft}


# ----- the check ----------------------------------------------------------------------------------


class _Checker:
    def __init__(self, conditions: Sequence[ConditionResult]) -> None:
        self.by_key = {c.condition: c for c in conditions}
        self.present = [self.by_key[k] for k in IMPRESSION_ORDER if k in self.by_key and self.by_key[k].present]
        self.changes: list[Change] = []

    def note(self, action: str, section: str, sentence: str, condition: str, reason: str, new: str = "") -> None:
        self.changes.append(Change(action, section, sentence, condition, reason, new))

    @staticmethod
    def _why_absent(c: ConditionResult | None, key: str) -> str:
        name = BY_KEY[key].name
        if c is None:
            return f"no agent call for {name}"
        return (
            f"the diagnosis agent called {name} absent (probability {c.probability:.2f} < threshold {c.threshold:.2f})"
        )

    def sentence(self, section: str, s: Sentence) -> str | None:
        """The sentence as it may stay (possibly fixed), or None to remove it (change noted)."""
        text = s.text
        stated = stated_labels(text)
        for key in stated:
            c = self.by_key.get(key)
            if c is None or not c.present:
                verb = "hedges" if stated[key] == -1 else "states"
                self.note("removed", section, text, key, f"{verb} {BY_KEY[key].name}; {self._why_absent(c, key)}")
                return None
        levels = [lv for _, _, lv in level_spans(text)] or ([s.context] if s.context else [])
        # negated mentions: a present condition said to be absent where the agent found it
        negated = {k for k in stated_labels(_NEGATION.sub(" ", text)) if k not in stated}
        for key in negated:
            c = self.by_key.get(key)
            if (
                c is not None
                and c.present
                and (not levels or not c.level or any(same_level(lv, normalise_level(c.level)) for lv in levels))
            ):
                where = f" at {c.level}" if c.level else ""
                self.note("removed", section, text, key,
                          f"says no {BY_KEY[key].name}{where}; the agents called it present "
                          f"(probability {c.probability:.2f})")  # fmt: skip
                return None
        if not stated:
            if is_fragment(text):
                self.note("removed", section, text, "", "a fragment without a finding (levels or sides alone)")
                return None
            if s.context and section in _LEVEL_SECTIONS and _NORMAL_LINE.search(text):
                hit = next(
                    (c for c in self.present if c.level and same_level(s.context, normalise_level(c.level))), None
                )
                if hit is not None and SECTION_OF.get(hit.condition) in _LEVEL_SECTIONS:
                    self.note("removed", section, text, hit.condition,
                              f"calls {s.context} normal; the agents found {BY_KEY[hit.condition].name} there "
                              f"(probability {hit.probability:.2f})")  # fmt: skip
                    return None
            return text
        hedged = [k for k, v in stated.items() if v == -1]
        if hedged:  # the agents' call is the certainty; its probability goes with the re-stated finding
            c = self.by_key[hedged[0]]
            self.note("removed", section, text, c.condition,
                      f"hedges {BY_KEY[c.condition].name}; the agents called it present (probability "
                      f"{c.probability:.2f}): stated in the template's wording with that probability")  # fmt: skip
            return None
        return self._fix_site(section, s, text, stated)

    def _fix_site(self, section: str, s: Sentence, text: str, stated: dict[str, int]) -> str | None:
        """Level and side of a sentence whose conditions are all called present."""
        own = level_spans(text)
        levels = [lv for _, _, lv in own] or ([s.context] if s.context else [])
        for key in stated:
            c = self.by_key[key]
            agent_level = normalise_level(c.level) if c.level else ""
            bad_level = bool(levels) and (not agent_level or not all(same_level(lv, agent_level) for lv in levels))
            if bad_level:
                if len(stated) == 1 and len(own) == 1 and agent_level:
                    a, b, lv = own[0]
                    new = text[:a] + c.level + text[b:]
                    self.note("fixed_level", section, text, key,
                              f"the localization agent has {BY_KEY[key].name} at {c.level}, not {lv}", new)  # fmt: skip
                    text = new
                else:
                    said = ", ".join(levels)
                    at = f"at {c.level}" if c.level else "without a level"
                    self.note("removed", section, text, key,
                              f"places {BY_KEY[key].name} at {said}; the localization agent has it {at}")  # fmt: skip
                    return None
            elif not levels and agent_level:
                if len(stated) != 1:
                    self.note("removed", section, text, key,
                              f"no level; the localization agent has {BY_KEY[key].name} at {c.level}")  # fmt: skip
                    return None
                new = _insert_before_end(text, f" at {c.level}")
                self.note("fixed_level", section, text, key, f"the localization agent places it at {c.level}", new)
                text = new
            sides = sides_in(text)
            agent_side = c.side if c.side in ("left", "right", "bilateral") else ""
            if sides and any(sd != agent_side for _, _, sd in sides):
                if len(stated) == 1 and len(sides) == 1 and agent_side:
                    a, b, sd = sides[0]
                    word = text[a:b]
                    repl = agent_side.capitalize() if word[:1].isupper() else agent_side
                    new = text[:a] + repl + text[b:]
                    self.note(
                        "fixed_side", section, text, key, f"the localization agent says {agent_side}, not {sd}", new
                    )
                    text = new
                else:
                    told = agent_side or c.side or "no side"
                    self.note("removed", section, text, key,
                              f"gives the side as {', '.join(sd for _, _, sd in sides)}; the localization agent "
                              f"says {told}")  # fmt: skip
                    return None
            elif not sides and agent_side and len(stated) == 1:
                new = _insert_before_end(text, f", {agent_side}")
                self.note("fixed_side", section, text, key, f"the localization agent says {agent_side}", new)
                text = new
        return text


def _own_present(section: str, ck: _Checker) -> list[ConditionResult]:
    """The present conditions whose place in the report is ``section``."""
    return [c for c in ck.present if SECTION_OF.get(c.condition, "PARASPINAL/OTHER") == section]


def _drop_normal_claims(section: str, rows: list[str], ck: _Checker) -> list[str]:
    """A section that states a present finding, or whose own condition is present (stated in
    another section: "Spinal canal stenosis at L4-5" under DISCS), loses its sentences calling
    the whole section normal ("No significant changes." beside "Bone marrow edema at L4";
    "SPINAL CANAL: Patent."): the reader would read a contradiction. Sentences about one level
    (a level line, a sentence naming a level) are the level rules' business and stay."""
    present = {c.condition for c in ck.present}
    said = {k for r in rows for sn in sentences(r, False) for k in stated_labels(sn.text)}
    states = bool(said & present) or bool(_own_present(section, ck))
    if not states:
        return rows
    out = []
    for r in rows:
        if LINE_LEVEL.match(r):
            out.append(r)
            continue
        parts = []
        for sn in sentences(r, False):
            t = sn.text
            if not stated_labels(t) and not level_spans(t) and _NORMAL_LINE.search(t):
                finding = next(iter(_own_present(section, ck)), None)
                ck.note("removed", section, t, finding.condition if finding else "",
                        "calls the section normal; it states a finding the agents called present")  # fmt: skip
                continue
            parts.append(t)
        if parts:
            out.append(" ".join(parts))
    return out


def _insert_before_end(text: str, piece: str) -> str:
    t = text.rstrip()
    if t and t[-1] in TERMINAL:
        return t[:-1] + piece + t[-1]
    return t + piece + "."


def check_draft(
    sections: dict[str, str],
    conditions: Sequence[ConditionResult],
    last_section: str | None = None,
    region: str | None = None,
) -> CheckResult:
    """Check the finding sections and the IMPRESSION of a draft against the agents' calls.

    ``sections``: section title -> body as the writer produced it (``split_sections``);
    ``last_section``: the section the generation ended in (where a cut-off sentence can be);
    ``region``: its disc levels order a level-by-level DISCS section. Returns the checked
    sections (every CHECKED_SECTIONS key present) and the changes.
    """
    ck = _Checker(conditions)
    out: dict[str, list[str]] = {}
    level_lines = False
    for section in CHECKED_SECTIONS:
        body = sections.get(section, "")
        body, cut = cut_incomplete(body, last=section == last_section)
        for p in cut:
            ck.note("cut", section, p, "", "unfinished sentence (the generation stopped inside it)")
        impression = section == "IMPRESSION"
        lines: dict[int, list[str]] = {}
        seen: set[str] = set()
        seen_kept: set[str] = set()
        for s in sentences(body, impression):
            level_lines |= section == "DISCS" and bool(s.label)
            key = s.text.lower()
            if key in seen:
                ck.note("removed", section, s.text, "", "repeats an earlier sentence of the section")
                continue
            seen.add(key)
            kept = ck.sentence(section, s)
            if kept is not None:
                row = lines.setdefault(s.line, [])
                if not row and s.label and not LINE_LEVEL.match(kept):
                    kept = s.label + kept  # the line's level label stays with what is left of the line
                if kept.lower() in seen_kept:  # two sentences the level fix made one
                    ck.note("removed", section, s.text, "", "repeats an earlier sentence of the section")
                    continue
                seen_kept.add(kept.lower())
                row.append(kept)
        out[section] = [" ".join(v) for _, v in sorted(lines.items())]

    # omissions: every present condition stated in the findings and in the impression
    stated_findings = {
        k for sec in FINDING_SECTIONS for ln in out[sec] for s in sentences(ln, False) for k in stated_labels(s.text)
    }
    stated_impression = {k for ln in out["IMPRESSION"] for s in sentences(ln, True) for k in stated_labels(s.text)}
    for c in ck.present:
        phrase = _stated(c)
        name = f"{BY_KEY[c.condition].name} present (probability {c.probability:.2f})"
        if c.condition not in stated_findings:
            section = SECTION_OF.get(c.condition, "PARASPINAL/OTHER")
            level = normalise_level(c.level) if c.level else ""
            if section == "DISCS" and level_lines and level:  # a level line names its level once
                out[section].append(f"{level}: {_stated(replace(c, level=''), c.condition)}")
            else:
                out[section].append(phrase)
            ck.note("added", section, phrase, c.condition, f"the agents called {name} and no finding sentence said so")
        if c.condition not in stated_impression:
            out["IMPRESSION"].append(phrase)
            ck.note("added", "IMPRESSION", phrase, c.condition, f"the agents called {name} and the impression did not")
    for section in FINDING_SECTIONS:
        out[section] = _drop_normal_claims(section, out[section], ck)
    if level_lines:
        out["DISCS"] = _level_by_level(out["DISCS"], region, ck.present)

    final: dict[str, str] = {}
    for section in FINDING_SECTIONS:
        rows = out[section]
        if not rows and _own_present(section, ck):
            # its findings were stated in another section: the section's "No canal stenosis
            # detected." would contradict them, so it states them in the template's wording
            rows = [_stated(c) for c in _own_present(section, ck)]
            for c, phrase in zip(_own_present(section, ck), rows, strict=True):
                ck.note("added", section, phrase, c.condition,
                        "the section was left empty; its finding is stated in another section")  # fmt: skip
        final[section] = ("\n" if section == "DISCS" and level_lines else " ").join(rows) if rows else NORMAL[section]
    items = [ITEM.sub("", ln) for ln in out["IMPRESSION"] if ITEM.sub("", ln).strip()]
    if not items:
        none = "No abnormality detected by the AI agents."
        items = [none if conditions else "AI diagnosis unavailable; please report from the images."]
    final["IMPRESSION"] = "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1))
    result = CheckResult(final, ck.changes)
    result.residual = disagreements(render_sections(final, CHECKED_SECTIONS), conditions)
    return result


def _stated(c: ConditionResult, key: str = "") -> str:
    """The template's sentence for a present finding, in the first wording the label extractor
    reads as that condition (the clinical name, else the name without its parenthesis)."""
    first = _phrase(c)
    name = BY_KEY[c.condition].name
    for text in (first, first.replace(name, re.sub(r"\s*\([^)]*\)", "", name))):
        if stated_labels(text).get(key or c.condition) == 1:
            return text
    return first


def _level_by_level(rows: list[str], region: str | None, present: Sequence[ConditionResult]) -> list[str]:
    """A level-by-level DISCS section in the region's level order: lines of one level merged,
    a level left without a line (its sentences were removed) said to be without finding, unless
    the agents localised any finding there (then the finding's own section says it)."""
    order = list(DISC_LEVELS.get(region or "", ()))
    by_level: dict[str, list[str]] = {}
    other: list[str] = []
    for row in rows:
        m = LINE_LEVEL.match(row)
        if not m:
            other.append(row)
            continue
        lv = normalise_level(m.group(1))
        if lv in by_level:  # a sentence whose level the check fixed joins its level's line
            by_level[lv].append(row[m.end() :])
        else:
            by_level[lv] = [row]
    found = {normalise_level(c.level) for c in present if c.level}
    for lv in order:
        if lv not in by_level and not any(same_level(lv, f) for f in found):
            by_level[lv] = [f"{lv}: No significant abnormality detected."]
    rank = {lv: i for i, lv in enumerate(order)}
    levels = sorted(by_level, key=lambda lv: (rank.get(lv, len(rank)), lv))
    return [" ".join(by_level[lv]) for lv in levels] + other


__all__ = ["CHECKED_SECTIONS", "Change", "CheckResult", "check_draft", "cut_incomplete", "disagreements", "level_spans",
           "render_sections"]  # fmt: skip
