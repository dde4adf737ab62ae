"""Deterministic rule-based label extractor: lexicon terms + NegEx-style negation + hedges + sections.

Why rules at all when an LLM back-end exists: rules run everywhere (no GPU, no weights), are
fast enough to re-label a whole archive, and every decision points at a sentence. The wording
lives in a versioned lexicon (``lexicon/v<N>.yaml``); this module is only the logic:

1. The report is cut into sections (history / technique / comparison are skipped: an indication
   is not a finding and a comparison line describes a prior study), sentences and clauses (';').
2. (v2) Each clause is normalised before matching: British spelling and radiologists'
   abbreviations are rewritten (oedema, NFN, SAR, DDD...) and misspelt key words are corrected
   by edit distance (rapidfuzz), so the term patterns are written once, in one spelling.
3. Each condition's terms are matched per clause; ``exclude`` patterns veto look-alikes (a disc
   bulge or a Schmorl's node is not a herniation, Modic 2 is not inflammatory). A bare "loss of
   height" goes to the disc or the vertebra, whichever the nearest context word names.
4. A mention is negated by a cue before it (within ``negation_window`` words, no terminator such as
   "with"/"but" in between, commas allowed only in a list "no A, B or C"; pseudo-negations such as
   "no change in" do not count) or after it ("has resolved", "not seen"). A term after a
   "<operation> for" cue is history, not a finding. A mention is uncertain when a hedge reaches it:
   v1 reads a cue anywhere in the comma-chunk, v2 reads direction (pre-cues such as "possible"
   reach forward, post-cues such as "cannot be excluded" reach back, "versus" both) and stops at
   the same terminators as negation.
5. Per condition: an addendum that mentions the condition decides (it can withdraw a finding);
   else the impression decides when it mentions the condition affirmatively (present or hedged);
   otherwise any present finding mention -> 1, else any hedged -> -1, else 0. (v3) A hedged
   ``diagnosis_terms`` mention (a histology such as "probable schwannoma") is dropped when the
   condition is stated outright elsewhere: the doubt is about which kind, not whether.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ml.agents.labels.result import LabelResult
from ml.agents.labels.text import Sentence, clauses, split_sentences
from ml.conditions import CONDITION_KEYS

LEXICON_DIR = Path(__file__).parent / "lexicon"
DEFAULT_LEXICON = 3
_WORD = re.compile(r"[A-Za-z0-9]+")
_LONG_WORD = re.compile(r"[A-Za-z]{8,}")
# Placeholders the lexicon may use inside patterns.
_MACROS = {
    "{LEVEL}": r"[CTLS]\d{1,2}\s*[-/]\s*[CTLS]?\d{1,2}",
    # a vertebra, not a level and not a sequence name ("T2 signal", "T1-weighted")
    "{VERT}": (
        r"[CTLS]\d{1,2}(?!\d)(?!\s*[-/]\s*[CTLS]?\d)"
        r"(?!\s*-?\s*(weighted|signal|hyper|hypo|w\b|images?|sequences?|stir|flair|fat|post|pre))"
    ),
}

Patterns = tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Lexicon:
    version: int
    sections: dict[str, list[str]]
    neg_pre: Patterns
    neg_post: Patterns
    neg_stop: Patterns
    neg_pseudo: Patterns
    neg_window: int
    hedge_pre: Patterns
    hedge_post: Patterns
    hedge_both: Patterns
    hedge_exempt: dict[str, Patterns]
    directional_hedges: bool  # False: v1, a cue anywhere in the comma-chunk hedges
    historical: Patterns
    rewrite: tuple[tuple[re.Pattern[str], str], ...]
    spelling: tuple[str, ...]
    height_loss: re.Pattern[str] | None
    height_disc: re.Pattern[str] | None
    height_vertebra: re.Pattern[str] | None
    terms: dict[str, Patterns]
    weak_terms: dict[str, Patterns]
    exclude: dict[str, Patterns]
    diagnosis: dict[str, Patterns]  # (v3) terms naming a kind of the condition, see _decide


def _expand(pattern: str) -> str:
    for k, v in _MACROS.items():
        pattern = pattern.replace(k, v)
    return pattern


def _compile(patterns: list[str] | None) -> Patterns:
    return tuple(re.compile(_expand(p), re.IGNORECASE) for p in patterns or [])


def _one(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(_expand(pattern), re.IGNORECASE) if pattern else None


@functools.cache
def load_lexicon(version: int = DEFAULT_LEXICON) -> Lexicon:
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
    directional = "hedge_pre" in raw or "hedge_post" in raw
    return Lexicon(
        version=int(raw["version"]),
        sections={k: [n.lower() for n in v] for k, v in raw["sections"].items()},
        neg_pre=_compile(raw["negation_pre"]),
        neg_post=_compile(raw["negation_post"]),
        neg_stop=_compile(raw["negation_stop"]),
        neg_pseudo=_compile(raw.get("negation_pseudo")),
        neg_window=int(raw["negation_window"]),
        hedge_pre=_compile(raw.get("hedge_pre")),
        hedge_post=_compile(raw.get("hedge_post")),
        hedge_both=_compile(raw.get("hedge_both", raw.get("hedge"))),
        hedge_exempt={k: _compile(v) for k, v in (raw.get("hedge_exempt") or {}).items()},
        directional_hedges=directional,
        historical=_compile(raw.get("historical")),
        rewrite=tuple((re.compile(p, re.IGNORECASE), r) for p, r in raw.get("rewrite") or []),
        spelling=tuple(w.lower() for w in raw.get("spelling") or []),
        height_loss=_one(raw.get("height_loss")),
        height_disc=_one(raw.get("height_disc_context")),
        height_vertebra=_one(raw.get("height_vertebra_context")),
        terms={k: _compile(conds[k].get("terms")) for k in CONDITION_KEYS},
        weak_terms={k: _compile(conds[k].get("weak_terms")) for k in CONDITION_KEYS},
        exclude={k: _compile(conds[k].get("exclude")) for k in CONDITION_KEYS},
        diagnosis={k: _compile(conds[k].get("diagnosis_terms")) for k in CONDITION_KEYS},
    )


@dataclass(frozen=True)
class Mention:
    condition: str
    polarity: int  # 1 present, -1 hedged, 0 negated
    sentence: Sentence
    match: str
    diagnosis: bool = False  # the term names a kind of the condition (a histology), not the finding


def _n_words(s: str) -> int:
    return len(_WORD.findall(s))


def _spans(patterns: Patterns, text: str) -> list[tuple[int, int]]:
    return [m.span() for p in patterns for m in p.finditer(text)]


@functools.cache
def _spelling_fix(word: str, vocab: tuple[str, ...]) -> str | None:
    low = word.lower()
    if low in vocab:
        return None
    # Typos keep the first two letters; a prefix change is another word ("decompressed").
    cands = [w for w in vocab if w[:2] == low[:2]]
    hit = process.extractOne(low, cands, scorer=Levenshtein.distance, score_cutoff=2 if len(low) >= 13 else 1)
    return hit[0] if hit else None


def normalise(clause: str, lex: Lexicon) -> str:
    """The clause as the term patterns expect it: rewrites applied, misspelt key words fixed.

    Matching runs on this copy only; evidence and spans always point at the original text.
    """
    for pattern, repl in lex.rewrite:
        clause = pattern.sub(repl, clause)
    if lex.spelling:
        clause = _LONG_WORD.sub(lambda m: _spelling_fix(m.group(0), lex.spelling) or m.group(0), clause)
    return clause


def _stopped(lex: Lexicon, between: str) -> bool:
    return any(s.search(between) for s in lex.neg_stop)


def _negated(lex: Lexicon, clause: str, a: int, b: int) -> tuple[bool, list[tuple[int, int]]]:
    """Whether the term at clause[a:b] is negated; also returns the negation cue spans used."""
    pseudo = _spans(lex.neg_pseudo, clause)
    for p in (*lex.neg_pre, *lex.historical):
        for m in p.finditer(clause, 0, a):
            if any(pa <= m.start() < pb for pa, pb in pseudo):
                continue
            between = clause[m.end() : a]
            if _n_words(between) > lex.neg_window or _stopped(lex, between):
                continue
            if "," in between and not re.search(r"\b(or|nor)\b", clause[m.end() :], re.IGNORECASE):
                continue  # "No stenosis, mild foraminal narrowing": the comma ends the scope
            return True, [m.span()]
    for p in lex.neg_post:
        for m in p.finditer(clause, b):
            between = clause[b : m.start()]
            if _n_words(between) > lex.neg_window or "," in between or _stopped(lex, between):
                continue
            return True, [m.span()]
    return False, []


def _hedged(lex: Lexicon, clause: str, a: int, b: int, key: str) -> bool:
    """Whether a hedge cue reaches the term at clause[a:b]."""
    exempt = _spans(lex.hedge_exempt.get(key, ()), clause)

    def ok(m: re.Match[str]) -> bool:
        return not any(ea <= m.start() < eb for ea, eb in exempt)

    if not lex.directional_hedges:  # v1: a cue anywhere in the comma-chunk
        lo = clause.rfind(",", 0, a) + 1
        hi = clause.find(",", b)
        hi = len(clause) if hi < 0 else hi
        return any(ok(m) for p in lex.hedge_both for m in p.finditer(clause, lo, hi))

    def reaches(between: str, window: int) -> bool:
        return "," not in between and _n_words(between) <= window and not _stopped(lex, between)

    for p in (*lex.hedge_pre, *lex.hedge_both):
        for m in p.finditer(clause, 0, a):
            if ok(m) and reaches(clause[m.end() : a], 10):
                return True
    for p in (*lex.hedge_post, *lex.hedge_both):
        for m in p.finditer(clause, b):
            if ok(m) and reaches(clause[b : m.start()], 8):
                return True
    return False


def _height_owner(lex: Lexicon, clause: str, a: int, b: int) -> str | None:
    """Whose height a bare "loss of height" describes: the nearest context word decides."""
    best: tuple[int, str] | None = None
    for pat, owner in ((lex.height_disc, "disc_height_loss"), (lex.height_vertebra, "compression_deformity")):
        if pat is None:
            continue
        for m in pat.finditer(clause):
            if a <= m.start() and m.end() <= b:
                continue
            d = a - m.end() if m.end() <= a else m.start() - b
            if best is None or abs(d) < best[0]:
                best = (abs(d), owner)
    return best[1] if best else None


def _clause_matches(lex: Lexicon, clause: str) -> list[tuple[str, bool, int, int]]:
    """(condition, weak, start, end) of every term match in a normalised clause."""
    out: list[tuple[str, bool, int, int]] = []
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
                    out.append((key, weak, a, b))
    if lex.height_loss is not None:
        for m in lex.height_loss.finditer(clause):
            a, b = m.span()
            owner = _height_owner(lex, clause, a, b)
            if owner is None:
                continue
            if any(k in ("disc_height_loss", "compression_deformity") and sa < b and a < sb for k, _, sa, sb in out):
                continue  # an explicit disc or vertebral term already covers it
            out.append((owner, False, a, b))
    return out


def find_mentions(text: str, lex: Lexicon) -> list[Mention]:
    """Every condition mention in the findings, impression and addendum sections, with its polarity."""
    out: list[Mention] = []
    for sent in split_sentences(text, lex.sections):
        if sent.section not in ("findings", "impression", "addendum"):
            continue
        for ca, cb in clauses(sent):
            clause = normalise(sent.text[ca:cb], lex)
            found: list[Mention] = []
            for key, weak, a, b in sorted(_clause_matches(lex, clause), key=lambda t: t[2]):
                diagnosis = any(da < b and a < db for da, db in _spans(lex.diagnosis[key], clause))
                hedged = _hedged(lex, clause, a, b, key)
                negated, _ = _negated(lex, clause, a, b)
                if hedged:
                    polarity = -1
                elif negated:
                    polarity = 0
                elif weak:
                    continue  # a weak term says nothing unless qualified
                else:
                    polarity = 1
                if polarity == 1 and any(m.condition == key and m.polarity == -1 and not m.diagnosis for m in found):
                    polarity = -1  # "possible DDD with disc height loss": one hedged finding described twice
                found.append(Mention(key, polarity, sent, clause[a:b], diagnosis))
            out.extend(found)
    return out


def _decide(mentions: list[Mention]) -> tuple[int, Mention | None, float]:
    """Label, deciding mention and confidence for one condition's mentions."""
    if not mentions:
        return 0, None, 0.85  # not mentioned: absent by convention, less sure than an explicit "no"
    if any(m.polarity == 1 for m in mentions):
        # A hedge on a diagnosis term is about which kind of lesion, not whether there is one:
        # "intradural nodule ... Impression: probable schwannoma" is a definite intradural lesion.
        mentions = [m for m in mentions if not (m.diagnosis and m.polarity == -1)]
    addendum = [m for m in mentions if m.sentence.section == "addendum"]
    if addendum:  # the radiologist's last word: it may withdraw or add a finding
        for pol in (1, -1):
            hits = [m for m in addendum if m.polarity == pol]
            if hits:
                return pol, hits[0], 0.6 if pol == -1 else 0.9
        return 0, None, 0.9
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


def extract_rules(text: str, lexicon_version: int = DEFAULT_LEXICON) -> LabelResult:
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
