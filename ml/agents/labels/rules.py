"""Deterministic rule-based label extractor: lexicon terms + NegEx-style negation + hedges + sections.

Why rules at all when an LLM back-end exists: rules run everywhere (no GPU, no weights), are
fast enough to re-label a whole archive, and every decision points at a sentence. The wording
lives in a versioned lexicon (``lexicon/v1.yaml``); this module is only the logic:

1. The report is cut into sections (history / technique / comparison are skipped: an indication
   is not a finding and a comparison line describes a prior study), sentences and clauses (';').
2. Each condition's terms are matched per clause; ``exclude`` patterns veto look-alikes (a disc
   bulge is not a herniation, Modic 2 is not inflammatory).
3. A mention is negated by a cue before it (within ``negation_window`` words, no terminator such as
   "with"/"but" in between, commas allowed only in a list "no A, B or C") or after it ("has
   resolved", "not seen"); it is uncertain if a hedge cue is in the same comma-chunk.
4. Per condition: the impression decides when it mentions the condition affirmatively (present or
   hedged); otherwise any present finding mention -> 1, else any hedged -> -1, else 0.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ml.agents.labels.result import LabelResult
from ml.agents.labels.text import Sentence, clauses, split_sentences
from ml.conditions import CONDITION_KEYS

LEXICON_DIR = Path(__file__).parent / "lexicon"
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Lexicon:
    version: int
    sections: dict[str, list[str]]
    neg_pre: tuple[re.Pattern[str], ...]
    neg_post: tuple[re.Pattern[str], ...]
    neg_stop: tuple[re.Pattern[str], ...]
    neg_window: int
    hedge: tuple[re.Pattern[str], ...]
    terms: dict[str, tuple[re.Pattern[str], ...]]
    weak_terms: dict[str, tuple[re.Pattern[str], ...]]
    exclude: dict[str, tuple[re.Pattern[str], ...]]


def _compile(patterns: list[str] | None) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns or [])


@functools.cache
def load_lexicon(version: int = 1) -> Lexicon:
    """Load and compile ``lexicon/v<version>.yaml`` (cached); every condition must be covered."""
    path = LEXICON_DIR / f"v{version}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in LEXICON_DIR.glob("v*.yaml"))
        raise FileNotFoundError(f"no lexicon {path.name}; known: {', '.join(known)}")
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    conds = raw["conditions"]
    missing = set(CONDITION_KEYS) - set(conds)
    if missing:
        raise ValueError(f"lexicon {path.name} lacks conditions {sorted(missing)}")
    return Lexicon(
        version=int(raw["version"]),
        sections={k: [n.lower() for n in v] for k, v in raw["sections"].items()},
        neg_pre=_compile(raw["negation_pre"]),
        neg_post=_compile(raw["negation_post"]),
        neg_stop=_compile(raw["negation_stop"]),
        neg_window=int(raw["negation_window"]),
        hedge=_compile(raw["hedge"]),
        terms={k: _compile(conds[k].get("terms")) for k in CONDITION_KEYS},
        weak_terms={k: _compile(conds[k].get("weak_terms")) for k in CONDITION_KEYS},
        exclude={k: _compile(conds[k].get("exclude")) for k in CONDITION_KEYS},
    )


@dataclass(frozen=True)
class Mention:
    condition: str
    polarity: int  # 1 present, -1 hedged, 0 negated
    sentence: Sentence
    match: str


def _n_words(s: str) -> int:
    return len(_WORD.findall(s))


def _spans(patterns: tuple[re.Pattern[str], ...], text: str) -> list[tuple[int, int]]:
    return [m.span() for p in patterns for m in p.finditer(text)]


def _negated(lex: Lexicon, clause: str, a: int, b: int) -> tuple[bool, list[tuple[int, int]]]:
    """Whether the term at clause[a:b] is negated; also returns the negation cue spans used."""
    for p in lex.neg_pre:
        for m in p.finditer(clause, 0, a):
            between = clause[m.end() : a]
            if _n_words(between) > lex.neg_window or any(s.search(between) for s in lex.neg_stop):
                continue
            if "," in between and not re.search(r"\b(or|nor)\b", clause[m.end() :], re.IGNORECASE):
                continue  # "No stenosis, mild foraminal narrowing": the comma ends the scope
            return True, [m.span()]
    for p in lex.neg_post:
        for m in p.finditer(clause, b):
            between = clause[b : m.start()]
            if _n_words(between) > lex.neg_window or "," in between or any(s.search(between) for s in lex.neg_stop):
                continue
            return True, [m.span()]
    return False, []


def _hedged(lex: Lexicon, clause: str, a: int, b: int) -> bool:
    """A hedge cue anywhere in the comma-chunk that contains the term."""
    lo = clause.rfind(",", 0, a) + 1
    hi = clause.find(",", b)
    hi = len(clause) if hi < 0 else hi
    return any(p.search(clause, lo, hi) for p in lex.hedge)


def find_mentions(text: str, lex: Lexicon) -> list[Mention]:
    """Every condition mention in the findings and impression sections, with its polarity."""
    out: list[Mention] = []
    for sent in split_sentences(text, lex.sections):
        if sent.section not in ("findings", "impression"):
            continue
        for ca, cb in clauses(sent):
            clause = sent.text[ca:cb]
            for key in CONDITION_KEYS:
                vetoed = _spans(lex.exclude[key], clause)
                seen: list[tuple[int, int]] = []
                for weak, pats in ((False, lex.terms[key]), (True, lex.weak_terms[key])):
                    for p in pats:
                        for m in p.finditer(clause):
                            a, b = m.span()
                            if any(va <= a and b <= vb for va, vb in vetoed):
                                continue
                            if any(sa < b and a < sb for sa, sb in seen):
                                continue  # overlapping match of the same condition: counted once
                            seen.append((a, b))
                            hedged = _hedged(lex, clause, a, b)
                            negated, _ = _negated(lex, clause, a, b)
                            if hedged:
                                polarity = -1
                            elif negated:
                                polarity = 0
                            elif weak:
                                continue  # a weak term says nothing unless qualified
                            else:
                                polarity = 1
                            out.append(Mention(key, polarity, sent, m.group(0)))
    return out


def _decide(mentions: list[Mention]) -> tuple[int, Mention | None, float]:
    """Label, deciding mention and confidence for one condition's mentions."""
    if not mentions:
        return 0, None, 0.85  # not mentioned: absent by convention, less sure than an explicit "no"
    imp = [m for m in mentions if m.sentence.section == "impression" and m.polarity != 0]
    pool = imp if imp else [m for m in mentions if m.sentence.section != "impression"] or mentions
    for pol in (1, -1):
        hits = [m for m in pool if m.polarity == pol]
        if hits:
            others = [m for m in mentions if m not in pool and m.polarity != 0]
            agree = any(m.polarity == pol for m in others)
            conflict = any(m.polarity != pol for m in others)
            conf = 0.6 if pol == -1 else 0.97 if agree and not conflict else 0.75 if conflict else 0.9
            return pol, hits[0], conf
    return 0, None, 0.95


def extract_rules(text: str, lexicon_version: int = 1) -> LabelResult:
    """Rule-based ternary labels for the 17 conditions, with evidence sentences and spans."""
    if not isinstance(text, str):
        raise TypeError(f"report text must be str, got {type(text).__name__}")
    lex = load_lexicon(lexicon_version)
    mentions = find_mentions(text, lex)
    labels: dict[str, int] = {}
    evidence: dict[str, str] = {}
    spans: dict[str, tuple[int, int]] = {}
    confidence: dict[str, float] = {}
    for key in CONDITION_KEYS:
        label, by, conf = _decide([m for m in mentions if m.condition == key])
        labels[key] = label
        confidence[key] = conf
        if by is not None:
            evidence[key] = by.sentence.text
            spans[key] = (by.sentence.start, by.sentence.end)
    return LabelResult(labels, evidence, confidence, f"rules/lexicon-v{lex.version}", spans)
