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

(v4) A negation cue reaches over a list of short findings however long ("No evidence of A, B or C,
D, E or F"); a post-cue reaches further back when no other finding stands between it and the term
(it then speaks of that term), past a relative clause that only recalls the prior study; a
statement of normality ("the pars are intact") is a negated mention, which matters in an addendum;
and an addendum that only negates, at named levels, withdraws the finding at those levels alone.
The lexicon (``lexicons.py``) holds the wording and the switches, so v1-v3 behave as they did.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ml.agents.labels.lexicons import DEFAULT_LEXICON, Lexicon, Patterns, load_lexicon, normalise
from ml.agents.labels.result import LabelResult
from ml.agents.labels.text import Sentence, clauses, split_sentences
from ml.conditions import CONDITION_KEYS

_WORD = re.compile(r"[A-Za-z0-9]+")
_LIST_AND = re.compile(r"\b(or|nor|and)\b", re.IGNORECASE)
_LIST_OR = re.compile(r"\b(or|nor)\b", re.IGNORECASE)
# a disc level as written ("L4-5", "L4/5", "L4-L5", "L5-S1", "C7-T1"), for addendum withdrawal by level
_LEVEL = re.compile(r"\b([CTLS])(\d{1,2})\s*[-/]\s*([CTLS])?(\d{1,2})\b", re.IGNORECASE)
_LINE_LABEL = re.compile(r"[^:\n]{0,40}:")


@dataclass(frozen=True)
class Mention:
    condition: str
    polarity: int  # 1 present, -1 hedged, 0 negated
    sentence: Sentence
    match: str
    diagnosis: bool = False  # the term names a kind of the condition (a histology), not the finding
    levels: frozenset[str] = frozenset()  # (v4) disc levels the sentence (or its line's label) names


def _n_words(s: str) -> int:
    return len(_WORD.findall(s))


def _spans(patterns: Patterns, text: str) -> list[tuple[int, int]]:
    return [m.span() for p in patterns for m in p.finditer(text)]


def _stopped(lex: Lexicon, between: str) -> bool:
    return any(s.search(between) for s in lex.neg_stop)


def _short_list(lex: Lexicon, between: str, rest: str) -> bool:
    """(v4) Whether ``between`` (cue to term, or term to cue) runs over a list of short findings:
    comma-separated items of few words, a coordinator in ``rest``, no item after the first opening
    with a grade of its own ("No stenosis, mild foraminal narrowing or ..." is two statements)."""
    if lex.neg_list_window is None or _n_words(between) > lex.neg_list_window or not _LIST_AND.search(rest):
        return False
    items = between.split(",")
    if any(_n_words(it) > lex.neg_list_item_words for it in items):
        return False
    return lex.neg_list_breaker is None or not any(lex.neg_list_breaker.search(it) for it in items[1:])


def _negated(
    lex: Lexicon, clause: str, a: int, b: int, others: Sequence[tuple[int, int]] = ()
) -> tuple[bool, list[tuple[int, int]]]:
    """Whether the term at clause[a:b] is negated; also returns the negation cue spans used.

    ``others`` are the spans of the other terms in the clause: (v4) a post-cue reaches further back
    when none of them stands between, since then the term is the subject it speaks of.
    """
    pseudo = _spans(lex.neg_pseudo, clause)
    for p in (*lex.neg_pre, *lex.historical):
        for m in p.finditer(clause, 0, a):
            if any(pa <= m.start() < pb for pa, pb in pseudo):
                continue
            between = clause[m.end() : a]
            if _stopped(lex, between):
                continue
            if lex.neg_list_window is not None and "," in between:
                if not _short_list(lex, between, clause[m.end() :]):
                    continue  # a comma that does not separate list items ends the scope
            elif _n_words(between) > lex.neg_window:
                continue
            elif "," in between and not _LIST_OR.search(clause[m.end() :]):
                continue  # "No stenosis, mild foraminal narrowing": the comma ends the scope
            return True, [m.span()]
    for p in lex.neg_post:
        for m in p.finditer(clause, b):
            if lex.pseudo_post and any(pa <= m.start() < pb for pa, pb in pseudo):
                continue
            between = clause[b : m.start()]
            for skip in lex.post_skip:
                between = skip.sub(" ", between)
            if _stopped(lex, between):
                continue
            window = lex.neg_window
            if lex.neg_post_window is not None and not any(b <= oa and ob <= m.start() for oa, ob in others):
                window = lex.neg_post_window
            if "," in between:
                if not _short_list(lex, between, between):
                    continue  # "Canal stenosis, foraminal narrowing and cord compression are not seen" is a list
            elif _n_words(between) > window:
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


def _levels(text: str) -> frozenset[str]:
    """Disc levels named in ``text``, canonical ("L4/5", "L4-L5" -> "L4-L5")."""
    out = set()
    for m in _LEVEL.finditer(text):
        r1, n1, r2, n2 = m.groups()
        out.add(f"{r1.upper()}{n1}-{(r2 or r1).upper()}{n2}")
    return frozenset(out)


def _sentence_levels(text: str, sent: Sentence) -> frozenset[str]:
    """The levels a sentence names, else those of its line's label ("L4-5: ... Mild stenosis.")."""
    own = _levels(sent.text)
    if own:
        return own
    line = text.rfind("\n", 0, sent.start) + 1
    label = _LINE_LABEL.match(text, line)
    return _levels(label.group(0)) if label and label.end() <= sent.start + 1 else frozenset()


def _normal_mentions(lex: Lexicon, clause: str, sent: Sentence, levels: frozenset[str]) -> list[Mention]:
    """(v4) Statements of normality ("the pars are intact") as negated mentions; "not intact" is none."""
    out: list[Mention] = []
    for key, pats in (lex.normal or {}).items():
        for p in pats:
            for m in p.finditer(clause):
                if not _negated(lex, clause, *m.span())[0] and not re.search(r"\bnot\b", m.group(0), re.I):
                    out.append(Mention(key, 0, sent, m.group(0), levels=levels))
    return out


def find_mentions(text: str, lex: Lexicon) -> list[Mention]:
    """Every condition mention in the findings, impression and addendum sections, with its polarity."""
    out: list[Mention] = []
    for sent in split_sentences(text, lex.sections):
        if sent.section not in ("findings", "impression", "addendum"):
            continue
        levels = _sentence_levels(text, sent) if lex.addendum_by_level else frozenset()
        for ca, cb in clauses(sent):
            clause = normalise(sent.text[ca:cb], lex)
            found: list[Mention] = []
            matches = sorted(_clause_matches(lex, clause), key=lambda t: t[2])
            for key, weak, a, b in matches:
                diagnosis = any(da < b and a < db for da, db in _spans(lex.diagnosis[key], clause))
                hedged = _hedged(lex, clause, a, b, key)
                others = [(oa, ob) for _, _, oa, ob in matches if (oa, ob) != (a, b)]
                negated, _ = _negated(lex, clause, a, b, others)
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
                found.append(Mention(key, polarity, sent, clause[a:b], diagnosis, levels))
            out.extend(found)
            out.extend(_normal_mentions(lex, clause, sent, levels))
    return out


def _withdrawn_levels(addendum: list[Mention]) -> frozenset[str] | None:
    """(v4) The levels a purely negating addendum withdraws the finding at; None when it withdraws
    it everywhere (a mention without a level, or any affirmative addendum mention)."""
    if any(m.polarity != 0 or not m.levels for m in addendum):
        return None
    return frozenset().union(*(m.levels for m in addendum))


def _decide(mentions: list[Mention], by_level: bool = False) -> tuple[int, Mention | None, float]:
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
        withdrawn = _withdrawn_levels(addendum) if by_level else None
        if withdrawn:  # withdrawn at the named levels only: the body still speaks for the others
            rest = [m for m in mentions if m.sentence.section != "addendum" and m.levels - withdrawn]
            if any(m.polarity != 0 for m in rest):
                label, by, _ = _decide(rest)
                return label, by, 0.75
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
        label, by, conf = _decide([m for m in mentions if m.condition == key], lex.addendum_by_level)
        labels[key] = label
        confidence[key] = conf
        if by is not None:
            evidence[key] = by.sentence.text
            spans[key] = (by.sentence.start, by.sentence.end)
    return LabelResult(labels, evidence, confidence, f"rules/lexicon-v{lex.version}", spans)
